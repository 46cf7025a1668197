"""nbgrader preprocessors for the feedback students get."""

from __future__ import annotations

from typing import Any

from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor

TIMEOUT_ERRORS = ("CellTimeoutError", "KeyboardInterrupt")


class HideTestTracebacks(NbGraderPreprocessor):
    """Cut the tracebacks of autograder test cells down to the error line.

    A traceback quotes the lines around the failing one, which in a test cell include the
    hidden-test region; the feedback must not show it. A timeout (nbgrader interrupts
    the cell, which raises KeyboardInterrupt, then records CellTimeoutError) is explained.
    """

    def preprocess_cell(self, cell: Any, resources: Any, index: int) -> tuple[Any, Any]:
        if cell.cell_type == "code" and utils.is_grade(cell) and not utils.is_solution(cell):
            for output in cell.get("outputs", []):
                if output.get("output_type") != "error":
                    continue
                if output.get("ename") in TIMEOUT_ERRORS:
                    line = f"{output.ename}: the cell ran past the time limit and was stopped (an endless loop?)."
                else:
                    line = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".rstrip(": ")
                output["traceback"] = [line]
        return cell, resources
