"""Helpers for tests that run `python -m bcpareto search` as real processes on one study.

Shared by the worker, interrupt, fault and strategy tests: a tiny preset and grid, the child's
environment (1 s heartbeats, a 4 s grace period, this checkout's src first), starting and
finishing a search process, and reading the study back. Not a test file: pytest collects only
test_*.py, and no test file imports another (CONTRIBUTING.md, "Test layout").

The fixtures these tests share (`data_dir`, `pg_url`) are in conftest.py.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bcpareto.errors import StorageError
from bcpareto.storage import open_storage

from .conftest import ROOT, write_sheet

FAST = """\
image_size = 32        # tests: 32 px, one epoch, a handful of images, no TFLite measures
epochs = 1
batch_size = 8
edge_metrics = false
"""
HEADER = ["dense_layers", "neurons", "filters", "kernel_sizes"]
GRID_2 = [HEADER, ["[1]", "[[8]]", "[[4, 8], [4, 8, 8]]", "[3, 3, 3]"]]
GRID_4 = [HEADER, ["[1, 1]", "[[8], [16]]", "[[4, 8], [4, 8, 8]]", "[3, 3, 3]"]]
def _setup(tmp_path: Path, rows: list[list[Any]]) -> tuple[Path, Path]:
    (tmp_path / "fast.toml").write_text(FAST)
    return write_sheet(tmp_path / "grid.xlsx", rows), tmp_path / "fast.toml"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
        BCPARETO_HEARTBEAT_SECONDS="1",
        BCPARETO_GRACE_SECONDS="4",
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONUNBUFFERED="1",
    )
    env.pop("BCPARETO_STORAGE", None)
    env.update(extra)
    return env


def _start(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    grid, preset = tmp_path / "grid.xlsx", tmp_path / "fast.toml"
    return subprocess.Popen(
        [sys.executable, "-m", "bcpareto", "search", str(grid), "--config", str(preset), *args],
        cwd=tmp_path, env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def _trials(url: str, study: str | None = None) -> list[Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url, must_exist=True)  # under the lock that creates a new file's tables
    name = study or optuna.get_all_study_names(storage)[0]
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def _wait_for(url: str, predicate: Any, *, proc: subprocess.Popen[str], timeout: float = 90) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the worker ended early:\n{proc.stdout.read() if proc.stdout else ''}"
        if Path(url.split("///", 1)[-1]).exists():
            try:
                trials = _trials(url)
            except (IndexError, StorageError):  # no study yet (or the file made, its tables not yet)
                trials = []
            if predicate(trials):
                return trials
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the study")


def _states(trials: list[Any]) -> dict[int, list[str]]:
    by_point: dict[int, list[str]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        by_point.setdefault(int(t.user_attrs["grid_id"]), []).append(t.state.name)
    return by_point


def _exactly_once(trials: list[Any], n_points: int) -> None:
    states = _states(trials)
    assert sorted(states) == list(range(n_points))
    for gid, seen in states.items():
        assert seen.count("COMPLETE") == 1, f"grid point {gid}: {seen}"


def _csv(run_dir: Path, n_points: int) -> list[dict[str, str]]:
    """metrics_log.csv parses, every row has every column, one row per grid point."""
    with open(run_dir / "metrics_log.csv", newline="") as handle:
        lines = list(csv.reader(handle))
    header, rows = lines[0], lines[1:]
    assert all(len(r) == len(header) for r in rows), "torn row"
    records = [dict(zip(header, r)) for r in rows]
    assert sorted(int(r["grid_id"]) for r in records) == list(range(n_points)), "duplicate or missing row"
    assert all(r["val_accuracy"] and r["trial"] for r in records)
    return records


def _sqlite(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / 'bcpareto.db').resolve()}"


def wait_for_pause(pauses: Path, phase: str, proc: subprocess.Popen[str], *, timeout: float = 240) -> None:
    """Until the search ``proc`` reaches pause point ``phase`` (bcpareto.pausepoints); fails if it ends first."""
    deadline = time.monotonic() + timeout
    while not list(pauses.glob(f"{phase}.*")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.2)
