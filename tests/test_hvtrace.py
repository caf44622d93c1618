"""hvtrace: hypervolume against cumulative training seconds, on hand-built rows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bcpareto.errors import ColumnError
from bcpareto.hvtrace import (
    Trace,
    best_volume,
    hypervolume_trace,
    plot_hv_seconds,
    reach_lines,
    reference_point,
    seconds_to_reach,
    volume_at,
)
from bcpareto.pareto import default_reference

X, Y = "model_size(MB)", "val_accuracy"
REF = (3.0, -0.25)  # cost space (size, -accuracy): size 3 MB, accuracy 0.25


def row(seconds: object, size: object, accuracy: object, stopped: object = "") -> dict[str, object]:
    return {"train_seconds": seconds, X: size, Y: accuracy, "stopped_at_epoch": stopped}


# After each row: 10 s -> volume (3-2)*(0.5-0.25) = 0.25; the stopped and the NaN row add
# seconds only; the last row dominates the first: (3-1)*(0.75-0.25) = 1.0.
HAND = [
    row(10, 2, 0.5),
    row(5, 0.5, 0.99, stopped=1),  # would dominate everything, but was stopped by halving
    row(20, "nan", 0.9),
    row(10, 1, 0.75),
]


def test_trace_on_a_hand_example() -> None:
    trace = hypervolume_trace(HAND, ref=REF)
    assert trace.seconds.tolist() == [10, 15, 35, 45]
    assert trace.hypervolume.tolist() == [0.25, 0.25, 0.25, 1.0]


def test_stopped_rows_add_seconds_but_no_volume() -> None:
    stopped = [row(7, 0.1, 0.99, stopped=s) for s in (1, "2", 3.0)]
    trace = hypervolume_trace(stopped, ref=REF)
    assert trace.seconds.tolist() == [7, 14, 21]
    assert trace.hypervolume.tolist() == [0, 0, 0]


@pytest.mark.parametrize("missing", [None, "", "nan", float("nan"), "  "])
def test_blank_or_nan_objectives_add_seconds_only(missing: object) -> None:
    rows = [row(4, missing, 0.9), row(6, 1, missing), row(1, 2, 0.5)]
    trace = hypervolume_trace(rows, ref=REF)
    assert trace.seconds.tolist() == [4, 10, 11]
    assert trace.hypervolume.tolist() == [0, 0, 0.25]


@pytest.mark.parametrize("blank", [None, "", "nan", float("nan")])
def test_a_blank_stopped_at_epoch_means_completed(blank: object) -> None:
    assert hypervolume_trace([row(1, 2, 0.5, stopped=blank)], ref=REF).hypervolume.tolist() == [0.25]


def test_rows_without_the_column_stopped_at_epoch_are_completed() -> None:
    rows = [{"train_seconds": "3.5", X: "2", Y: "0.5"}]  # as csv.DictReader gives them
    trace = hypervolume_trace(rows, ref=REF)
    assert trace.seconds.tolist() == [3.5] and trace.hypervolume.tolist() == [0.25]


def test_points_outside_the_reference_add_nothing() -> None:
    trace = hypervolume_trace([row(1, 4, 0.9), row(1, 1, 0.2)], ref=REF)
    assert trace.hypervolume.tolist() == [0, 0]


def test_empty_rows_give_an_empty_trace() -> None:
    trace = hypervolume_trace([], ref=REF)
    assert trace.seconds.size == 0 and trace.hypervolume.size == 0
    assert seconds_to_reach(trace, 0.5, 1.0) is None
    assert best_volume({"empty": trace}) == 0.0


@pytest.mark.parametrize("bad", [None, "", "nan", -1, "ten"])
def test_train_seconds_must_be_a_number(bad: object) -> None:
    with pytest.raises(ColumnError, match="row 2: train_seconds"):
        hypervolume_trace([row(1, 2, 0.5), row(bad, 2, 0.5)], ref=REF)


def test_text_in_an_objective_is_an_error() -> None:
    with pytest.raises(ColumnError, match=r"row 1: model_size\(MB\) is 'big'"):
        hypervolume_trace([row(1, "big", 0.5)], ref=REF)


def test_two_runs_share_one_reference() -> None:
    run_a = [row(1, 2, 0.5), row(1, 1, 0.75)]
    run_b = [row(1, 4, 0.9), row(1, 0.5, 0.3), row(9, 9, 0.01, stopped=1), row(1, math.nan, 0.0)]
    ref = reference_point([run_a, run_b])
    # the completed valid rows of both runs; the stopped and the NaN row do not move it
    union = np.array([[2, -0.5], [1, -0.75], [4, -0.9], [0.5, -0.3]])
    assert ref.tolist() == default_reference(union).tolist()
    own = reference_point([run_a])
    assert (ref >= own).all() and (ref > own).any()  # run_b's extreme points widen the box
    volume_a = hypervolume_trace(run_a, ref=ref).hypervolume[-1]
    volume_b = hypervolume_trace(run_b, ref=ref).hypervolume[-1]
    assert volume_a > 0 and volume_b > 0  # every completed point lies inside the shared box


def test_reference_needs_a_completed_row() -> None:
    with pytest.raises(ColumnError, match="no completed row"):
        reference_point([[row(1, 2, 0.5, stopped=1)], [row(1, "", 0.5)]])


def test_seconds_to_reach_is_exact() -> None:
    trace = hypervolume_trace(HAND, ref=REF)
    assert seconds_to_reach(trace, 0.25, 1.0) == 10.0  # reached exactly, at the first row
    assert seconds_to_reach(trace, 0.26, 1.0) == 45.0
    assert seconds_to_reach(trace, 1.0, 1.0) == 45.0
    assert seconds_to_reach(trace, 1.01, 1.0) is None
    with pytest.raises(ValueError, match="positive"):
        seconds_to_reach(trace, 0.5, 0.0)


def test_volume_at_is_a_step_function() -> None:
    trace = hypervolume_trace(HAND, ref=REF)
    assert volume_at(trace, [0, 9.9, 10, 44, 45, 1e9]).tolist() == [0, 0, 0.25, 0.25, 1.0, 1.0]


def test_reach_lines_and_best_volume() -> None:
    traces = {"fast": Trace(np.array([60.0, 120.0]), np.array([0.97, 1.0])),
              "slow": Trace(np.array([600.0]), np.array([0.5]))}
    assert best_volume(traces) == 1.0
    fast, slow = reach_lines(traces)
    assert fast.startswith("fast") and "95%:    1.0 min (60 s)" in fast and "98%:    2.0 min (120 s)" in fast
    assert "final 100.0% after 2.0 min, 2 trials" in fast
    assert slow.count("not reached") == 2 and "final 50.0%" in slow


def test_plot_writes_a_png(tmp_path) -> None:
    traces = {"grid": hypervolume_trace(HAND, ref=REF),
              "halving": hypervolume_trace([row(5, 1, 0.75), row(3, 2, 0.5, stopped=1)], ref=REF)}
    path = plot_hv_seconds(traces, tmp_path / "out" / "hv.png", title="hand example")
    assert path == tmp_path / "out" / "hv.png"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000
    assert [p.name for p in path.parent.iterdir()] == ["hv.png"]  # no temporary file left


def test_plot_hv_seconds_draws_every_search_of_the_csvs_against_one_reference(tmp_path: Path) -> None:
    """Two searches in two CSVs: the slower one reaches the same front later, and says so."""
    import csv

    from click.testing import CliRunner

    from bcpareto.cli import cli

    def write(name: str, study: str, rows: list[tuple[float, float, float, str]]) -> Path:
        path = tmp_path / name
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, ["val_accuracy", "model_size(MB)", "train_seconds",
                                             "stopped_at_epoch", "status", "study", "trial"])
            writer.writeheader()
            for trial, (val, size, seconds, stopped) in enumerate(rows):
                writer.writerow({"val_accuracy": val, "model_size(MB)": size, "train_seconds": seconds,
                                 "stopped_at_epoch": stopped, "status": "stopped" if stopped else "",
                                 "study": study, "trial": trial})
        return path

    fast = write("fast.csv", "tpe", [(0.9, 0.1, 60, ""), (0.5, 0.9, 30, "1"), (0.8, 0.05, 60, "")])
    slow = write("slow.csv", "grid", [(0.5, 0.9, 120, ""), (0.9, 0.1, 120, ""), (0.8, 0.05, 120, "")])
    result = CliRunner().invoke(cli, ["plot", str(fast), str(slow), "--hv-seconds", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("  ")
             and "min (" in line}
    assert "98%:    2.5 min (150 s)" in lines["fast.csv"], result.output  # 60 + 30 (stopped) + 60
    assert "98%:    6.0 min (360 s)" in lines["slow.csv"], result.output
    assert (tmp_path / "out" / "hv_seconds.png").stat().st_size > 10_000
    no_seconds = tmp_path / "old.csv"
    no_seconds.write_text("val_accuracy,model_size(MB)\n0.9,0.1\n")
    old = CliRunner().invoke(cli, ["plot", str(no_seconds), "--hv-seconds", "--out", str(tmp_path / "o2")])
    assert old.exit_code == 2 and "old.csv: no train_seconds column" in old.output, old.output
    assert "--seconds-column wall_seconds" in old.output
