"""Run-dir names that become storage URLs (issue 29, item 10): every path is quoted, and an SQLite
path too long for SQLite is refused before anything is created."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bcpareto.cli import cli
from bcpareto.storage import default_storage_url, open_storage, storage_lock


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
    from bcpareto.search import open_study

    with pytest.raises(BcParetoError, match="'mine' .* was not made by bcpareto .*1 trial.* --study"):
        open_study(read_grid(tiny_grid), config=load_config("quick"), run_dir=run, grid_name="tiny.xlsx",
                   study_name="mine")
    assert len(optuna.load_study(study_name="mine", storage=url).trials) == 1  # untouched
