"""nbgrader support: generate the course from `exercises/` and `solutions/`, grade a class.

`build` writes the course (config and source notebook), `grade` runs the TA workflow and
summarises the gradebook, `autograde` grades the test cells in the sandbox in place of
nbgrader's kernel. The notebook-side hooks live in `grader.notebook`.
"""

from .build import DEFAULT_ASSIGNMENT, build_course, make_notebook
from .grade import grade_assignment, summarise

__all__ = ["DEFAULT_ASSIGNMENT", "build_course", "make_notebook", "grade_assignment", "summarise"]
