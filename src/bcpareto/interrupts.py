"""Ctrl-C, SIGTERM and hangups: the search's handler, and safe points that re-raise a lost interrupt.

The handler records the signal and raises KeyboardInterrupt where the main thread is. If that
is inside a finalizer (``__del__``, which TensorFlow runs often during garbage collection),
Python prints "Exception ignored" and drops the exception: the interrupt would be lost (seen:
SIGTERM during model.fit, and the search trained on). So the training loop calls ``check()``
after every batch and the search loop before every claim: a recorded signal is raised again
there. SIGINT's handler is set explicitly, since a process started in the background by a
script inherits SIGINT ignored, and Python then installs none. Inside ``deferred()`` (claiming a
trial) a signal is only recorded, and the caller raises it once the step is whole.

A hangup (SIGHUP: the terminal closed, the ssh session dropped) stops a search as SIGTERM does,
unless it was started with SIGHUP ignored (``nohup``). A worker of ``search --workers N`` also
takes its parent's end as a hangup: the parent holds the write end of a pipe (the lifeline) that
only closes when the parent is gone, even by SIGKILL; a thread of the worker waits for that EOF.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Iterator

LIFELINE_ENV = "BCPARETO_LIFELINE"  # "<lifeline fd>,<output fd>": set by --workers for each worker

_received: list[int] = []
_deferring: list[bool] = []


def install() -> None:
    """Ctrl-C (SIGINT), SIGTERM and SIGHUP stop this process cleanly through KeyboardInterrupt;
    a worker of --workers N stops the same way when its parent is gone."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    lifeline = os.environ.pop(LIFELINE_ENV, None)  # this process's own: not for its children
    # A worker always takes hangups (its parent may have been started under nohup, and the
    # kernel hangs up on a stopped worker whose parent died); a search under nohup ignores them.
    if lifeline or signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _handler)
    if lifeline:
        _watch_parent(lifeline)


def _handler(signum: int, frame: Any) -> None:
    if signum == signal.SIGHUP and _received:
        return  # a hangup while already stopping adds nothing (and must not cut the cleanup short)
    _received.append(signum)
    if not _deferring:
        raise KeyboardInterrupt


def _watch_parent(fds: str) -> None:
    """Start the thread that hangs this worker up once its parent is gone."""
    try:
        lifeline, output = (int(fd) for fd in fds.split(","))
        os.fstat(lifeline)
        os.fstat(output)
    except (ValueError, OSError):  # not inherited as promised: nothing to watch
        return
    threading.Thread(target=_on_parent_exit, args=(lifeline, output), daemon=True,
                     name="bcpareto-lifeline").start()


def _on_parent_exit(lifeline: int, output: int) -> None:
    """Wait for the lifeline's EOF, then send this process SIGHUP, its output sent nowhere first.

    ``output`` is the read end of this worker's own stdout pipe, held so that a line printed
    after the parent died can never fail with a broken pipe (which would fail the trial with
    that reason instead of marking it interrupted); from the parent's end on, fds 1 and 2 go to
    /dev/null and what the pipe still holds is drained, so no write stays blocked on it.
    """
    try:
        while os.read(lifeline, 1):  # the parent never writes: only EOF ends this
            pass
    except OSError:
        pass
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    os.kill(os.getpid(), signal.SIGHUP)
    os.set_blocking(output, False)
    with contextlib.suppress(OSError):  # BlockingIOError once it is empty
        while os.read(output, 1 << 16):
            pass


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
    """Whether Ctrl-C, SIGTERM or a hangup has arrived (an exception raised after it may be its doing)."""
    return bool(_received)


def check() -> None:
    """Raise KeyboardInterrupt if a signal was received (its first raise may have been swallowed)."""
    if _received:
        raise KeyboardInterrupt


def exit_code() -> int:
    """128 + the signal's number, as shells report it: 130 for Ctrl-C (SIGINT), 143 for SIGTERM,
    129 for a hangup."""
    return 128 + (_received[-1] if _received else signal.SIGINT)
