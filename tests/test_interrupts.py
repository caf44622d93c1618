"""Ctrl-C and SIGTERM stop a search at every phase, deterministically (no race on timing).

Each case starts the real entry point with BCPARETO_PAUSE_AT=<phase> (bcpareto.pausepoints): the
search stops at that phase and writes a marker file; the test waits for the marker, sends the
signal, and checks the exit code (128 + signal: 130 for SIGINT, 143 for SIGTERM), that no trial is
left RUNNING, that a trial interrupted mid-way is FAIL 'interrupted', that metrics_log.csv is whole,
and (for some cases) that the same command again completes every point.
"""

from __future__ import annotations

import csv
import signal
import time
from pathlib import Path

import pytest

from .conftest import needs_data
from .procs import GRID_2, _csv, _env, _exactly_once, _finish, _setup, _start, _trials

# No trial here should ever be taken as dead: a grace period of 30 s, not tests/procs.py's 4 s, so that a
# heartbeat thread starved on a loaded machine (seen once beside a training run) cannot fail the
# paused trial as stale before the signal arrives.
LOADED = {"BCPARETO_GRACE_SECONDS": "30"}


CASES = [
    # (phase, signal, workers, rerun afterwards)
    ("queued", signal.SIGINT, 1, False),
    ("claimed", signal.SIGINT, 1, True),  # held back until the claimed trial can be marked
    ("claimed", signal.SIGTERM, 2, False),
    ("train", signal.SIGINT, 1, True),
    ("convert", signal.SIGINT, 1, False),
    ("csv", signal.SIGINT, 1, True),
    ("train", signal.SIGTERM, 1, False),
    ("csv", signal.SIGTERM, 1, False),
    ("queued", signal.SIGINT, 2, False),
    ("train", signal.SIGINT, 2, True),
    ("convert", signal.SIGTERM, 2, False),
    ("csv", signal.SIGINT, 2, False),
    ("fit", signal.SIGTERM, 1, True),
    ("fit", signal.SIGINT, 2, False),
]
# A search started in the background by a script inherits SIGINT *ignored*; Python then installs
# no KeyboardInterrupt, and before the fix SIGINT was lost: the search finished with exit 0.
INHERITED_IGNORE = [("train", 1), ("train", 2)]


def _wait_for_marker(folder: Path, phase: str, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not list(folder.glob(f"{phase}.*")):
        if proc.poll() is not None:
            raise AssertionError(f"the search ended before reaching {phase!r}:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for phase {phase!r}")
        time.sleep(0.05)


@needs_data
@pytest.mark.train
@pytest.mark.slow
@pytest.mark.parametrize(
    "phase, sig, workers, rerun", CASES,
    ids=[f"{p}-{s.name}-{w}w" for p, s, w, _ in CASES],
)
def test_a_signal_at_each_phase_stops_the_search_cleanly(
    tmp_path: Path, data_dir: Path, phase: str, sig: signal.Signals, workers: int, rerun: bool
) -> None:
    _setup(tmp_path, GRID_2)
    if phase == "convert":  # the TFLite conversion happens only with edge metrics on
        (tmp_path / "fast.toml").write_text(
            (tmp_path / "fast.toml").read_text().replace("edge_metrics = false", "edge_metrics = true")
            + "latency_runs = 2\n"
        )
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    args = ("--run-dir", "run", "--data-dir", str(data_dir), "--workers", str(workers))
    proc = _start(tmp_path, *args, env=_env(BCPARETO_PAUSE_AT=phase, BCPARETO_PAUSE_DIR=str(pauses), **LOADED))
    _wait_for_marker(pauses, phase, proc)
    proc.send_signal(sig)
    out = _finish(proc, timeout=120)

    assert proc.returncode == 128 + sig, out
    assert "Interrupted" in out, out
    db = tmp_path / "run" / "bcpareto.db"
    trials = _trials(f"sqlite:///{db}") if db.exists() else []
    assert not [t for t in trials if t.state.name == "RUNNING"], "a trial was left running"
    failed = [t for t in trials if t.state.name == "FAIL"]
    reasons = [(t.number, t.user_attrs.get("fail_reason"), t.user_attrs.get("worker")) for t in failed]
    assert all(reason == "interrupted" for _, reason, _ in reasons), (reasons, out)
    if phase in ("claimed", "train", "fit", "convert"):
        assert failed, "the trial stopped mid-way is not marked interrupted"
    if phase == "csv":
        assert [t for t in trials if t.state.name == "COMPLETE"], "the finished trial was lost"
    log = tmp_path / "run" / "metrics_log.csv"
    if log.exists():  # whole: a header and complete rows, no temporary files beside it
        with open(log, newline="") as handle:
            header, *rows = list(csv.reader(handle))
        assert all(len(r) == len(header) for r in rows), "torn row"
    assert not list((tmp_path / "run").glob(".*.tmp")), "a temporary file was left behind"

    if rerun:
        out = _finish(_start(tmp_path, *args))
        assert "2/2 grid points completed" in out, out
        _exactly_once(_trials(f"sqlite:///{db}"), 2)
        _csv(tmp_path / "run", 2)


@needs_data
@pytest.mark.train
@pytest.mark.slow
@pytest.mark.parametrize("phase, workers", INHERITED_IGNORE, ids=[f"{p}-{w}w" for p, w in INHERITED_IGNORE])
def test_sigint_stops_a_search_that_inherited_sigint_ignored(
    tmp_path: Path, data_dir: Path, phase: str, workers: int
) -> None:
    import subprocess
    import sys

    _setup(tmp_path, GRID_2)
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    grid, preset = tmp_path / "grid.xlsx", tmp_path / "fast.toml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcpareto", "search", str(grid), "--config", str(preset), "--run-dir", "run",
         "--data-dir", str(data_dir), "--workers", str(workers)],
        cwd=tmp_path, env=_env(BCPARETO_PAUSE_AT=phase, BCPARETO_PAUSE_DIR=str(pauses), **LOADED),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as `cmd &` in a script
    )
    _wait_for_marker(pauses, phase, proc)
    proc.send_signal(signal.SIGINT)
    out = _finish(proc, timeout=120)
    assert proc.returncode == 130, out
    trials = _trials(f"sqlite:///{tmp_path / 'run' / 'bcpareto.db'}")
    assert not [t for t in trials if t.state.name == "RUNNING"]
    assert [t for t in trials if t.state.name == "FAIL" and t.user_attrs.get("fail_reason") == "interrupted"]


def test_an_interrupt_swallowed_by_a_finalizer_is_raised_at_the_next_check() -> None:
    """Python drops an exception raised inside __del__: the signal must not be lost with it."""
    import gc
    import os

    from bcpareto import interrupts

    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
    interrupts._received.clear()
    try:
        interrupts.install()

        class Finalizer:
            def __del__(self) -> None:
                os.kill(os.getpid(), signal.SIGTERM)  # the handler's raise happens in here
                time.sleep(0.2)

        Finalizer()
        gc.collect()  # "Exception ignored in ... __del__": the KeyboardInterrupt is gone
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
        assert interrupts.exit_code() == 143
    finally:
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGTERM, saved[1])
        signal.signal(signal.SIGHUP, saved[2])  # install() takes hangups too
        interrupts._received.clear()
