"""Load a question's module from a submission folder (never from site-packages)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import io
import sys
from pathlib import Path
from typing import Any

from .checks import Question, explain_exception


@dataclasses.dataclass
class LoadedModule:
    """The names a submission file defines, or why it could not be loaded."""

    path: Path
    namespace: dict[str, Any]
    error: str | None = None


def load_module(folder: Path, question: Question) -> LoadedModule:
    """Import `folder/<question.module>.py` under a private module name.

    The folder is put at the front of `sys.path` while the file runs, so a submission
    may import its own helper files. Output printed at import time is discarded.
    """
    path = (Path(folder) / question.filename).resolve()
    if not path.is_file():
        return LoadedModule(path, {}, f"{question.filename} was not found in {Path(folder)}.")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"_cnn_grader_submission_{digest}_{question.module}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    sys.modules[module_name] = module
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            spec.loader.exec_module(module)
    except SyntaxError as error:
        return LoadedModule(path, {}, f"{question.filename} has a syntax error on line {error.lineno}: {error.msg}.")
    except Exception as error:  # top-level student code may raise anything
        return LoadedModule(
            path, {}, explain_exception(f"import {question.module}", error, str(path)) + " (while loading the file)."
        )
    finally:
        sys.path.remove(str(path.parent))
        sys.modules.pop(module_name, None)
    return LoadedModule(path, vars(module))
