"""cnn-grader: exercises and an autograder for the convolutional-networks unit.

Students call `check("q1", build_lenet5)` in a notebook, or `grader check q1` in a shell.
`check` is imported on first use, so that `grader` commands and the sandbox's zygote
import only what they need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .notebook import check

__version__ = "0.1.0"
__all__ = ["check", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "check":
        from .notebook import check

        return check
    raise AttributeError(f"module 'grader' has no attribute {name!r}")
