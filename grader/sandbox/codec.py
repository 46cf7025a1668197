"""Values crossing the process boundary: tagged JSON, with arrays and models as files of an exchange folder.

Arrays go as `.npy` files read back with `allow_pickle=False`; Keras models as their
configuration (`config.json`-like) or, with weights, as `.keras` files; both are rebuilt
with `safe_mode=True`, so a model can carry no code (one that does fails with the diagnosis
`model-not-rebuildable`; the structural checks then trace it in the child: `grader.structure`).
Anything else becomes an opaque stand-in that only keeps its type name and repr. Decoding refuses files outside the
folder, links, oversized files and unknown tags, and bounds what a (possibly tampered)
child makes the grader do: nesting deeper than `MAX_DECODE_DEPTH`, integers longer than
`MAX_INT_DIGITS` digits, model configurations over `CONFIG_MAX_BYTES`, `CONFIG_MAX_DEPTH`
levels or `CONFIG_MAX_LAYERS` layers are refused with a message for the student
(`UnreadableValue`), never an internal error.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import sys
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..checks import StudentCodeError
from ..diagnoses import NOT_REBUILDABLE
from ..patching import built_unallocated

MAX_DEPTH = 50  # deeper nesting is sent as an opaque value
MAX_DECODE_DEPTH = MAX_DEPTH + 10  # deeper nesting from the child is refused
MAX_INT_DIGITS = 400  # longer integers from the child are refused
REPR_CHARS = 200  # how much of an opaque value's repr is kept
CONFIG_MAX_BYTES = 8 * 1024 * 1024  # a model configuration (AlexNet's is ~20 kB)
CONFIG_MAX_DEPTH = 100  # nesting of a model configuration (a functional model nests ~10 levels)
CONFIG_MAX_LAYERS = 1_000  # layers of a model configuration (the exercises' models have a few dozen)
CONFIG_MAX_INT = 2**31  # any integer setting of a layer (units, filters, sizes)


class UnreadableValue(StudentCodeError, ValueError):
    """What the child sent cannot be read within the grader's bounds: the student's problem, said plainly."""


class Opaque:
    """Stands for a value that cannot leave the child; its class takes the original type's name."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __repr__(self) -> str:
        return self._text


def opaque(type_name: str, text: str) -> Opaque:
    cls = type(type_name if type_name.isidentifier() else "object", (Opaque,), {})
    return cls(text)


class RemoteHistory:
    """A `keras.callbacks.History` sent from the child: only its `history` dict."""

    def __init__(self, history: dict[str, Any]) -> None:
        self.history = history

    def __repr__(self) -> str:
        return f"<History {sorted(self.history)}>"


RemoteHistory.__name__ = "History"


class Codec:
    """Tagged JSON for values crossing the process boundary; files go to `folder`.

    `weights`: models are encoded with their weights (`.keras`), else as architecture
    only. `compiled`: models are decoded with their compile settings (in the child: the
    grader's models, e.g. a compiled one handed to a student's function; the grader only
    predicts with the student's models). `unallocated`: architectures are rebuilt without
    weight memory (`patching.unallocated_weights`: in the grader, which only traces them).
    """

    def __init__(
        self,
        folder: Path,
        *,
        weights: bool = False,
        max_file_bytes: int = 1 << 30,
        compiled: bool = False,
        unallocated: bool = False,
    ) -> None:
        self.folder = Path(folder)
        self.weights = weights
        self.max_file_bytes = max_file_bytes
        self.compiled = compiled
        self.unallocated = unallocated

    # -- encoding

    def encode(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            return _opaque_data(type(value).__name__, "<nested too deeply>")
        if value is None or isinstance(value, (bool, int, str)):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
                return {"t": "bigint", "v": str(value)}
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"t": "float", "v": repr(value)}
        if isinstance(value, (list, tuple)):
            tag = type(value).__name__ if type(value) in (list, tuple) else "list"
            return {"t": tag, "v": [self.encode(v, depth + 1) for v in value]}
        if isinstance(value, dict):
            items = [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()]
            return {"t": "dict", "v": items}
        if isinstance(value, np.generic):
            return {"t": "npscalar", "dtype": str(value.dtype), "v": self.encode(value.item(), depth + 1)}
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                return _opaque_data("ndarray", "<array of Python objects>")
            path = self._new_file(".npy")
            np.save(path, value, allow_pickle=False)
            return {"t": "ndarray", "file": path.name}
        keras = sys.modules.get("keras")
        if keras is not None:
            if isinstance(value, keras.callbacks.History):
                return {"t": "history", "v": self.encode(dict(value.history), depth + 1)}
            if isinstance(value, keras.layers.Layer):
                return self._encode_layer(keras, value)
        text = repr(value) if type(value).__repr__ is not object.__repr__ else f"<{type(value).__name__} object>"
        return _opaque_data(type(value).__name__, text)

    def encode_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
        """`args` and `kwargs` as the two lists a request carries."""
        return self.encode(tuple(args))["v"], self.encode(dict(kwargs))["v"]

    def _new_file(self, suffix: str) -> Path:
        return self.folder / f"{uuid.uuid4().hex}{suffix}"

    def _encode_layer(self, keras: Any, layer: Any) -> dict[str, Any]:
        kind = type(layer).__name__
        if self.weights and isinstance(layer, keras.Model):
            path = self._new_file(".keras")
            layer.save(path)
            return {"t": "keras", "file": path.name, "class": kind, "name": layer.name}
        config = keras.saving.serialize_keras_object(layer)
        path = self._new_file(".json")
        path.write_text(json.dumps(config))
        return {"t": "config", "file": path.name, "class": kind, "name": layer.name}

    # -- decoding

    def decode(self, data: Any) -> Any:
        """The value `data` stands for; raises `UnreadableValue` (a `StudentCodeError`) for what it cannot read."""
        try:
            return self._decode(data, 0)
        except StudentCodeError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError) as error:
            raise UnreadableValue(
                f"What your code returned could not be read by the grader ({type(error).__name__}: "
                f"{first_line(str(error))}). Return plain values (numbers, strings, lists, dicts, numpy arrays) "
                "or keras models built from built-in layers."
            ) from None

    def _decode(self, data: Any, depth: int) -> Any:
        if depth > MAX_DECODE_DEPTH:
            raise UnreadableValue(
                f"What your code returned is nested more than {MAX_DECODE_DEPTH} levels deep: the grader reads "
                "no deeper. Return flatter data."
            )
        depth += 1
        if not isinstance(data, dict):
            if isinstance(data, list):  # never produced by encode; decoded item by item
                return [self._decode(v, depth) for v in data]
            if isinstance(data, int) and not isinstance(data, bool):
                return _bounded_int(data)
            return data
        tag = data.get("t")
        if tag == "list":
            return [self._decode(v, depth) for v in data["v"]]
        if tag == "tuple":
            return tuple(self._decode(v, depth) for v in data["v"])
        if tag == "dict":
            return self._decode_dict(data["v"], depth)
        if tag == "float":
            return float(str(data["v"])[:40])
        if tag == "bigint":
            text = str(data["v"])
            if len(text.lstrip("-")) > MAX_INT_DIGITS:
                raise UnreadableValue(
                    f"Your code returned an integer of more than {MAX_INT_DIGITS} digits: no answer here is that "
                    "large (check the computation)."
                )
            return int(text)
        if tag == "npscalar":
            return np.dtype(str(data["dtype"])).type(self._decode(data["v"], depth))
        if tag == "ndarray":
            return np.load(self.checked_file(data["file"]), allow_pickle=False)
        if tag == "history":
            return RemoteHistory(self._decode(data["v"], depth))
        if tag in ("config", "keras"):
            return self._decode_model(data)
        if tag == "opaque":
            return opaque(str(data.get("type", "object")), str(data.get("repr", ""))[:REPR_CHARS])
        raise ValueError(f"unknown value tag {tag!r}")

    def decode_arguments(self, args: list[Any], kwargs: list[Any]) -> tuple[tuple[Any, ...], dict[Any, Any]]:
        """What `encode_arguments` sent, as a tuple and a dict."""
        return self.decode({"t": "tuple", "v": args}), self.decode({"t": "dict", "v": kwargs})

    def _decode_dict(self, items: list[Any], depth: int) -> dict[Any, Any]:
        out = {}
        for raw_key, raw_value in items:
            key = self._decode(raw_key, depth)
            try:
                out[key] = self._decode(raw_value, depth)
            except TypeError:  # unhashable key
                out[repr(key)[:REPR_CHARS]] = self._decode(raw_value, depth)
        return out

    def checked_file(self, name: str) -> Path:
        """The exchange folder's plain file `name`; refuses anything else, and files over `max_file_bytes`."""
        path = (self.folder / str(name)).resolve()
        if path.parent != self.folder.resolve() or path.is_symlink() or not path.is_file():
            raise ValueError(f"artifact {name!r} is not a plain file of the exchange folder")
        if path.stat().st_size > self.max_file_bytes:
            raise ValueError(f"artifact {name!r} is larger than {self.max_file_bytes} bytes")
        return path

    def _decode_model(self, data: Mapping[str, Any]) -> Any:
        import keras

        path = self.checked_file(data["file"])
        kind = str(data.get("class", "model"))[:REPR_CHARS]
        if data["t"] == "keras":
            check_config(_keras_file_config(path), kind)
        else:
            text = path.read_text() if path.stat().st_size <= CONFIG_MAX_BYTES else None
            check_config(text, kind)
        try:
            if data["t"] == "keras":
                return keras.saving.load_model(path, safe_mode=True, compile=self.compiled)
            return _rebuild(keras, path.read_text(), unallocated=self.unallocated)
        except Exception as error:  # noqa: BLE001 - whatever Keras raises, the model could not be rebuilt
            raise StudentCodeError(
                unloadable_model_message(kind, error, weights=data["t"] == "keras"), diagnosis=NOT_REBUILDABLE.id
            ) from None


def _bounded_int(value: int) -> int:
    if abs(value) > 10**MAX_INT_DIGITS:
        raise UnreadableValue(
            f"Your code returned an integer of more than {MAX_INT_DIGITS} digits: no answer here is that large "
            "(check the computation)."
        )
    return value


def _keras_file_config(path: Path) -> str | None:
    """The `config.json` of a `.keras` file (None when it is over `CONFIG_MAX_BYTES`)."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > CONFIG_MAX_BYTES:
                return None
            with archive.open(info) as file:
                return file.read(CONFIG_MAX_BYTES + 1).decode()
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise UnreadableValue(
            f"The model your code returned is not a readable .keras file ({first_line(str(error))})."
        ) from None


def check_config(text: str | None, kind: str = "model") -> None:
    """Refuse a model configuration the grader should not rebuild: too big, too deep, too many layers, huge numbers.

    Walks the parsed JSON iteratively (no recursion); raises `UnreadableValue` with a message for the student.
    """
    limit = f"the grader rebuilds models of at most {CONFIG_MAX_LAYERS:,} layers and {CONFIG_MAX_BYTES // 2**20} MB"
    if text is None or len(text) > CONFIG_MAX_BYTES:
        raise UnreadableValue(f"Your {kind}'s configuration is larger than {CONFIG_MAX_BYTES // 2**20} MB: {limit}.")
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise UnreadableValue(
            f"Your {kind}'s configuration could not be read ({type(error).__name__}): {limit}, "
            f"nested at most {CONFIG_MAX_DEPTH} levels."
        ) from None
    layers = 0
    stack: list[tuple[Any, int, str]] = [(config, 0, "")]
    while stack:
        value, depth, key = stack.pop()
        if depth > CONFIG_MAX_DEPTH:
            raise UnreadableValue(f"Your {kind}'s configuration is nested more than {CONFIG_MAX_DEPTH} levels deep.")
        if isinstance(value, dict):
            if "class_name" in value and isinstance(value.get("config"), dict) and "name" in value["config"]:
                layers += 1
                if layers > CONFIG_MAX_LAYERS:
                    raise UnreadableValue(f"Your {kind} has more than {CONFIG_MAX_LAYERS:,} layers: {limit}.")
            stack.extend((v, depth + 1, str(k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, depth + 1, key) for v in value)
        elif (
            isinstance(value, int)
            and not isinstance(value, bool)
            and abs(value) > CONFIG_MAX_INT
            and not key.endswith(("id", "seed"))
        ):  # Keras's object ids and random seeds may be large
            raise UnreadableValue(
                f"Your {kind}'s configuration holds the number {str(value)[:30]}{'...' if len(str(value)) > 30 else ''}"
                f", larger than any layer setting the grader accepts ({CONFIG_MAX_INT:,})."
            )


def _opaque_data(type_name: str, text: str) -> dict[str, Any]:
    return {"t": "opaque", "type": type_name, "repr": text[:REPR_CHARS]}


# Models rebuilt from architectures, by digest of their configuration: a configuration
# determines the rebuilt (zero-weight) model, and correct submissions share theirs, so a
# batch worker rebuilds AlexNet once rather than three times per student. Bounded by size.
_REBUILT: collections.OrderedDict[str, Any] = collections.OrderedDict()
REBUILT_MAX_PARAMS = 200_000_000  # ~800 MB of float32 weights


def _rebuild(keras: Any, text: str, *, unallocated: bool = False) -> Any:
    """The model of configuration `text`, with zero weights (the same object for the same configuration).

    `unallocated`: its weights take no memory (they read as zeros); where Keras refuses to
    defer a variable, the model is rebuilt with allocated zeros.
    """
    digest = hashlib.sha256(f"{unallocated}:{text}".encode()).hexdigest()
    if digest in _REBUILT:
        _REBUILT.move_to_end(digest)
        return _REBUILT[digest]
    config = json.loads(text)

    def build() -> Any:
        return keras.saving.deserialize_keras_object(_zero_initializers(config), safe_mode=True)

    model = built_unallocated(build) if unallocated else build()
    _remember(digest, model)
    return model


def _remember(digest: str, model: Any) -> None:
    try:
        size = int(model.count_params())
    except Exception:  # noqa: BLE001 - a model without a size (e.g. unbuilt) is not kept
        return
    if size > REBUILT_MAX_PARAMS:
        return
    _REBUILT[digest] = model
    while sum(int(m.count_params()) for m in _REBUILT.values()) > REBUILT_MAX_PARAMS:
        _REBUILT.popitem(last=False)


_ZEROS: dict[str, Any] = {"module": "keras.initializers", "class_name": "Zeros", "config": {}, "registered_name": None}


def _zero_initializers(config: Any) -> Any:
    """The config with every built-in initializer replaced by zeros: rebuilding AlexNet skips 61M random draws."""
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            if (
                key.endswith("_initializer")
                and isinstance(value, dict)
                and value.get("module") == "keras.initializers"
                and value.get("registered_name") in (None, value.get("class_name"))
            ):
                out[key] = {**_ZEROS, "config": {}}  # a fresh copy: deserialising may change it
            else:
                out[key] = _zero_initializers(value)
        return out
    if isinstance(config, list):
        return [_zero_initializers(v) for v in config]
    return config


def unloadable_model_message(kind: str, error: BaseException, *, weights: bool = False) -> str:
    """Why a model from the child could not be rebuilt by the grader, for a student.

    `weights`: the model was to come back with its weights (e.g. to be trained or run).
    """
    text = str(error)
    if weights:
        return (
            f"The grader could not load your {kind} back with its weights: your code runs in a separate process, "
            "and the grader loads only models of built-in Keras layers (with safe_mode=True: no Lambda layer, "
            "no subclassed keras.Model or custom layer, whose Python code it never runs). Checks of a model's "
            "layers accept subclassed models; where your model must be trained or run, build it with "
            "keras.Sequential or the functional API (keras.Model(inputs, outputs)) and built-in layers "
            f"(e.g. keras.layers.Rescaling instead of a Lambda). (Keras said: {first_line(text)})"
        )
    if "lambda" in text.lower() or "safe_mode" in text:
        return (
            f"Your {kind} contains a Lambda layer (or another piece of Python code), which the grader will not load: "
            "it rebuilds your model from its saved configuration with safe_mode=True. Use built-in layers "
            "(e.g. keras.layers.Rescaling or an activation argument) instead of Lambda."
        )
    return (
        f"The grader could not rebuild your {kind} from its saved configuration: your code runs in a separate "
        "process and only the model's .keras description reaches the grader, which never imports your classes. "
        "A subclassed keras.Model or a custom layer cannot be rebuilt without its Python class: build the model "
        "with keras.Sequential or the functional API (keras.Model(inputs, outputs)) and built-in layers. "
        f"(Keras said: {first_line(text)})"
    )


def first_line(text: str) -> str:
    """The first non-blank line of `text`, at most 200 characters."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= 200 else line[:197] + "..."
