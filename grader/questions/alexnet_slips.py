"""Wrong AlexNet totals that students copy from the course notes, and what went wrong in each.

The course notes (document 001) sum the 2012 paper's AlexNet (96 filters in conv1,
227x227 input) as (3*11*11*96+96) + (96*256*5*5+256) + (256*384*3*3+384)*2 +
(384*3*3*256+256) + (6*6*256*4096+4096) + (4096*4096+4096) + (4096*1000+1000) and print
61,910,632. The course's exercise uses torchvision's layout instead (64 filters, 224x224).
"""

from __future__ import annotations

from ..diagnoses import Diagnosis

# (in_channels, out_channels, kernel) for conv layers, (in, out) for dense layers.
PAPER_CONV = [(3, 96, 11), (96, 256, 5), (256, 384, 3), (384, 384, 3), (384, 256, 3)]
PAPER_DENSE = [(6 * 6 * 256, 4096), (4096, 4096), (4096, 1000)]
NOTES_PRINTED_TOTAL = 61_910_632  # as printed in the course notes, an addition slip

NOTES_SUM = Diagnosis("alexnet-notes-sum", "AlexNet total copied from the course notes (61,910,632, an addition slip)")
NOTES_FORMULA = Diagnosis("alexnet-notes-formula", "AlexNet total from the notes' formula (conv4 counted as 256->384)")
PAPER_TOTAL = Diagnosis(
    "alexnet-paper-total", "AlexNet total of the 2012 paper (96 filters, 227x227), not the course's"
)
DIAGNOSES = (NOTES_SUM, NOTES_FORMULA, PAPER_TOTAL)


def _total(convs, denses) -> int:
    return sum(k * k * i * o + o for i, o, k in convs) + sum(i * o + o for i, o in denses)


def _totals() -> tuple[int, int]:
    """(the paper's true total, what the notes' formula adds up to)."""
    paper = _total(PAPER_CONV, PAPER_DENSE)
    notes_formula = _total(PAPER_CONV[:3] + [(256, 384, 3)] + PAPER_CONV[4:], PAPER_DENSE)
    return paper, notes_formula


def known_alexnet_totals() -> dict[int, str]:
    """Map each known wrong total to the explanation a student needs."""
    paper, notes_formula = _totals()
    return {
        NOTES_PRINTED_TOTAL: (
            f"That is the total printed in the course notes, which contains an addition slip: their own formula "
            f"adds up to {notes_formula:,}, and it describes the 2012 paper's AlexNet, not the course's "
            f"torchvision layout (64 filters in conv1, 224x224 input)."
        ),
        notes_formula: (
            "That is the course notes' formula, which counts conv4 as 256->384 channels (it is 384->384) "
            "and describes the 2012 paper's AlexNet (96 filters, 227x227 input), not the course's "
            "torchvision layout (64 filters in conv1, 224x224 input)."
        ),
        paper: (
            f"That is the 2012 paper's AlexNet (96 filters in conv1, 227x227 input, {paper:,} parameters). "
            "The course uses torchvision's layout: 64, 192, 384, 256, 256 filters on a 224x224 input."
        ),
    }


def known_alexnet_diagnoses() -> dict[int, str]:
    """Map each known wrong total to its diagnosis id."""
    paper, notes_formula = _totals()
    return {NOTES_PRINTED_TOTAL: NOTES_SUM.id, notes_formula: NOTES_FORMULA.id, paper: PAPER_TOTAL.id}
