"""Temporarily replace a method on some classes (Keras layers, initializers), restoring exactly what was there."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

_ABSENT = object()


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
