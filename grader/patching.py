"""Temporarily replace a method on some classes (Keras layers, initializers), restoring exactly what was there."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

_ABSENT = object()
_T = TypeVar("_T")


@contextlib.contextmanager
def patched(classes: Iterable[type], attribute: str, value: Any) -> Iterator[None]:
    """Set `attribute` on each class for the duration of the block.

    A class that only inherited the attribute gets it deleted again afterwards, so the
    inherited one shows through as before.
    """
    originals = {cls: cls.__dict__.get(attribute, _ABSENT) for cls in classes}
    for cls in originals:
        setattr(cls, attribute, value)
    try:
        yield
    finally:
        for cls, original in originals.items():
            if original is _ABSENT:
                delattr(cls, attribute)
            else:
                setattr(cls, attribute, original)


_ZEROING = threading.local()
_ZEROING_LOCK = threading.Lock()
_ZEROING_INSTALLED: list[type] = []


@contextlib.contextmanager
def zero_initialized(active: bool = True) -> Iterator[None]:
    """While the block runs in this thread, Keras's random initializers give zeros.

    For models whose weights are never used (architectures that are traced, counted or
    compared): random draws for AlexNet's 61M weights take about a second per build, zeros
    a tenth of that. Other threads (a Dask worker grading several students) keep their
    random initializers: the wrappers, installed once, check a thread-local flag.
    """
    if not active:
        yield
        return
    _install_zeroing()
    before = getattr(_ZEROING, "on", False)
    _ZEROING.on = True
    try:
        yield
    finally:
        _ZEROING.on = before


def _install_zeroing() -> None:
    import keras

    with _ZEROING_LOCK:
        if _ZEROING_INSTALLED:
            return
        for cls in (
            keras.initializers.VarianceScaling,
            keras.initializers.RandomUniform,
            keras.initializers.RandomNormal,
            keras.initializers.TruncatedNormal,
            keras.initializers.Orthogonal,
        ):
            cls.__call__ = _zeros_when_asked(cls.__dict__.get("__call__", cls.__call__))
            _ZEROING_INSTALLED.append(cls)


def _zeros_when_asked(original: Any) -> Any:
    def call(self: Any, shape: Any, dtype: Any = None, **kwargs: Any) -> Any:
        if getattr(_ZEROING, "on", False):
            import keras

            return keras.ops.zeros(shape, dtype=dtype)
        return original(self, shape, dtype, **kwargs)

    return call


# In what Keras raises when code in `unallocated_weights` needs an allocated variable.
STATELESS_REFUSAL = "stateless scope"
# Variables smaller than this are allocated as usual (a random layer's seed state, a counter,
# LeNet's weights): only big weights are worth not allocating, and code may write small ones.
UNALLOCATED_MIN_SIZE = 1 << 16


@contextlib.contextmanager
def unallocated_weights() -> Iterator[None]:
    """Big weights of models built in the block take no memory: they read as zeros, computed on each read.

    For models whose weights are never used (architectures that are traced, counted or
    serialised: AlexNet's 61M weights cost ~0.1-0.2 s to allocate per build). Variables of
    at least `UNALLOCATED_MIN_SIZE` elements stay unallocated and cannot be assigned to, so
    such a model must never be trained; smaller ones are allocated when the block ends,
    with their own initializers. Keras defers a variable created in a `StatelessScope` and
    lists it for a later `initialize_all_variables` (which the next symbolic call runs);
    the block takes its variables off that list.
    """
    import keras
    from keras.src.backend.common import global_state
    from keras.src.backend.common.stateless_scope import in_stateless_scope

    key = "uninitialized_variables"
    before = list(global_state.get_global_attribute(key) or [])
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield
    finally:
        kept = {id(variable) for variable in before}
        created = [v for v in global_state.get_global_attribute(key) or [] if id(v) not in kept]
        global_state.set_global_attribute(key, before)
        nested = in_stateless_scope()
        zeros = keras.initializers.Zeros()
        for variable in created:
            if math.prod(variable.shape) >= UNALLOCATED_MIN_SIZE:
                variable._initializer = zeros  # reads give zeros, whatever initializer the layer asked for
            elif nested:
                before.append(variable)  # the enclosing block allocates it
            else:
                variable._deferred_initialize()


def built_unallocated(build: Callable[[], _T]) -> _T:
    """`build()` inside `unallocated_weights`, or again the ordinary way where Keras refuses it there.

    Keras refuses, e.g., a variable made from a value (`model.compile()` makes one), and
    says so naming the stateless scope; anything else `build` raises is raised.
    """
    try:
        with unallocated_weights():
            return build()
    except Exception as error:
        if STATELESS_REFUSAL not in str(error):
            raise
    return build()
