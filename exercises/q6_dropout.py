"""q6 — why does AlexNet use Dropout only in its classifier?

Course exercise 4: based on your answer to the previous question, can you guess why
AlexNet uses Dropout layers in its classifier only?

1. `classifier_parameter_fraction`: the share of a model's parameters that sit in its
   Dense layers (a float between 0 and 1).
2. `ANSWER`: your explanation in at least 20 words. It is graded by hand; the grader
   only checks that you wrote one.

Check your work with `grader check q6`.
"""

import keras


def classifier_parameter_fraction(model):
    """Return the fraction of `model`'s parameters that belong to Dense layers."""
    raise NotImplementedError


ANSWER = "YOUR ANSWER HERE"
