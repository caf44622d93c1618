"""`bcpareto search --repeats N`: each grid point trained N times with other seeds, exactly once each."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from bcpareto.cli import cli

from .conftest import BLOOD_CELLS, needs_data

pytestmark = [needs_data, pytest.mark.train]


def _search(run: Path, grid: Path, repeats: int) -> tuple[int, str]:
    args = ["search", str(grid), "--no-edge", "--image-size", "32", "--epochs", "1",
            "--limit-per-class", "3", "--data-dir", str(BLOOD_CELLS), "--run-dir", str(run),
            "--repeats", str(repeats)]
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics_log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_repeats_train_each_point_once_per_seed_and_more_repeats_add_only_new_runs(
    tmp_path: Path, tiny_grid: Path
) -> None:
    run = tmp_path / "run"
    code, output = _search(run, tiny_grid, 2)
    assert code == 0, output
    assert "4/4 models (2 grid points x 2 repeats) completed" in output
    rows = _rows(run)
    assert sorted((r["grid_id"], r["repeat"]) for r in rows) == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    seeds = {(r["grid_id"], r["repeat"]): int(r["seed"]) for r in rows}
    assert len(set(seeds.values())) == 4  # every run its own seed
    assert len({r["study"] for r in rows}) == 1  # repeats belong to the same study
    models = sorted(p.name for p in (run / "runs").glob("*/*.keras"))
    assert models == ["grid_0.keras", "grid_0_r1.keras", "grid_1.keras", "grid_1_r1.keras"]

    code, output = _search(run, tiny_grid, 3)  # one more repeat: only the two new runs train
    assert code == 0, output
    assert "4 of 6 models (2 grid points x 3 repeats) completed, 2 to train" in output
    rows3 = _rows(run)
    assert len(rows3) == 6
    assert {(r["grid_id"], r["repeat"]): int(r["seed"]) for r in rows3 if r["repeat"] != "2"} == seeds

    result = CliRunner().invoke(cli, ["status", "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    assert "6 completed" in result.output and "0 remaining" in result.output

    out = tmp_path / "export"
    result = CliRunner().invoke(cli, ["export", "1", "--repeat", "2", "--format", "keras",
                                      "--out", str(out), "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    assert (out / "model.keras").is_file()
