"""`bcpareto plot` under the protocol: the front is chosen on validation and reported on TEST;
with --repeats, each model is the mean of its runs, with the spread shown and compared."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from bcpareto.cli import cli
from bcpareto.report import PROTOCOL, plot_report

COLUMNS = ["grid_id", "repeat", "study", "model_size(MB)", "val_accuracy", "test_accuracy",
           "val_split", "test_split"]


def _write(path: Path, rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([*row, "TRAIN grouped 15%", "TEST minus 179 images"])
    return path


def _row(gid: int, repeat: int, size: float, val: float, test: float) -> list[object]:
    return [gid, repeat, "s", size, val, test]


def test_default_front_is_chosen_on_validation_and_carries_test(tmp_path: Path) -> None:
    log = _write(tmp_path / "log.csv", [
        _row(0, 0, 0.1, 0.80, 0.95),  # best on TEST, worst on validation
        _row(1, 0, 0.2, 0.90, 0.85),
        _row(2, 0, 0.3, 0.85, 0.99),  # dominated on validation: off the front despite its TEST
    ])
    report = plot_report([log], out_dir=tmp_path / "out")
    assert [o.column for o in report.objectives] == ["model_size(MB)", "val_accuracy"]
    assert sorted(report.front_table["grid_id"]) == [0, 1]
    assert set(report.front_table["protocol"]) == {PROTOCOL}
    assert list(report.front_table["test_accuracy"]) == [0.95, 0.85]
    assert any("reported on TEST" in note and "TRAIN grouped 15%" in note for note in report.notes)
    written = (tmp_path / "out" / "pareto_front.csv").read_text()
    assert "protocol" in written.splitlines()[0] and PROTOCOL in written


def test_repeats_are_averaged_and_overlapping_members_are_named(tmp_path: Path) -> None:
    log = _write(tmp_path / "log.csv", [
        _row(0, 0, 0.1, 0.80, 0.90), _row(0, 1, 0.1, 0.86, 0.88),  # 0.80-0.86, mean 0.83
        _row(1, 0, 0.2, 0.84, 0.91), _row(1, 1, 0.2, 0.88, 0.93),  # 0.84-0.88 overlaps grid 0
        _row(2, 0, 0.3, 0.95, 0.94), _row(2, 1, 0.3, 0.97, 0.96),  # clear of grid 1
    ])
    report = plot_report([log], out_dir=tmp_path / "out")
    front = report.front_table.set_index("grid_id")
    assert list(front.index) == [0, 1, 2]
    assert front.loc[0, "val_accuracy"] == pytest.approx(0.83)
    assert front.loc[1, "test_accuracy"] == pytest.approx(0.92)
    assert front.loc[0, "n_repeats"] == 2
    assert front.loc[1, "val_accuracy_min"] == pytest.approx(0.84)
    assert front.loc[1, "val_accuracy_max"] == pytest.approx(0.88)
    spread = [n for n in report.notes if "within each other's spread" in n]
    assert len(spread) == 1 and "grid 0 and grid 1" in spread[0]


def test_plot_cli_prints_the_protocol_and_the_test_column(tmp_path: Path) -> None:
    log = _write(tmp_path / "log.csv", [_row(0, 0, 0.1, 0.8, 0.7), _row(1, 0, 0.2, 0.9, 0.6)])
    result = CliRunner().invoke(cli, ["plot", str(log), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "Chosen on validation, reported on TEST" in result.output
    header = next(line for line in result.output.splitlines() if "grid_id" in line)
    assert "val_accuracy" in header and "test_accuracy" in header
