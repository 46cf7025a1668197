"""In the sandboxed child: a student's model traced where it was built, sent as data (checked by `grader.structure`).

The grader cannot rebuild a subclassed model, a Lambda or a custom layer from its
configuration (it never runs the student's code). For those, `grader.comparator` asks the
child to run `describe_model` (`Context.run_with_student`): it takes the model the
student's builder just returned for the same arguments (`keep`: only a model with code of
the student's, one at a time; a second build would shift Keras's automatic layer names,
which messages quote), or builds it again, traces it with `grader.tracing.trace`, and returns plain data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..checks import StudentCodeError, StudentSide, describe_call
from ..patching import zero_initialized
from ..tracing import trace

_KEPT: dict[str, Any] = {}  # call -> the model it returned: the last such call only


def _call_key(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    return repr((name, args, sorted(kwargs.items())))


def keep(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], value: Any) -> None:
    """Remember `value`, returned by the student's `name(*args, **kwargs)`, if it is a model (forgetting the last)."""
    import keras

    _KEPT.clear()
    if isinstance(value, keras.Model) and not args and _has_python_code(value):
        _KEPT[_call_key(name, args, kwargs)] = value


def _has_python_code(model: Any) -> bool:
    """The model or a layer in it is of a class outside Keras, or a Lambda: the grader will not rebuild it."""
    try:
        layers = list(model._flatten_layers(include_self=True, recursive=True))
    except Exception:  # noqa: BLE001 - a model Keras cannot walk: keep it, to be traced here if need be
        return True
    return any(not type(layer).__module__.startswith("keras.") or type(layer).__name__ == "Lambda" for layer in layers)


def describe_model(
    student: StudentSide, builder: str, input_shape: tuple[int, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """The trace of the model `builder(**kwargs)` on inputs of `input_shape`, as plain data, and its parameter count."""
    import keras

    call = describe_call(builder, (), kwargs)
    model = _KEPT.get(_call_key(builder, (), kwargs))
    with zero_initialized():  # only the architecture leaves: random draws would be wasted
        if model is None:
            model = student.call(builder, **kwargs).value
        if not isinstance(model, keras.Model):
            raise StudentCodeError(f"`{call}` returned {type(model).__name__}; it should return a keras.Model.")
        layers = trace(model, input_shape, call=f"the model from {call}")
    return {
        "layers": [
            {
                "name": layer.name,
                "kind": layer.kind,
                "input_shape": layer.input_shape,
                "output_shape": layer.output_shape,
                "params": layer.params,
                "config": layer.config,
                "uid": layer.uid,
            }
            for layer in layers
        ],
        "total": int(model.count_params()),
    }
