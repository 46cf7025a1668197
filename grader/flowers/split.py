"""The 50/25/25 split of q7: is a (train, validation, test) split stratified, disjoint and covering."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

FRACTIONS = (0.5, 0.25, 0.25)
SPLIT_NAMES = ("train", "validation", "test")


def split_problem(labels: np.ndarray, parts: Any, *, call: str = "split_indices(labels)") -> str | None:
    """Why (train, val, test) is not a stratified 50/25/25 split of `labels`, or None when it is."""
    labels = np.asarray(labels)
    n = len(labels)
    if not isinstance(parts, (tuple, list)) or len(parts) != 3:
        return f"`{call}` should return three index arrays (train_idx, val_idx, test_idx), got {type(parts).__name__}."
    arrays = []
    for name, part in zip(SPLIT_NAMES, parts):
        array = np.asarray(part)
        if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
            return (
                f"The {name} part should be a 1-D array of integer image indices, got shape {array.shape} of "
                f"{array.dtype}. Return indices into `labels`, not the labels or a boolean mask."
            )
        if array.size and (array.min() < 0 or array.max() >= n):
            outside = int(array.min() if array.min() < 0 else array.max())
            return f"The {name} part holds index {outside}, outside 0..{n - 1}."
        if len(np.unique(array)) != len(array):
            return (
                f"The {name} part lists some images twice ({len(array) - len(np.unique(array))} repeats): "
                "draw without replacement (a permutation), not with random choices."
            )
        arrays.append(array.astype(np.int64))
    for i in range(3):
        for j in range(i + 1, 3):
            shared = np.intersect1d(arrays[i], arrays[j])
            if shared.size:
                return (
                    f"{shared.size} images are in both {SPLIT_NAMES[i]} and {SPLIT_NAMES[j]} (e.g. index "
                    f"{int(shared[0])}): the split leaks, so the test accuracy would measure memory, not "
                    "generalisation. Shuffle each class's indices once and cut that one permutation into "
                    "consecutive pieces."
                )
    covered = np.concatenate(arrays)
    if covered.size != n:
        missing = np.setdiff1d(np.arange(n), covered)
        return (
            f"{missing.size} of the {n} images are in no split (e.g. index {int(missing[0])}): "
            "the three parts together must cover every image."
        )
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        counts = [int(np.isin(a, members).sum()) for a in arrays]
        expected = [f * members.size for f in FRACTIONS]
        if any(abs(k - e) > 1 for k, e in zip(counts, expected)):
            exp = "/".join(f"{e:g}" for e in expected)
            return (
                f"Class {int(c)} has {members.size} images; your split puts {counts[0]}/{counts[1]}/{counts[2]} of "
                f"them in train/validation/test, expected {exp} (within one image). Split each class separately "
                "(stratify): 50% of its images to train, 25% to validation, the rest to test."
            )
    return None


def split_sizes(labels: np.ndarray, parts: Sequence[np.ndarray]) -> dict[str, Any]:
    """Totals and per-class extremes of a split, for the report."""
    labels = np.asarray(labels)
    sizes: dict[str, Any] = {"images": int(len(labels)), "classes": int(len(np.unique(labels)))}
    for name, part in zip(SPLIT_NAMES, parts):
        counts = np.bincount(labels[np.asarray(part, dtype=np.int64)], minlength=int(labels.max()) + 1)
        sizes[name] = {"images": int(len(part)), "per_class_min": int(counts.min()), "per_class_max": int(counts.max())}
    return sizes
