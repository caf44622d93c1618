"""Ctrl-C and SIGTERM: the search's handler, and safe points that re-raise a lost interrupt.

The handler records the signal and raises KeyboardInterrupt where the main thread is. If that
is inside a finalizer (``__del__``, which TensorFlow runs often during garbage collection),
Python prints "Exception ignored" and drops the exception: the interrupt would be lost (seen:
SIGTERM during model.fit, and the search trained on). So the training loop calls ``check()``
after every batch and the search loop before every claim: a recorded signal is raised again
there. SIGINT's handler is set explicitly, since a process started in the background by a
script inherits SIGINT ignored, and Python then installs none. Inside ``deferred()`` (claiming a
trial) a signal is only recorded, and the caller raises it once the step is whole.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any, Iterator

_received: list[int] = []
_deferring: list[bool] = []


def install() -> None:
    """Ctrl-C (SIGINT) and SIGTERM stop this process cleanly through KeyboardInterrupt."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def _handler(signum: int, frame: Any) -> None:
    _received.append(signum)
    if not _deferring:
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Inside this block a signal is recorded but not raised; ``check()`` raises it afterwards.

    For steps that must not be cut in two, e.g. claiming a trial (WAITING -> RUNNING) and
    handing it to the code that marks it failed on an interrupt: a KeyboardInterrupt between
    the two would leave the trial RUNNING until its heartbeats went stale.
    """
    _deferring.append(True)
    try:
        yield
    finally:
        _deferring.pop()


def received() -> bool:
    """Whether Ctrl-C or SIGTERM has arrived (an exception raised after it may be its doing)."""
    return bool(_received)


def check() -> None:
    """Raise KeyboardInterrupt if a signal was received (its first raise may have been swallowed)."""
    if _received:
        raise KeyboardInterrupt


def exit_code() -> int:
    """128 + the signal's number, as shells report it: 130 for Ctrl-C (SIGINT), 143 for SIGTERM."""
    return 128 + (_received[-1] if _received else signal.SIGINT)
