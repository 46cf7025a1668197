"""Similar submissions: pairs of students whose code for a question is near-identical, for a TA to review.

Each submission's code for a question is normalised before comparing: the stub's own
lines are dropped, then it is tokenised without comments, blank lines or layout; every
name the file binds itself (functions, parameters, variables) becomes one placeholder,
while library names (`keras`, `Conv2D`, keyword arguments) stay; strings are compared by
value whatever their quotes, long ones (docstrings, messages) as one token. The tokens
are cut into k-gram shingles, and shingles found in the reference solution or the stub
are discarded (they are nobody's own work), as are shingles shared by a large part of
the class (idioms). Two submissions with enough shingles of their own are compared by the
Jaccard index of their shingle sets, through an inverted index (only pairs that share a
shingle are ever compared). A similar pair is a note for a TA, never a score change.
"""

from __future__ import annotations

import builtins
import dataclasses
import difflib
import html
import json
import keyword
import re
from collections.abc import Mapping, Sequence

from ..checks import Question

K = 5  # tokens per shingle
THRESHOLD = 0.7  # Jaccard index from which a pair is listed
MIN_SHINGLES = 12  # a submission needs this many shingles of its own to be compared at all
COMMON_SHARE = 0.2  # shingles in more than this share of the class (and more than 3 students) are idioms
LONG_STRING = 40
PLACEHOLDER = "_v_"


@dataclasses.dataclass(frozen=True)
class SimilarPair:
    question: str
    first: str
    second: str
    similarity: float
    shared: int  # shingles in common


def staged_sources(files: Mapping[str, bytes], questions: Sequence[Question]) -> dict[str, str]:
    """{question id: its code} as grading stages it: the question's .py file, else a notebook's cells for it."""
    from ..batch.submissions import notebook_modules

    out: dict[str, str] = {}
    for question in questions:
        data = files.get(question.filename)
        if data is not None:
            out[question.id] = data.decode("utf-8", "replace")
    for name, data in sorted(files.items()):
        if not name.endswith(".ipynb"):
            continue
        try:
            notebook = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            continue
        if isinstance(notebook, Mapping):
            for question in questions:
                if question.id not in out:
                    module = notebook_modules(notebook, [question]).get(question.filename)
                    if module is not None:
                        out[question.id] = module
    return out


_TOKEN = re.compile(
    r"""(?P<comment>\#[^\n]*)
    |(?P<string>[rRbBuUfF]{0,2}(?:\"\"\"[\s\S]*?\"\"\"|\'\'\'[\s\S]*?\'\'\'|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'))
    |(?P<name>[^\W\d]\w*)
    |(?P<number>\d[\w.]*)
    |(?P<op>\*\*|//|==|!=|<=|>=|->|[^\s\w])""",
    re.X,
)
_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+[\w.]+[ \t]+)?import[ \t]+[^\n]*", re.M)
_KEPT = frozenset(keyword.kwlist) | frozenset(dir(builtins))
_OPEN, _CLOSE = frozenset("([{"), frozenset(")]}")


def tokens(source: str, stub_lines: frozenset[str] = frozenset()) -> list[str]:
    """`source` as normalised tokens (see the module's docstring); the stub's own lines left out.

    A regular-expression tokenizer (C speed, forgiving of code that does not parse): names
    are kept when they are keywords, builtins, imported, attributes (after a dot) or keyword
    arguments (`padding=`); every other name is one the file binds itself and becomes the
    placeholder.
    """
    text = "\n".join(line for line in source.splitlines() if line.strip() not in stub_lines)
    imported = {name for line in _IMPORT.findall(source) for name in re.findall(r"\w+", line)}
    out: list[str] = []
    append, kept, end_of = out.append, _KEPT | imported, len(text)
    depth = 0
    previous = ""
    for match in _TOKEN.finditer(text):
        kind, value = match.lastgroup, match.group()
        if kind == "name":
            if value not in kept and previous != ".":
                after = text[match.end() : min(end_of, match.end() + 3)].lstrip() if depth else ""
                if not (after.startswith("=") and not after.startswith("==")):
                    value = PLACEHOLDER
        elif kind == "op":
            depth += 1 if value in _OPEN else -1 if value in _CLOSE and depth else 0
        elif kind == "string":
            body = value.lstrip("rRbBuUfF")
            quote = 3 if body[:3] in ('"""', "'''") else 1
            inner = body[quote:-quote]
            value = repr(inner) if len(inner) <= LONG_STRING else "STR"
        elif kind == "comment":
            continue
        append(value)
        previous = value
    return out


def shingles(toks: Sequence[str], k: int = K) -> set[int]:
    return set(map(hash, zip(*(toks[i:] for i in range(k)))))


def similar_pairs(
    sources: Mapping[str, str], *, question: str, reference: str = "", stub: str = "", threshold: float = THRESHOLD
) -> list[SimilarPair]:
    """Pairs of students (`sources`: student -> code for `question`) at or above `threshold`, most similar first."""
    stub_lines = frozenset(line.strip() for line in stub.splitlines() if line.strip())
    base = shingles(tokens(reference)) | shingles(tokens(stub))
    own = {student: shingles(tokens(code, stub_lines)) - base for student, code in sources.items()}
    index: dict[int, list[str]] = {}
    for student, found in own.items():
        for shingle in found:
            index.setdefault(shingle, []).append(student)
    common = max(3, int(COMMON_SHARE * len(sources)))
    for shingle, students in index.items():
        if len(students) > common:
            for student in students:
                own[student].discard(shingle)
    shared: dict[tuple[str, str], int] = {}
    for students in index.values():
        if 1 < len(students) <= common:
            ordered = sorted(students)
            for i, a in enumerate(ordered):
                for b in ordered[i + 1 :]:
                    shared[(a, b)] = shared.get((a, b), 0) + 1
    pairs = []
    for (a, b), n in shared.items():
        if len(own[a]) < MIN_SHINGLES or len(own[b]) < MIN_SHINGLES:
            continue
        jaccard = n / (len(own[a]) + len(own[b]) - n)
        if jaccard >= threshold:
            pairs.append(SimilarPair(question, a, b, round(jaccard, 3), n))
    return sorted(pairs, key=lambda p: (-p.similarity, p.question, p.first, p.second))


def side_by_side(first: str, second: str, labels: tuple[str, str], max_lines: int = 400) -> str:
    """An HTML table of the two sources side by side, differences marked (`difflib.HtmlDiff`)."""
    a, b = first.splitlines()[:max_lines], second.splitlines()[:max_lines]
    first_label, second_label = (html.escape(label) for label in labels)  # HtmlDiff escapes the lines, not the labels
    return difflib.HtmlDiff(wrapcolumn=70).make_table(a, b, first_label, second_label, context=True, numlines=3)
