"""cnn-grader: exercises and an autograder for the convolutional-networks unit.

Students call `check("q1", build_lenet5)` in a notebook, or `grader check q1` in a shell.
"""

from .notebook import check

__version__ = "0.1.0"
__all__ = ["check", "__version__"]
