"""Pause points: let a test stop a search at a named phase, so it can signal it there, not by luck.

With BCPARETO_PAUSE_AT=<phase>[,<phase>...] and BCPARETO_PAUSE_DIR=<folder>, a process reaching
one of those phases writes ``<folder>/<phase>.<pid>`` and sleeps (up to a minute, or
BCPARETO_PAUSE_SECONDS) so the test can send SIGINT or SIGTERM at exactly that point. Unset
(always, outside tests) it does nothing.
Phases: decode (in each image's decoding thread, before its bytes are read: the data phase
of a search, before any study exists), queued (study queued, no trial claimed yet; the --workers parent before starting
workers), claimed (a trial just claimed, the study's lock still held, interrupts held back),
train (a trial claimed and running, before fit), fit (inside fit, after its second
batch), convert (before the TFLite conversion), csv (a trial told complete, before
metrics_log.csv is rewritten).
With BCPARETO_PAUSE_FLOOD=<lines> the process prints that many lines at the phase instead of
sleeping there, then writes the file and goes on: a test of output nobody reads (``| head``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from . import interrupts


def pause_point(phase: str) -> None:
    wanted = os.environ.get("BCPARETO_PAUSE_AT")
    if not wanted or phase not in wanted.split(","):
        return
    folder = Path(os.environ.get("BCPARETO_PAUSE_DIR") or ".")
    flood = int(os.environ.get("BCPARETO_PAUSE_FLOOD") or 0)
    if flood:
        for i in range(flood):
            print(f"flood {i} of {flood} lines at {phase!r}: output that nobody may be reading")
        (folder / f"{phase}.{os.getpid()}").write_text("")  # written only once the lines are out
        return
    (folder / f"{phase}.{os.getpid()}").write_text("")
    deadline = time.monotonic() + float(os.environ.get("BCPARETO_PAUSE_SECONDS") or 60)
    while time.monotonic() < deadline and not interrupts.received():  # or its KeyboardInterrupt
        time.sleep(0.05)
