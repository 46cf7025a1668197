"""Load a submission's file as a module: the one loader of student files, in the sandbox and in-process."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import io
import sys
from pathlib import Path
from typing import Any, TextIO

from .checks import Question, explain_exception


@dataclasses.dataclass
class LoadedModule:
    """The names a submission file defines, or why it could not be loaded."""

    path: Path
    namespace: dict[str, Any]
    error: str | None = None


def not_found_message(filename: str, folder: Path | str) -> str:
    """What a student reads when the question's file is missing from their folder."""
    return f"{filename} was not found in {folder}."


def load_file(
    path: Path, module_name: str, *, stdout: TextIO | io.TextIOBase | None = None, keep: bool = False
) -> LoadedModule:
    """Import the student file `path` as `module_name`; whatever its top-level code does becomes `error`.

    The file's folder is put at the front of `sys.path` while it runs, so a submission may
    import its own helper files. What it prints goes to `stdout` (default: discarded).
    With `keep`, the module stays in `sys.modules` (the sandbox: Keras finds a subclassed
    model's class there). A real Ctrl-C (KeyboardInterrupt) still stops the grader.
    """
    path = Path(path)
    name = path.name
    if not path.is_file():
        return LoadedModule(path, {}, not_found_message(name, path.parent))
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        return LoadedModule(path, {}, f"{name} cannot be imported as a Python module.")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    sys.path.insert(0, folder)
    sys.modules[module_name] = module
    loaded = True
    try:
        with contextlib.redirect_stdout(stdout if stdout is not None else io.StringIO()):
            spec.loader.exec_module(module)
    except KeyboardInterrupt:
        loaded = False
        raise
    except SyntaxError as error:
        loaded = False
        return LoadedModule(path, {}, f"{name} has a syntax error on line {error.lineno}: {error.msg}.")
    except SystemExit as error:
        loaded = False
        why = f"calls sys.exit({error.code!r}) while loading: remove it (the file is imported, not run as a script)."
        return LoadedModule(path, {}, f"{name} {why}")
    except MemoryError:
        loaded = False
        return LoadedModule(path, {}, f"{name} ran out of memory while loading (top-level code allocates too much).")
    except BaseException as error:  # noqa: BLE001 - top-level student code may raise anything
        loaded = False
        what = explain_exception(f"import {path.stem}", error, str(path))
        return LoadedModule(path, {}, f"{what} (while loading the file).")
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
        if not (keep and loaded):
            sys.modules.pop(module_name, None)
    return LoadedModule(path, vars(module))


def load_module(folder: Path, question: Question) -> LoadedModule:
    """Import `folder/<question.module>.py` (never from site-packages) under a private module name."""
    path = (Path(folder) / question.filename).resolve()
    if not path.is_file():
        return LoadedModule(path, {}, not_found_message(question.filename, Path(folder)))
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    return load_file(path, f"_cnn_grader_submission_{digest}_{question.module}")
