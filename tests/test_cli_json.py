"""--json output of `grid` and `status`, for scripts and dashboards."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bcpareto.cli import cli
from bcpareto.config import TrainConfig
from bcpareto.gridspec import read_grid
from bcpareto.study import open_study


def test_grid_json_lists_every_point_with_its_cost(tiny_grid: Path) -> None:
    result = CliRunner().invoke(cli, ["grid", str(tiny_grid), "--image-size", "32", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["image_size"] == 32 and [p["grid_id"] for p in data["points"]] == [0, 1]
    assert data["points"][0]["filters"] == "[4,8]"
    assert data["points"][1]["n_params"] > data["points"][0]["n_params"] > 0
    collapsed = json.loads(CliRunner().invoke(  # valid padding: 3 blocks of 3x3 do not fit 16 px
        cli, ["grid", str(tiny_grid), "--config", "seed", "--image-size", "16", "--json"]).output)
    assert "collapses" not in collapsed["points"][0]
    assert "collapses" in collapsed["points"][1] and "n_params" not in collapsed["points"][1]


def test_status_json_counts_the_queued_study(tmp_path: Path, tiny_grid: Path) -> None:
    points = read_grid(tiny_grid)
    open_study(points, config=TrainConfig(image_size=32, epochs=1), run_dir=tmp_path,
               grid_name=tiny_grid.name, study_name="s1", repeats=2)
    result = CliRunner().invoke(cli, ["status", "--run-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    [study] = json.loads(result.output)["studies"]
    assert study["name"] == "s1" and study["grid_size"] == 4  # 2 points x 2 repeats
    assert study["waiting"] == 4 and study["completed"] == 0 and study["remaining"] == 4
