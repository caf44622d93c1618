"""Several workers on one study: exactly once, crash safety, Ctrl-C, failures, status, secrets.

The training tests start the real entry point (`python -m bcpareto search`) in subprocesses on a
few real images at 32 px, one epoch; heartbeats every 1 s and a 4 s grace period make a killed
worker's trial stale within seconds. The PostgreSQL tests need a server: `.ci/postgres.sh`
starts one and exports BCPARETO_TEST_PG_URL (they are skipped without it, except under CI).
"""

from __future__ import annotations

import csv
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bcpareto.cli import cli
from bcpareto.study import open_study
from bcpareto.storage import open_storage, redact
from bcpareto.workers import visible_gpus, worker_env

from .conftest import needs_data, write_sheet
from .procs import (
    FAST, GRID_2, GRID_4, HEADER, _csv, _env, _exactly_once, _finish, _setup, _sqlite, _start, _trials,
    _wait_for,
)

train = pytest.mark.train


# --- exactly once -------------------------------------------------------------------------------


@pytest.mark.slow  # subprocess workers
@needs_data
@train
def test_four_workers_on_sqlite_train_each_point_once(tmp_path: Path, data_dir: Path) -> None:
    _setup(tmp_path, GRID_4)
    started = time.perf_counter()
    out = _finish(_start(tmp_path, "--run-dir", "run", "--data-dir", str(data_dir), "--workers", "4"))
    wall = time.perf_counter() - started
    assert "Done: 4/4 grid points completed, 0 failed, 0 remaining" in out, out
    # the whole search's estimate, from the parent, before any worker starts (issue 27)
    assert out.index("Estimated time for 4 model(s) on 4 workers") < out.index("[worker 1] started"), out
    for i in (1, 2, 3, 4):
        assert f"[worker {i}] started" in out
    _exactly_once(_trials(_sqlite(tmp_path / "run")), 4)
    assert len(_trials(_sqlite(tmp_path / "run"))) == 4, "a point was claimed twice"
    _csv(tmp_path / "run", 4)
    for gid in range(4):
        assert out.count(f"grid point {gid} done in") == 1, out
    # each model's line tells the study's progress, the worker's elapsed time and the study's ETA
    starts = [line for line in out.splitlines() if "completed in the study) | elapsed " in line]
    assert len(starts) == 4, out
    assert all(" | ETA " in line for line in starts), out
    status = CliRunner().invoke(cli, ["status", "--run-dir", str(tmp_path / "run")])
    assert status.exit_code == 0, status.output
    assert "4 grid points: 4 completed, 0 running, 0 failed, 0 waiting; 0 remaining" in status.output
    print(f"4 workers, sqlite: {wall:.1f} s wall, 4 trials, 4 CSV rows")


@pytest.mark.slow  # subprocess workers
@needs_data
@train
def test_the_default_on_a_cpu_is_a_worker_per_core(tmp_path: Path, data_dir: Path) -> None:
    _setup(tmp_path, GRID_2)
    env = _env(BCPARETO_WORKERS="auto", CUDA_VISIBLE_DEVICES="-1")
    out = _finish(_start(tmp_path, "--run-dir", "run", "--data-dir", str(data_dir), env=env))
    cores = min(4, len(os.sched_getaffinity(0)))
    assert "Done: 2/2 grid points completed" in out, out
    assert (f"[worker {cores}] started" in out) == (cores > 1), out
    assert f"[worker {cores + 1}] started" not in out
    _exactly_once(_trials(_sqlite(tmp_path / "run")), 2)


@pytest.mark.slow
@needs_data
@train
def test_four_processes_on_postgresql_train_each_point_once(
    tmp_path: Path, data_dir: Path, pg_url: str
) -> None:
    """Four separate searches (as on four machines: own run dirs) started at the same moment."""
    _setup(tmp_path, GRID_4)
    study = f"pg-{uuid.uuid4().hex[:8]}"
    env = _env(BCPARETO_STORAGE=pg_url)  # the URL with its password stays out of argv
    procs = [
        _start(tmp_path, "--run-dir", f"machine{i}", "--data-dir", str(data_dir), "--study", study, env=env)
        for i in range(4)
    ]
    outs = [_finish(p) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], "\n".join(outs)
    trials = _trials(pg_url, study)
    _exactly_once(trials, 4)
    assert len(trials) == 4, "a point was claimed twice"
    joined = "\n".join(outs)
    for gid in range(4):
        assert joined.count(f"grid point {gid} done in") == 1, joined
    for i in range(4):  # every machine's CSV ends with all rows, regenerated from the storage
        _csv(tmp_path / f"machine{i}", 4)
    _assert_secret_absent(_password(pg_url), joined, tmp_path)
    status = CliRunner().invoke(cli, ["status", "--storage", pg_url, "--study", study])
    assert status.exit_code == 0, status.output
    assert "4 completed, 0 running, 0 failed, 0 waiting; 0 remaining" in status.output
    _assert_secret_absent(_password(pg_url), status.output, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_enqueue_is_exactly_once(tmp_path: Path, backend: str, request: Any) -> None:
    """Eight threads open one study at once (the storage lock): each point is enqueued once."""
    from concurrent.futures import ThreadPoolExecutor

    from bcpareto.config import TrainConfig
    from bcpareto.gridspec import read_grid

    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    points = read_grid(write_sheet(tmp_path / "grid.xlsx", GRID_4))
    study = f"enqueue-{uuid.uuid4().hex[:8]}"

    def one(_: int) -> None:
        open_study(points, config=TrainConfig(), run_dir=tmp_path, grid_name="grid.xlsx",
                   storage_url=url, study_name=study)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(8)))
    trials = _trials(url or _sqlite(tmp_path), study)
    assert sorted(int(t.user_attrs["grid_id"]) for t in trials) == [0, 1, 2, 3]
    assert {t.state.name for t in trials} == {"WAITING"}


def test_opening_a_new_file_retries_a_lost_table_creation_race(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers that start together race to create an empty file's tables; the loser's "already
    exists" is retried under the file's lock (a second try once failed: the lock's context
    manager was reused, and a generator's enters only once)."""
    import optuna

    real = optuna.storages.RDBStorage
    calls: list[str] = []

    def racing(*args: Any, **kwargs: Any) -> Any:
        calls.append("try")
        if len(calls) == 1:
            raise RuntimeError("(sqlite3.OperationalError) table studies already exists")
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    storage = open_storage(f"sqlite:///{tmp_path / 'race.db'}")
    assert calls == ["try", "try"]
    assert storage.get_all_studies() == []


def test_a_named_study_refuses_another_grid(tmp_path: Path) -> None:
    from bcpareto.config import TrainConfig
    from bcpareto.errors import BcParetoError
    from bcpareto.gridspec import read_grid

    four = read_grid(write_sheet(tmp_path / "four.xlsx", GRID_4))
    two = read_grid(write_sheet(tmp_path / "two.xlsx", GRID_2))
    open_study(four, config=TrainConfig(), run_dir=tmp_path, grid_name="four.xlsx", study_name="s")
    with pytest.raises(BcParetoError, match="another grid"):
        open_study(two, config=TrainConfig(), run_dir=tmp_path, grid_name="two.xlsx", study_name="s")
    with pytest.raises(BcParetoError, match="training settings"):
        open_study(four, config=TrainConfig(epochs=2), run_dir=tmp_path, grid_name="four.xlsx",
                   study_name="s")


# --- crash safety -------------------------------------------------------------------------------


@pytest.mark.slow
@needs_data
@train
def test_sigkill_mid_trial_then_rerun_completes_the_grid(tmp_path: Path, data_dir: Path) -> None:
    _setup(tmp_path, GRID_2)
    url = _sqlite(tmp_path / "run")
    args = ("--run-dir", "run", "--data-dir", str(data_dir))
    proc = _start(tmp_path, *args)
    # Kill once point 0 is completed and point 1 is training: a completed result must survive.
    trials = _wait_for(url, lambda ts: {t.state.name for t in ts} >= {"COMPLETE", "RUNNING"}, proc=proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = next(t for t in trials if t.state.name == "RUNNING")
    kept = next(t for t in trials if t.state.name == "COMPLETE")
    _csv(tmp_path / "run", 1)  # written atomically: exactly the completed point, no torn row

    out = _finish(_start(tmp_path, *args))
    assert "Done: 2/2 grid points completed" in out and "(1 trained now" in out, out
    assert f"retrying trial {killed.number}" in out, out
    trials = _trials(url)
    _exactly_once(trials, 2)
    by_number = {t.number: t for t in trials}
    assert by_number[killed.number].state.name == "FAIL"
    assert by_number[kept.number].state.name == "COMPLETE"  # the same trial: not trained again
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == killed.number)
    assert retry.state.name == "COMPLETE"
    rows = _csv(tmp_path / "run", 2)
    assert {int(r["trial"]) for r in rows} == {kept.number, retry.number}
    status = CliRunner().invoke(cli, ["status", "--run-dir", str(tmp_path / "run")])
    assert "2 completed, 0 running, 0 failed" in status.output, status.output
    assert "1 earlier attempt(s) failed and were queued again" in status.output


@pytest.mark.slow
@needs_data
@train
def test_ctrl_c_marks_trials_interrupted_and_a_rerun_resumes(tmp_path: Path, data_dir: Path) -> None:
    """SIGINT to the parent of --workers 2: forwarded once; both trials FAIL 'interrupted', exit 130."""
    _setup(tmp_path, GRID_2)
    url = _sqlite(tmp_path / "run")
    args = ("--run-dir", "run", "--data-dir", str(data_dir), "--workers", "2")
    proc = _start(tmp_path, *args)
    _wait_for(url, lambda ts: any(t.state.name == "RUNNING" for t in ts), proc=proc)
    proc.send_signal(signal.SIGINT)
    out = _finish(proc, timeout=60)
    assert proc.returncode == 130, out
    assert "Interrupted" in out
    trials = _trials(url)
    assert not [t for t in trials if t.state.name == "RUNNING"], "a trial was left running"
    interrupted = [t for t in trials if t.state.name == "FAIL"]
    assert interrupted and all(t.user_attrs["fail_reason"] == "interrupted" for t in interrupted), \
        [t.user_attrs.get("fail_reason") for t in interrupted]

    out = _finish(_start(tmp_path, *args))
    assert "Done: 2/2 grid points completed" in out, out
    _exactly_once(_trials(url), 2)
    _csv(tmp_path / "run", 2)


# --- one failing trial --------------------------------------------------------------------------


@pytest.mark.slow
@needs_data
@train
def test_a_failing_trial_is_recorded_and_the_search_goes_on(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Grid point 1 runs out of memory (any exception): it is failed with its reason, 0 completes."""
    from bcpareto import trial as trial_module

    real = trial_module.train_and_evaluate

    def flaky(point: Any, **kwargs: Any) -> Any:
        if point.grid_id == 1:
            raise MemoryError("simulated: out of memory allocating the dense layer")
        return real(point, **kwargs)

    monkeypatch.setattr(trial_module, "train_and_evaluate", flaky)
    monkeypatch.setenv("BCPARETO_HEARTBEAT_SECONDS", "1")
    monkeypatch.setenv("BCPARETO_GRACE_SECONDS", "4")
    grid, preset = _setup(tmp_path, GRID_2)
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["search", str(grid), "--config", str(preset), "--run-dir",
                                      str(run_dir), "--data-dir", str(data_dir)])
    assert result.exit_code == 1, result.output
    assert "Done: 1/2 grid points completed" in result.output
    assert "MemoryError: simulated: out of memory" in result.output
    rows = _csv_rows(run_dir)
    assert [r["grid_id"] for r in rows] == ["0"]
    status = CliRunner().invoke(cli, ["status", "--run-dir", str(run_dir)])
    assert status.exit_code == 0, status.output
    assert "2 grid points: 1 completed, 0 running, 1 failed, 0 waiting; 0 remaining" in status.output
    assert "failed   grid point 1 (trial 1): MemoryError: simulated: out of memory" in status.output
    assert "--retry-failed" in status.output


@pytest.mark.slow
@needs_data
@train
def test_nan_loss_fails_the_trial_with_its_reason(tmp_path: Path, data_dir: Path) -> None:
    _setup(tmp_path, [HEADER, ["[1]", "[[8]]", "[[4, 8]]", "[3, 3]"]])
    (tmp_path / "fast.toml").write_text(FAST + "learning_rate = 1e30  # diverges at once\n")
    proc = _start(tmp_path, "--run-dir", "run", "--data-dir", str(data_dir))
    out = _finish(proc)
    assert proc.returncode == 1, out
    assert "FAILED grid point 0" in out and "NaN" in out, out
    [failed] = _trials(_sqlite(tmp_path / "run"))
    assert failed.state.name == "FAIL" and "NaN" in failed.user_attrs["fail_reason"]


def _csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics_log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# --- status, settings, GPUs ---------------------------------------------------------------------


def test_status_without_a_storage_says_so_and_creates_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["status", "--run-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "no study storage at" in result.output and "bcpareto search" in result.output
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("env,fragment", [
    ({"BCPARETO_HEARTBEAT_SECONDS": "soon"}, "BCPARETO_HEARTBEAT_SECONDS='soon'"),
    ({"BCPARETO_HEARTBEAT_SECONDS": "10", "BCPARETO_GRACE_SECONDS": "5"}, "must exceed"),
])
def test_bad_heartbeat_settings_are_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fragment: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    grid, preset = _setup(tmp_path, GRID_2)
    result = CliRunner().invoke(cli, ["search", str(grid), "--config", str(preset), "--run-dir",
                                      str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert fragment in result.output


def test_auto_workers_is_one_per_gpu_else_one_per_core(monkeypatch: pytest.MonkeyPatch) -> None:
    from bcpareto.workers import auto_workers

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    assert auto_workers() == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert auto_workers() == min(4, len(os.sched_getaffinity(0)))


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_worker_count_is_bad_input(tmp_path: Path, value: str) -> None:
    _setup(tmp_path, GRID_2)
    result = CliRunner().invoke(cli, ["search", str(tmp_path / "grid.xlsx"), "--workers", value,
                                      "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "expected a whole number >= 1 or auto" in result.output and not (tmp_path / "run").exists()


def test_workers_are_pinned_one_gpu_each_and_share_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    envs = [worker_env(i, n_workers=3, gpus=["2", "3"], storage_url="sqlite:///x") for i in range(3)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["2", "3", "2"]
    assert envs[0]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"  # 3 workers on 2 GPUs: no up-front grab
    alone = worker_env(0, n_workers=2, gpus=["2", "3"], storage_url="sqlite:///x")
    assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in alone  # a GPU each: JAX's default stands
    for var in ("TF_NUM_INTRAOP_THREADS", "XLA_FLAGS"):
        monkeypatch.delenv(var, raising=False)
    cpu = worker_env(0, n_workers=64, gpus=[], storage_url="sqlite:///x")
    assert cpu["TF_NUM_INTRAOP_THREADS"] == "1" and cpu["BCPARETO_STORAGE"] == "sqlite:///x"
    assert cpu["BCPARETO_WORKER_COUNT"] == "64"  # the study's ETA shares its work among them
    assert "intra_op_parallelism_threads=1" in cpu["XLA_FLAGS"]  # JAX's pool too
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == []


# --- the storage password -----------------------------------------------------------------------


def _password(url: str) -> str:
    from urllib.parse import urlsplit

    password = urlsplit(url).password
    assert password
    return password


def _assert_secret_absent(secret: str, text: str, folder: Path) -> None:
    assert secret not in text
    for path in folder.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"{path} holds the password"


@pytest.mark.parametrize("url", [
    "postgresql://bc:Hunter2-secret@127.0.0.1:1/db",
    "postgresql+psycopg2://bc:p@ss:w0rd-x@127.0.0.1:1/db",  # unencoded @ and :
    "postgresql://bc:p%2Fss%3Aw0rd@127.0.0.1:1/db",  # percent-encoded / and :
    "mysql://bc:pa%40ss-word@127.0.0.1:1/db",
])
def test_redact_masks_the_password_in_urls_and_messages(url: str) -> None:
    from urllib.parse import unquote, urlsplit

    password = urlsplit(url).password or ""
    message = f"cannot connect to {url}: auth failed for password {unquote(password)}"
    for text in (redact(url), redact(message, url)):
        assert password not in text and unquote(password) not in text and "***" in text


@pytest.mark.parametrize("command", ["status", "search"])
def test_a_bad_storage_url_never_shows_its_password(tmp_path: Path, command: str) -> None:
    secret = "Sup3r-Secret-pw"
    url = f"postgresql+psycopg2://bcpareto:{secret}@127.0.0.1:1/bcpareto"  # nothing listens on port 1
    grid, preset = _setup(tmp_path, GRID_2)
    args = ["status", "--storage", url] if command == "status" else [
        "search", str(grid), "--config", str(preset), "--run-dir", str(tmp_path / "run"),
        "--storage", url,
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "the study storage postgresql+psycopg2://bcpareto:***@127.0.0.1:1" in result.output
    _assert_secret_absent(secret, result.output, tmp_path)


def test_a_wrong_password_on_a_real_server_is_not_shown(tmp_path: Path, pg_url: str) -> None:
    right = _password(pg_url)
    wrong = "Wrong-" + uuid.uuid4().hex[:10]
    result = CliRunner().invoke(cli, ["status", "--storage", pg_url.replace(right, wrong)])
    assert result.exit_code == 2, result.output
    assert "password authentication failed" in result.output, result.output
    assert wrong not in result.output and right not in result.output
