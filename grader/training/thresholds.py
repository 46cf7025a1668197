"""`Bound`: a question's threshold, with the reference solution's measured figure beside it."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Bound:
    """A threshold with the reference solution's measured figure beside it.

    `at_least=True`: the student's figure must be >= value; otherwise <= value.
    `measured` is what the reference measured on the tier (None: not measured there yet).
    """

    value: float
    measured: float | None
    at_least: bool = True

    def holds(self, figure: float) -> bool:
        return figure >= self.value if self.at_least else figure <= self.value

    def margin_to(self, figure: float) -> float:
        """How far `figure` is on the passing side of the threshold (negative: it fails)."""
        return figure - self.value if self.at_least else self.value - figure

    def describe(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.value:g}"
