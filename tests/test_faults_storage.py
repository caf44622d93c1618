"""Storage faults (issue 29): run-dir names that become storage URLs (item 10: every path is
quoted, an SQLite path too long for SQLite is refused before anything is created), foreign studies
(item 11), a PostgreSQL server restarted or stopped and a study database deleted mid-search (item 5:
a message, and the rerun tells saved models instead of training them), and a kill right after a
model is told (item 12: its row is already in the CSV)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bcpareto.cli import cli
from bcpareto.storage import default_storage_url, open_storage, storage_lock

from .conftest import copy_subset, needs_data
from .procs import GRID_2, GRID_4, _env, _finish, _setup, _start, wait_for_pause


@pytest.mark.parametrize("name", ["what-if?", "a%25b", "hash#tag", "two words"])
def test_a_run_dir_with_url_characters_keeps_its_database_and_lock_inside(tmp_path: Path, name: str) -> None:
    run = tmp_path / name
    run.mkdir()
    url = default_storage_url(run)
    open_storage(url)
    with storage_lock(open_storage(url), url, "s"):
        pass
    assert (run / "bcpareto.db").is_file() and (run / "bcpareto.db.lock").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing written beside it


def test_a_run_dir_too_long_for_sqlite_exits_2_and_creates_nothing(tmp_path: Path, tiny_grid: Path) -> None:
    deep = tmp_path
    while len(str(deep)) < 630:
        deep = deep / ("d" * 60)
    result = CliRunner().invoke(cli, ["search", str(tiny_grid), "--run-dir", str(deep),
                                      "--data-dir", str(tmp_path / "nodata")])
    assert result.exit_code == 2, result.output
    assert "SQLite opens at most 511" in result.output and "shorter --run-dir" in result.output
    assert not (tmp_path / ("d" * 60)).exists()


@pytest.mark.parametrize("directions", [["maximize"], ["maximize", "minimize"]])
def test_a_study_plain_optuna_made_is_refused_not_adopted(tmp_path: Path, tiny_grid: Path,
                                                          directions: list[str]) -> None:
    import optuna

    run = tmp_path / "run"
    run.mkdir()
    url = default_storage_url(run)
    theirs = optuna.create_study(study_name="mine", storage=url, directions=directions)
    theirs.add_trial(optuna.trial.create_trial(values=[0.5] * len(directions)))
    from bcpareto.config import load_config
    from bcpareto.errors import BcParetoError
    from bcpareto.gridspec import read_grid
    from bcpareto.study import open_study

    with pytest.raises(BcParetoError, match="'mine' .* was not made by bcpareto .*1 trial.* --study"):
        open_study(read_grid(tiny_grid), config=load_config("quick"), run_dir=run, grid_name="tiny.xlsx",
                   study_name="mine")
    assert len(optuna.load_study(study_name="mine", storage=url).trials) == 1  # untouched


# --- a PostgreSQL server restarted or down mid-search, a kill right after a model is saved (items 5, 12)

def _pg_server(tmp_path: Path) -> tuple[str, Path]:
    """A private throwaway server (.ci/postgres.sh), so stopping it disturbs no other test."""
    import os
    import shutil
    import subprocess

    from .conftest import ROOT

    if not (shutil.which("pg_ctl") or list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))):
        if os.environ.get("CI"):
            pytest.fail("no PostgreSQL server binaries under CI: .ci/run installs them")
        pytest.skip("no PostgreSQL server binaries (bash .ci/postgres.sh installs Debian's)")
    pytest.importorskip("psycopg2", reason="pip install 'bcpareto[postgres]'")
    out = subprocess.run(["bash", str(ROOT / ".ci/postgres.sh")], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    folder = Path(out.stdout.split("BCPARETO_TEST_PG_DIR='", 1)[1].split("'", 1)[0])
    return (folder / "url").read_text().strip(), folder


def _pg_ctl(folder: Path, *args: str) -> None:
    import os
    import shutil
    import subprocess

    binary = shutil.which("pg_ctl") or str(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1])
    command = [binary, "-D", str(folder / "data"), "-l", str(folder / "server.log"), "-w", "-t", "60", *args]
    if os.geteuid() == 0:  # the cluster belongs to postgres (postgres.sh), which pg_ctl insists on
        command = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{c}'" for c in command)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


@pytest.fixture()
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    url, folder = _pg_server(tmp_path_factory.mktemp("pg"))
    yield url, folder
    import contextlib
    import subprocess

    with contextlib.suppress(subprocess.CalledProcessError):
        _pg_ctl(folder, "-m", "immediate", "stop")


def _csv_units(path: Path) -> list[tuple[str, str]]:
    import csv

    with path.open(newline="") as handle:
        return sorted((r["grid_id"], r.get("repeat", "0")) for r in csv.DictReader(handle))


@pytest.mark.slow
@needs_data
def test_a_postgresql_restart_mid_search_loses_nothing_and_exits_0(tmp_path: Path, pg_server: Any) -> None:
    url, folder = pg_server
    _setup(tmp_path, GRID_4)
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    proc = _start(tmp_path, "--run-dir", "run", "--data-dir", str(copy_subset(tmp_path / "data", per_class=4)), "--workers", "1",
                  "--storage", url, "--study", "restarted",
                  env=_env(BCPARETO_PAUSE_AT="csv", BCPARETO_PAUSE_DIR=str(pauses), BCPARETO_PAUSE_SECONDS="2"))
    wait_for_pause(pauses, "csv", proc)  # the first model told: the server restarts under the search
    _pg_ctl(folder, "-m", "fast", "restart")
    out = _finish(proc)
    assert proc.returncode == 0, out
    assert "Done: 4/4 grid points" in out, out
    assert "Traceback" not in out
    assert _csv_units(tmp_path / "run" / "metrics_log.csv") == [(str(g), "0") for g in range(4)]


@pytest.mark.slow
@needs_data
def test_the_server_down_as_a_model_finishes_stops_with_a_message_and_the_rerun_does_not_retrain(
        tmp_path: Path, pg_server: Any) -> None:
    url, folder = pg_server
    _setup(tmp_path, GRID_2)
    data = copy_subset(tmp_path / "data", per_class=4)
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    args = ("--run-dir", "run", "--data-dir", str(data), "--workers", "1", "--storage", url, "--study", "down")
    proc = _start(tmp_path, *args, env=_env(BCPARETO_PAUSE_AT="recorded", BCPARETO_PAUSE_DIR=str(pauses),
                                            BCPARETO_PAUSE_SECONDS="3"))
    wait_for_pause(pauses, "recorded", proc)  # the model's files saved, the study not yet told
    _pg_ctl(folder, "-m", "fast", "stop")
    out = _finish(proc)
    assert proc.returncode == 1, out
    assert "Traceback" not in out and "pw-" not in out  # no traceback, no password
    assert "study storage postgresql+psycopg2://bcpareto:***@" in out
    assert "the same command trains what is left" in out
    assert (tmp_path / "run" / "runs" / "down" / "grid_0.json").is_file()  # saved before the tell
    port = url.rsplit(":", 1)[1].split("/", 1)[0]
    _pg_ctl(folder, "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}", "start")  # as postgres.sh did
    time.sleep(4)  # its trial's heartbeats stale (BCPARETO_GRACE_SECONDS=4): the rerun takes it over
    rerun = subprocess.run(
        [sys.executable, "-m", "bcpareto", "search", str(tmp_path / "grid.xlsx"), "--config",
         str(tmp_path / "fast.toml"), *args], cwd=tmp_path, env=_env(),
        capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "grid point 0: its files in" in rerun.stdout and "not trained again" in rerun.stdout
    assert "grid point 0 done in" not in rerun.stdout  # told from its files, not trained
    assert "Done: 2/2 grid points completed in study 'down' (1 trained now" in rerun.stdout  # point 1 only
    assert _csv_units(tmp_path / "run" / "metrics_log.csv") == [("0", "0"), ("1", "0")]


@pytest.mark.slow
@needs_data
def test_a_kill_right_after_a_model_is_told_leaves_its_row_in_the_csv(tmp_path: Path) -> None:
    _setup(tmp_path, GRID_2)
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    data = copy_subset(tmp_path / "data", per_class=4)
    proc = _start(tmp_path, "--run-dir", "run", "--data-dir", str(data), "--workers", "1",
                  env=_env(BCPARETO_PAUSE_AT="csv", BCPARETO_PAUSE_DIR=str(pauses), BCPARETO_PAUSE_SECONDS="120"))
    wait_for_pause(pauses, "csv", proc)  # told complete; metrics_log.csv not yet rewritten after it
    proc.kill()
    proc.wait(timeout=30)
    assert _csv_units(tmp_path / "run" / "metrics_log.csv") == [("0", "0")]


@pytest.mark.slow
@needs_data
def test_the_study_database_deleted_mid_search_stops_with_a_message_and_the_rerun_does_not_retrain(
        tmp_path: Path) -> None:
    _setup(tmp_path, GRID_2)
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    args = ("--run-dir", "run", "--data-dir", str(copy_subset(tmp_path / "data", per_class=4)), "--workers", "1")
    proc = _start(tmp_path, *args, env=_env(BCPARETO_PAUSE_AT="recorded", BCPARETO_PAUSE_DIR=str(pauses),
                                            BCPARETO_PAUSE_SECONDS="3"))
    wait_for_pause(pauses, "recorded", proc)  # the model's files saved, the study not yet told
    (tmp_path / "run" / "bcpareto.db").unlink()
    out = _finish(proc)
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    assert "study storage sqlite:///" in out and "the same command trains what is left" in out
    rerun = subprocess.run(
        [sys.executable, "-m", "bcpareto", "search", str(tmp_path / "grid.xlsx"), "--config",
         str(tmp_path / "fast.toml"), *args], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "grid point 0: its files in" in rerun.stdout and "not trained again" in rerun.stdout
    assert "Done: 2/2 grid points completed" in rerun.stdout and "(1 trained now" in rerun.stdout
    assert _csv_units(tmp_path / "run" / "metrics_log.csv") == [("0", "0"), ("1", "0")]
