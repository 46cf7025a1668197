"""Keep TensorFlow, absl and Keras quiet.

nbgrader scores a test cell 0 when anything reaches stderr, and a student reading
a report at 2 a.m. does not need TensorFlow's start-up banner. `silence_frameworks`
must run before TensorFlow is imported; `captured_stderr` swallows what still gets
written (also from C++ code, which writes to file descriptor 2 directly).
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

_QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "ABSL_MIN_LOG_LEVEL": "3",
    "GRPC_VERBOSITY": "ERROR",
}


def silence_frameworks() -> None:
    """Set the log levels of TensorFlow, absl and Keras to errors only."""
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", module=r"keras(\..*)?")
    warnings.filterwarnings("ignore", module=r"tensorflow(\..*)?")
    warnings.filterwarnings("ignore", category=UserWarning, message=r".*input_shape.*")
    for name in ("tensorflow", "absl", "keras", "jax", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)


def import_keras():
    """Import Keras with the frameworks silenced; returns the module.

    The first import also moves every object that exists then (TensorFlow's hundreds of
    thousands: module-level, alive for good) out of the garbage collector's reach
    (`gc.freeze`): each full collection, e.g. in `keras.backend.clear_session`, then takes
    milliseconds instead of most of a second, and forked children share those pages.
    """
    silence_frameworks()
    first = "keras" not in sys.modules
    with captured_stderr():
        import keras

        keras.utils.disable_interactive_logging()
    if first:
        gc.freeze()
    return keras


@contextlib.contextmanager
def captured_stderr() -> Iterator[io.StringIO]:
    """Send Python- and C-level stderr to a buffer for the duration of the block."""
    buffer = io.StringIO()
    try:
        fd = sys.__stderr__.fileno() if sys.__stderr__ else 2
        saved_fd = os.dup(fd)
    except (OSError, ValueError, AttributeError):
        with contextlib.redirect_stderr(buffer):
            yield buffer
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), fd)
        try:
            with contextlib.redirect_stderr(buffer):
                yield buffer
        finally:
            os.dup2(saved_fd, fd)
            os.close(saved_fd)
            sink.seek(0)
            buffer.write(sink.read().decode("utf-8", "replace"))
