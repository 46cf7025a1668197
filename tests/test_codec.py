"""The sandbox's value codec: what crosses the process boundary comes back equal, and what must not cross is refused."""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest

from grader.checks import StudentCodeError
from grader.sandbox import Codec, RemoteHistory


def round_trip(value, folder: Path, **options):
    """`value` encoded, sent through JSON text (as on the wire) and decoded."""
    codec = Codec(folder, **options)
    return codec.decode(json.loads(json.dumps(codec.encode(value))))


def small_model(name: str = "small") -> keras.Model:
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)], name=name
    )


def lambda_model() -> keras.Model:
    return keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Dense(2)])


@pytest.mark.parametrize(
    "value",
    [0, -7, 2**70, -(2**80), True, False, None, 1.5, -0.0, float("inf"), float("-inf"), "", "héllo\nworld"],
)
def test_scalars_round_trip(tmp_path, value):
    back = round_trip(value, tmp_path)
    assert back == value and type(back) is type(value)


def test_nan_round_trips(tmp_path):
    back = round_trip(float("nan"), tmp_path)
    assert isinstance(back, float) and math.isnan(back)


def test_nested_containers_keep_their_types(tmp_path):
    value = {"a": [1, (2.5, "x"), {"b": None}], 3: ("t", [True]), (1, 2): []}
    back = round_trip(value, tmp_path)
    assert back == value
    assert isinstance(back["a"][1], tuple) and isinstance(back[3], tuple) and isinstance(back[3][1], list)


def test_arguments_round_trip(tmp_path):
    codec = Codec(tmp_path)
    args, kwargs = codec.decode_arguments(*codec.encode_arguments((1, [2, 3]), {"epochs": 2, "name": "m"}))
    assert args == (1, [2, 3]) and kwargs == {"epochs": 2, "name": "m"}


@pytest.mark.parametrize("dtype", ["float32", "int64", "uint8", "bool"])
def test_arrays_round_trip_as_npy_files(tmp_path, dtype):
    array = (np.arange(24).reshape(2, 3, 4) % 5).astype(dtype)
    back = round_trip({"x": array}, tmp_path)["x"]
    assert isinstance(back, np.ndarray) and back.dtype == array.dtype and np.array_equal(back, array)
    assert len(list(tmp_path.glob("*.npy"))) == 1


def test_numpy_scalars_keep_their_dtype(tmp_path):
    back = round_trip([np.float32(1.5), np.int16(-3)], tmp_path)
    assert back == [1.5, -3] and back[0].dtype == np.float32 and back[1].dtype == np.int16


def test_unsendable_values_become_opaque_stand_ins(tmp_path):
    back = round_trip([object(), np.array([object()], dtype=object)], tmp_path)
    assert type(back[0]).__name__ == "object" and type(back[1]).__name__ == "ndarray"
    assert not isinstance(back[1], np.ndarray)


def test_a_history_comes_back_as_its_dict(tmp_path):
    history = keras.callbacks.History()
    history.history = {"loss": [1.0, 0.5]}
    back = round_trip(history, tmp_path)
    assert isinstance(back, RemoteHistory) and back.history == {"loss": [1.0, 0.5]}


def test_a_model_without_weights_comes_back_as_its_architecture_with_zero_weights(tmp_path):
    model = small_model("arch_only")
    back = round_trip(model, tmp_path)
    assert isinstance(back, keras.Model) and back is not model
    assert [type(layer).__name__ for layer in back.layers] == ["Dense", "Dense"]
    assert back.count_params() == model.count_params() == 4 * 3 + 3 + 3 * 2 + 2
    assert all(not np.any(weights) for weights in back.get_weights())
    assert list(tmp_path.glob("*.json")) and not list(tmp_path.glob("*.keras"))


def test_a_model_with_weights_comes_back_equal(tmp_path):
    keras.utils.set_random_seed(0)
    model = small_model("with_weights")
    back = round_trip(model, tmp_path, weights=True)
    assert isinstance(back, keras.Model) and back is not model
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), back.get_weights(), strict=True))
    x = np.ones((1, 4), dtype="float32")
    assert np.allclose(model.predict(x, verbose=0), back.predict(x, verbose=0))


@pytest.mark.parametrize("weights", [False, True])
def test_a_model_carrying_python_code_is_refused_under_safe_mode(tmp_path, weights):
    codec = Codec(tmp_path, weights=weights)
    data = json.loads(json.dumps(codec.encode(lambda_model())))
    with pytest.raises(StudentCodeError):
        codec.decode(data)


@pytest.mark.parametrize("name", ["../escape.npy", "/etc/passwd", "sub/inner.npy", "missing.npy"])
def test_a_file_outside_the_exchange_folder_is_refused(tmp_path, name):
    folder = tmp_path / "exchange"
    (folder / "sub").mkdir(parents=True)
    np.save(tmp_path / "escape.npy", np.zeros(3))
    np.save(folder / "sub" / "inner.npy", np.zeros(3))
    with pytest.raises(ValueError):
        Codec(folder).decode({"t": "ndarray", "file": name})


def test_a_link_is_refused(tmp_path):
    np.save(tmp_path / "real.npy", np.zeros(3))
    folder = tmp_path / "exchange"
    folder.mkdir()
    (folder / "link.npy").symlink_to(tmp_path / "real.npy")
    with pytest.raises(ValueError):
        Codec(folder).decode({"t": "ndarray", "file": "link.npy"})


def test_an_oversized_file_is_refused(tmp_path):
    data = Codec(tmp_path).encode(np.zeros(1000, dtype="float64"))
    assert Codec(tmp_path, max_file_bytes=10_000).decode(data).shape == (1000,)
    with pytest.raises(ValueError):
        Codec(tmp_path, max_file_bytes=1000).decode(data)


def test_a_pickled_npy_file_is_refused(tmp_path):
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        Codec(tmp_path).decode({"t": "ndarray", "file": "pickled.npy"})


@pytest.mark.parametrize("data", [{"t": "pickle", "v": "gASV"}, {"t": None}, {"v": 1}])
def test_unknown_tags_are_refused(tmp_path, data):
    with pytest.raises(ValueError):
        Codec(tmp_path).decode(data)
