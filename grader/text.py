"""Text that came from student code, made safe to show: no control characters, bounded length.

Student code can put anything in a string the grader shows: an exception message, what
it printed, a layer's name. Before such text reaches a terminal, a JSON report, feedback,
a CSV file or SQLite it goes through `clean`: C0 and C1 control characters (terminal
escape sequences among them) are removed, except newlines and tabs where a message may
hold them, and the length is capped. `spreadsheet_cell` also defuses formulas.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from typing import Any

import dateutil.parser

MESSAGE_LIMIT = 4000  # characters of one message shown to a student
# C0 controls but tab and newline, DEL, C1 controls; and the escape sequences they start.
_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x9b[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def clean(text: Any, limit: int = MESSAGE_LIMIT, *, newlines: bool = True) -> str:
    """`text` as a string without control characters (newlines and tabs kept if `newlines`), at most `limit` long."""
    text = _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", str(text)))
    if not newlines:
        text = text.replace("\n", " ").replace("\t", " ")
    if len(text) > limit:
        text = text[: max(0, limit - 15)] + " ... (cut here)"
    return text


def clean_data(value: Any, limit: int = MESSAGE_LIMIT) -> Any:
    """JSON-like `value` with every string (keys included) passed through `clean`."""
    if isinstance(value, str):
        return clean(value, limit)
    if isinstance(value, Mapping):
        return {clean(k, limit): clean_data(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_data(v, limit) for v in value]
    return value


def parse_timestamp(text: str | None) -> datetime.datetime | None:
    """A date and time written by a student or a tool, as naive UTC when it names a zone (None: not a date)."""
    if not text:
        return None
    try:
        when = dateutil.parser.parse(text)
    except (ValueError, OverflowError):
        return None
    return when.astimezone(datetime.UTC).replace(tzinfo=None) if when.tzinfo else when


def spreadsheet_cell(value: Any) -> str:
    """A CSV cell that spreadsheet programs show as text, never run as a formula (OWASP's advice)."""
    text = clean(value, 1000, newlines=False) if value is not None else ""
    return "'" + text if text.lstrip().startswith(_FORMULA_START) or text.startswith(_FORMULA_START) else text
