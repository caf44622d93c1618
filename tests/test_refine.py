"""`bcpareto refine`: a finished model trained further, recorded as a new model of its study."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bcpareto.cli import cli

from .conftest import BLOOD_CELLS, needs_data
from .searches import FAST, _preset, _rows, _search

train = pytest.mark.train


@needs_data
@train
def test_refine_trains_a_saved_model_further_and_records_a_child(tmp_path: Path, tiny_grid: Path) -> None:
    preset = _preset(tmp_path, FAST.replace("edge_metrics = false", "latency_runs = 2"))
    assert _search(tmp_path, tiny_grid, preset=str(preset)).exit_code == 0
    result = CliRunner().invoke(cli, ["refine", "1", "--epochs", "1", "--data-dir", str(BLOOD_CELLS),
                                      "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "Done: grid point 2 (refined from 1, 2 epochs in all)" in result.output
    rows = {r["grid_id"]: r for r in _rows(tmp_path / "run")}
    child, parent = rows["2"], rows["1"]
    assert child["parent_grid_id"] == "1" and child["refine_epochs"] == "1" and child["epochs"] == "2"
    assert child["filters"] == parent["filters"] and child["n_params"] == parent["n_params"]
    for column in ("test_accuracy", "tflite_int8_mb", "int8_test_accuracy", "latency_ms"):
        assert child[column] != "", column
    out = tmp_path / "export"
    exported = CliRunner().invoke(cli, ["export", "2", "--format", "tflite-int8", "--out", str(out),
                                        "--run-dir", str(tmp_path / "run")])
    assert exported.exit_code == 0, exported.output
    missing = CliRunner().invoke(cli, ["refine", "7", "--epochs", "1", "--run-dir", str(tmp_path / "run")])
    assert missing.exit_code == 1 and "no finished trial for grid point 7" in missing.output
    again = _search(tmp_path, tiny_grid, preset=str(preset))  # the refined child is not one of the grid's points
    assert again.exit_code == 0 and "Done: 2/2 grid points completed" in again.output, again.output

