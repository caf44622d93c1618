"""Workers that belong to their search (issue 29): they stop with it, and its stdout never stops them.

The real-process cases start `python -m bcpareto search --workers 2` on a few real images at
32 px, one epoch, and stop it at a pause point (bcpareto.pausepoints) once both workers have
claimed their trials: the parent killed by SIGKILL (a lost terminal, an OOM killer), a hangup
and Ctrl-Z, a stdout that nobody reads and then closes (`| head -n 5`). The fast cases check
the two mechanisms on their own, without TensorFlow: a worker's lifeline (interrupts.py) and
the relay of its output (workers.py).
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bcpareto import interrupts
from bcpareto.workers import _drain, _Output

from .conftest import ROOT, needs_data
from .procs import GRID_2, _csv, _env, _exactly_once, _finish, _setup, _sqlite, _start, _trials

# Paused workers must not be taken as dead while the test looks at them (a loaded machine can
# starve a heartbeat thread), nor walk on past the pause before the signal comes.
PAUSED = {"BCPARETO_GRACE_SECONDS": "30", "BCPARETO_PAUSE_SECONDS": "300"}
STARTED = re.compile(r"\[worker (\d+)\] started, pid (\d+)")


def _state(pid: int) -> str | None:
    """The process's state letter from /proc (R, S, T, Z...), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return _state(pid) not in (None, "Z", "X")  # an orphan's zombie waits for init: it is gone


def _until(predicate: Any, *, timeout: float, what: str) -> float:
    """Seconds until ``predicate()`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def _wait_for_markers(folder: Path, phase: str, count: int, proc: subprocess.Popen[str],
                      timeout: float = 240) -> None:
    def reached() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the search ended before {count} workers reached {phase!r}")
        return len(list(folder.glob(f"{phase}.*"))) >= count

    _until(reached, timeout=timeout, what=f"{count} workers at {phase!r}")


def _paused_env(pauses: Path, **extra: str) -> dict[str, str]:
    return _env(BCPARETO_PAUSE_AT="train", BCPARETO_PAUSE_DIR=str(pauses), **PAUSED, **extra)


def _interrupted_then_rerun(tmp_path: Path, args: tuple[str, ...]) -> None:
    """Both trials FAIL 'interrupted' (never another reason); the same command trains both."""
    url = _sqlite(tmp_path / "run")
    trials = _trials(url)
    assert len(trials) == 2 and not [t for t in trials if t.state.name == "RUNNING"], \
        [(t.number, t.state.name) for t in trials]
    reasons = [(t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
    assert all(state == "FAIL" and reason == "interrupted" for _, state, reason in reasons), reasons
    proc = _start(tmp_path, *args)
    out = _finish(proc)
    assert proc.returncode == 0, out
    assert "Done: 2/2 grid points completed, 0 failed, 0 remaining" in out, out
    _exactly_once(_trials(url), 2)
    _csv(tmp_path / "run", 2)


# --- the parent killed: its workers stop, their points interrupted, not failed ----------------


@pytest.mark.slow  # subprocess workers
@needs_data
@pytest.mark.train
def test_workers_stop_with_a_killed_parent_and_a_rerun_trains_their_points(
    tmp_path: Path, data_dir: Path
) -> None:
    _setup(tmp_path, GRID_2)
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    args = ("--run-dir", "run", "--data-dir", str(data_dir), "--workers", "2")
    proc = _start(tmp_path, *args, env=_paused_env(pauses))
    _wait_for_markers(pauses, "train", 2, proc)  # each worker has claimed a trial and runs it
    os.kill(proc.pid, signal.SIGKILL)  # as the OOM killer, or a lost ssh session's kill -9
    out = _finish(proc, timeout=30)
    pids = [int(pid) for _, pid in STARTED.findall(out)]
    assert len(pids) == 2, out
    seconds = _until(lambda: not any(_alive(p) for p in pids), timeout=30, what="the workers to exit")
    print(f"both workers gone {seconds:.1f} s after their parent's SIGKILL")
    _interrupted_then_rerun(tmp_path, args)


# --- a hangup and Ctrl-Z reach the workers ------------------------------------------------------


@pytest.mark.slow
@needs_data
@pytest.mark.train
def test_ctrl_z_stops_the_workers_too_and_a_hangup_interrupts_them(tmp_path: Path, data_dir: Path) -> None:
    _setup(tmp_path, GRID_2)
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    args = ("--run-dir", "run", "--data-dir", str(data_dir), "--workers", "2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcpareto", "search", str(tmp_path / "grid.xlsx"), "--config",
         str(tmp_path / "fast.toml"), *args],
        cwd=tmp_path, env=_paused_env(pauses), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
        process_group=0,  # as a shell's job: its own group, in this session (a group cut off
    )                     # from its session ignores Ctrl-Z, as POSIX says)
    _wait_for_markers(pauses, "train", 2, proc)
    head = ""
    assert proc.stdout is not None
    while len(STARTED.findall(head)) < 2:
        line = proc.stdout.readline()
        assert line, head
        head += line
    pids = [proc.pid] + [int(pid) for _, pid in STARTED.findall(head)]

    os.kill(proc.pid, signal.SIGTSTP)  # Ctrl-Z: the terminal signals the parent's group only
    _until(lambda: all(_state(p) == "T" for p in pids), timeout=20, what="all three stopped")
    os.kill(proc.pid, signal.SIGCONT)  # fg
    _until(lambda: not any(_state(p) == "T" for p in pids), timeout=20, what="all three going on")

    proc.send_signal(signal.SIGHUP)  # the terminal closed
    out = head + _finish(proc, timeout=120)
    assert proc.returncode == 128 + signal.SIGHUP, out
    assert "Interrupted" in out, out
    _until(lambda: not any(_alive(p) for p in pids[1:]), timeout=30, what="the workers to exit")
    _interrupted_then_rerun(tmp_path, args)


# --- a stdout nobody reads, then closed: training goes on ---------------------------------------


@pytest.mark.slow
@needs_data
@pytest.mark.train
def test_a_stdout_nobody_reads_then_closed_never_holds_a_worker_up(tmp_path: Path, data_dir: Path) -> None:
    """`search --workers 2 | head -n 12` with each worker printing 20,000 lines (over 1 MB)."""
    _setup(tmp_path, GRID_2)
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    args = ("--run-dir", "run", "--data-dir", str(data_dir), "--workers", "2")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcpareto", "search", str(tmp_path / "grid.xlsx"), "--config",
         str(tmp_path / "fast.toml"), *args],
        cwd=tmp_path, env=_env(BCPARETO_PAUSE_AT="train", BCPARETO_PAUSE_DIR=str(pauses),
                               BCPARETO_PAUSE_FLOOD="20000"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # Nobody reads the search's stdout yet: each worker's marker is written once its 20,000
    # lines are out, far past a pipe's 64 KiB.
    _wait_for_markers(pauses, "train", 2, proc)
    assert proc.stdout is not None
    head = [proc.stdout.readline() for _ in range(12)]  # the parent's header, then its workers' lines
    proc.stdout.close()  # head -n 12 exits
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err  # the search's result, not its display's
    assert "Traceback" not in err, err
    assert err.count("stdout is closed") == 1, err
    assert any("[worker 1] started" in line for line in head), head
    url = _sqlite(tmp_path / "run")
    trials = _trials(url)
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "COMPLETE"], err
    _csv(tmp_path / "run", 2)

    rerun = _start(tmp_path, *args)
    out = _finish(rerun)
    assert rerun.returncode == 0, out
    assert "Done: 2/2 grid points completed, 0 failed, 0 remaining" in out, out
    assert " done in " not in out, out  # nothing trained again
    assert len(_trials(url)) == 2


@needs_data
@pytest.mark.slow
@pytest.mark.train
def test_one_process_search_piped_into_head_completes_every_point(tmp_path: Path, data_dir: Path) -> None:
    """`search --workers 1 | head -n 3`: the first write after head exits raised BrokenPipeError
    inside a trial, which was recorded failed and skipped by a rerun."""
    _setup(tmp_path, GRID_2)
    args = ("--run-dir", "run", "--data-dir", str(data_dir), "--workers", "1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcpareto", "search", str(tmp_path / "grid.xlsx"), "--config",
         str(tmp_path / "fast.toml"), *args],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    head = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and err.count("stdout is closed") == 1, err
    assert head[0].startswith("Grid:"), head
    trials = _trials(_sqlite(tmp_path / "run"))
    assert sorted(t.state.name for t in trials if t.state.name == "COMPLETE") == ["COMPLETE", "COMPLETE"], err
    _csv(tmp_path / "run", 2)


# --- the mechanisms alone (no TensorFlow) -------------------------------------------------------

CHILD = """\
import sys, time
from bcpareto import interrupts
interrupts.install()
open(sys.argv[1], "w").write("")
try:
    while True:
        time.sleep(0.02)
except KeyboardInterrupt:
    for i in range(20000):  # over 64 KiB, printed after the parent is gone
        print("still printing", i)
    open(sys.argv[2], "w").write(str(interrupts.exit_code()))
    sys.exit(interrupts.exit_code())
"""


def test_a_worker_hangs_up_when_its_lifeline_closes_and_prints_without_a_broken_pipe(tmp_path: Path) -> None:
    lifeline, lifeline_end = os.pipe()
    out_read, out_write = os.pipe()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"),
           interrupts.LIFELINE_ENV: f"{lifeline},{out_read}"}
    ready, result = tmp_path / "ready", tmp_path / "result"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(ready), str(result)], env=env,
                             stdout=out_write, stderr=subprocess.STDOUT, pass_fds=(lifeline, out_read))
    os.close(out_write)
    os.close(lifeline)
    try:
        _until(lambda: ready.exists() or child.poll() is not None, timeout=30, what="the child")
        os.close(lifeline_end)  # the parent is gone: its ends of both pipes close at once
        os.close(out_read)
        assert child.wait(timeout=20) == 128 + signal.SIGHUP
        assert result.read_text() == str(128 + signal.SIGHUP)
    finally:
        if child.poll() is None:
            child.kill()


def test_nohup_keeps_hangups_ignored_but_a_worker_always_takes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
        interrupts.install()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        monkeypatch.setenv(interrupts.LIFELINE_ENV, "not,fds")  # a worker (its fds not inherited)
        interrupts.install()
        assert signal.getsignal(signal.SIGHUP) is interrupts._handler
        assert interrupts.LIFELINE_ENV not in os.environ  # not passed on to its own children
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        interrupts._received.clear()


FLOOD = "import sys\nfor i in range(int(sys.argv[1])): print('line', i, 'x' * 60)\n"


@pytest.mark.parametrize("stdout", ["not read", "closed"])
def test_the_relay_never_holds_a_worker_up(stdout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker printing 1.5 MB exits at once whether stdout blocks forever or is a broken pipe;
    nothing is raised in the relay's threads, and a closed stdout is reported once."""
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # nothing of pytest's own to redirect
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    errors: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    release = threading.Event()
    printed: list[str] = []

    def echo(line: str) -> None:
        if stdout == "closed" and len(printed) >= 5:
            raise BrokenPipeError(32, "Broken pipe")
        printed.append(line)
        if stdout == "not read" and len(printed) >= 5:
            release.wait()  # a full pipe nobody reads

    output = _Output(echo)
    worker = subprocess.Popen([sys.executable, "-c", FLOOD, "25000"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    assert worker.stdout is not None
    reader = threading.Thread(target=_drain, args=(worker.stdout, "[worker 1] ", output))
    reader.start()
    try:
        assert worker.wait(timeout=30) == 0
        reader.join(timeout=10)
        assert not reader.is_alive()
    finally:
        release.set()
    output.close(timeout=10)
    assert not errors
    if stdout == "closed":
        assert sys.stderr.getvalue().count("stdout is closed (Broken pipe)") == 1
        assert len(printed) == 5
    else:
        assert any("line(s) of worker output dropped: stdout was not read" in p for p in printed), printed[-3:]
