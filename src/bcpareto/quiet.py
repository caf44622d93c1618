"""Quiet start-up: TensorFlow, absl and XLA print their start-up logs straight to file descriptor 2.

Those lines ("All log messages before absl::InitializeLog()", "Could not find cuda drivers",
"failed call to cuInit") say nothing a bcpareto user can act on, so unless -v is given (or
BCPARETO_VERBOSE=1) TensorFlow is imported and its devices initialised with descriptor 2
pointing at a temporary file; afterwards every line that is not such noise is passed on, and
bcpareto says in one line of its own which device it trains on.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

VERBOSE_ENV = "BCPARETO_VERBOSE"
# C++ log lines (I/W/E + date), absl's preamble, and the CPU-only build's CUDA probing.
_NOISE = re.compile(
    r"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\)"
    r"|To enable the following instructions: .* rebuild TensorFlow"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    # the TFLite converter's and LiteRT's own lines, once per converted or loaded model
    r"|fully_quantize: \d+, inference_type: \d+"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.)"
)


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def import_tensorflow() -> str:
    """Import TensorFlow and initialise its devices, hiding start-up noise unless verbose.

    Returns the device it will train on, in words ("CPU" or "GPU: /physical_device:GPU:0, ...").
    """
    if verbose():
        return _devices()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr():
        devices = _devices()
    _quiet_retracing()
    return devices


@contextlib.contextmanager
def native_stderr() -> Iterator[None]:
    """Run the block with file descriptor 2 in a temporary file (C++ code writes there, past
    sys.stderr), then pass on every line that is not known noise. Verbose: a no-op."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured = sink.read().decode(errors="replace")
            kept = [line for line in captured.splitlines() if line.strip() and not _NOISE.match(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")


def _quiet_retracing() -> None:
    """Hide tf.function's "triggered tf.function retracing" warning: a search builds a new model
    per trial by design, so after a few models TensorFlow says so on every one."""
    import logging

    class _NoRetracing(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "triggered tf.function retracing" not in record.getMessage()

    import tensorflow as tf

    tf.get_logger().addFilter(_NoRetracing())


def _devices() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    tf.constant(1.0) + 1.0  # the first op initialises the device (where cuInit is logged)
    if not gpus:
        return "CPU (TensorFlow sees no GPU)"
    return "GPU: " + ", ".join(g.name for g in gpus)
