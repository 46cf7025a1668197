"""`grader release`: the student distribution, which grades without the reference solutions.

The release runs the checks once on the reference solutions (and the stubs) and records
what the public checks take from them (`record`): reference traces, models as their Keras
configuration (layers and names, no weights), arrays such as a reference split, numbers.
It writes that data into a wheel of the grader (`package`), with the stubs and no file of
`solutions/`; `grader.references.DataReferences` reads it back when `solutions/` is absent.
Keys that only hidden checks use are left out: hidden checks run when the TA grades.
`build.release` does it all; `command` is the CLI. This package module imports nothing, so
the CLI starts fast.
"""
