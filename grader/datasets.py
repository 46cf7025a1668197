"""Data loading: Fashion-MNIST from local copies first, verified against published checksums.

`load_fashion_mnist()` looks in the data home (`$CNN_GRADER_DATA`, default `datasets/`),
then in Debian's `dataset-fashion-mnist` folder, then in Keras's cache, and downloads
only when none has the files. Checksums are of the *decompressed* IDX files
(`datasets/fashion-mnist.sha256`): Debian re-wrote the gzip headers, so the .gz files
differ from the official ones while the data inside is identical.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from .paths import data_home, shipped_file

FASHION_MNIST = "fashion-mnist"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
CHECKSUM_FILE = shipped_file("datasets/fashion-mnist.sha256")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DOWNLOAD_TIMEOUT_S = 15


class DataUnavailable(RuntimeError):
    """The data set is neither on disk nor downloadable."""


class ChecksumMismatch(RuntimeError):
    """A data file does not match its published checksum."""


def expected_checksums() -> dict[str, str]:
    """SHA-256 of each decompressed file, from `datasets/fashion-mnist.sha256`."""
    pairs = (line.split() for line in CHECKSUM_FILE.read_text().splitlines() if line.strip())
    return {name: digest for digest, name in pairs}


def candidate_dirs() -> list[Path]:
    """Where the four .gz files are looked for, in order."""
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return [data_home() / FASHION_MNIST, DEBIAN_DIR, keras_home / "datasets" / FASHION_MNIST]


def _find_local() -> Path | None:
    for folder in candidate_dirs():
        if all((folder / f"{name}.gz").is_file() for name in FILES):
            return folder
    return None


def _download(target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        destination = target / f"{name}.gz"
        if destination.is_file():
            continue
        try:
            with urllib.request.urlopen(DOWNLOAD_URL + f"{name}.gz", timeout=DOWNLOAD_TIMEOUT_S) as response:
                data = response.read()
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            looked = "\n  ".join(str(d) for d in candidate_dirs())
            raise DataUnavailable(
                f"Fashion-MNIST is not on this machine and could not be downloaded ({error}).\n"
                f"Looked in:\n  {looked}\n"
                "Get it with one of:\n"
                "  sudo apt-get install dataset-fashion-mnist      (Debian/Ubuntu, offline mirrors work)\n"
                f"  copy the four *-ubyte.gz files into {data_home() / FASHION_MNIST}\n"
                "  set CNN_GRADER_DATA to a folder that holds fashion-mnist/"
            ) from None
        partial = destination.with_suffix(".part")
        partial.write_bytes(data)
        partial.rename(destination)
    return target


def _read_idx(path: Path, expected_sha256: str) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != expected_sha256:
        raise ChecksumMismatch(
            f"{path} does not match the published Fashion-MNIST checksum (sha256 {digest[:12]}..., "
            f"expected {expected_sha256[:12]}...): the file is corrupt or not Fashion-MNIST. Delete it and load again."
        )
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape).copy()


def load_fashion_mnist() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Return `(x_train, y_train), (x_test, y_test)` as uint8 arrays: 60,000 / 10,000 images of 28x28."""
    folder = _find_local() or _download(data_home() / FASHION_MNIST)
    checksums = expected_checksums()
    x_train, y_train, x_test, y_test = (_read_idx(folder / f"{name}.gz", checksums[name]) for name in FILES)
    return (x_train, y_train), (x_test, y_test)
