"""Fashion-MNIST loading: local copies first, checksums of the decompressed bytes, a fast clear failure offline."""

from __future__ import annotations

import gzip
import hashlib
import time

import numpy as np
import pytest

from grader import datasets


def write_idx(path, array: np.ndarray) -> bytes:
    """Write `array` as a gzipped IDX file (uint8) and return the decompressed bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw))
    return raw


@pytest.fixture
def fake_home(tmp_path, monkeypatch):
    """A data home with a tiny, self-consistent Fashion-MNIST and its checksum list; no other source."""
    home = tmp_path / "data"
    folder = home / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(6) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(4),
    }
    checksums = tmp_path / "fashion-mnist.sha256"
    lines = [f"{hashlib.sha256(write_idx(folder / f'{name}.gz', a)).hexdigest()}  {name}" for name, a in arrays.items()]
    checksums.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("CNN_GRADER_DATA", str(home))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(datasets, "CHECKSUM_FILE", checksums)
    monkeypatch.setattr(datasets, "DEBIAN_DIR", tmp_path / "no-debian")
    return folder, arrays


def test_loads_from_the_data_home_as_writable_uint8(fake_home):
    folder, arrays = fake_home
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist()
    assert x_train.dtype == np.uint8 and x_train.shape == (6, 28, 28)
    np.testing.assert_array_equal(x_train, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])
    x_train[0, 0, 0] = 1  # writable, unlike a bare np.frombuffer view


def test_regzipped_file_with_other_headers_still_verifies(fake_home):
    folder, _ = fake_home
    path = folder / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw, mtime=123456))  # as Debian did: other .gz bytes, same data
    assert datasets.load_fashion_mnist()[1][1].shape == (4,)


def test_corrupt_file_is_rejected_with_its_path(fake_home):
    folder, arrays = fake_home
    write_idx(folder / "train-labels-idx1-ubyte.gz", arrays["train-labels-idx1-ubyte"][::-1])
    with pytest.raises(datasets.ChecksumMismatch, match="train-labels-idx1-ubyte.gz does not match"):
        datasets.load_fashion_mnist()


def test_offline_without_data_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_GRADER_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(datasets, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(datasets, "DOWNLOAD_URL", "http://127.0.0.1:9/")  # nothing listens on the discard port
    start = time.monotonic()
    with pytest.raises(datasets.DataUnavailable) as error:
        datasets.load_fashion_mnist()
    assert time.monotonic() - start < 10
    assert "apt-get install dataset-fashion-mnist" in str(error.value)
    assert str(tmp_path / "empty" / "fashion-mnist") in str(error.value)


@pytest.mark.skipif(
    not (datasets.DEBIAN_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
    reason="dataset-fashion-mnist not installed (install.sh installs it)",
)
def test_real_fashion_mnist_from_debian_matches_the_published_checksums(monkeypatch, tmp_path):
    monkeypatch.setenv("CNN_GRADER_DATA", str(tmp_path))
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10
