"""report.py: `bcpareto plot` driven like a user (CliRunner on the seed logs and on logs in our
format), and report_to_dict, the plot report as JSON (`bcpareto plot --json`).

Expected fronts and hypervolumes are recomputed here by brute force, in plain Python on the
CSV text, independently of bcpareto.pareto.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bcpareto.cli import cli
from bcpareto.report import plot_report, report_to_dict

from .conftest import FIXTURES

REPO = Path(__file__).parents[1]
SEED_10 = FIXTURES / "seed_metrics_log_epoch_10.csv"
SEED_30 = FIXTURES / "seed_metrics_log_epoch_30.csv"
OUTPUTS = {"pareto_front.png", "pareto_front.svg", "pareto_front.csv"}
SIZE = "model_size(MB)"

# --- brute force, plain Python ---------------------------------------------------------------


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def costs_of(rows, objectives) -> list[tuple[float, ...] | None]:
    """Objective tuples turned to minimise; None where a value is missing."""
    result = []
    for row in rows:
        values = []
        for column, direction in objectives:
            text = row[column].strip()
            value = float(text) if text else math.nan
            values.append(-value if direction == "max" else value)
        result.append(None if any(math.isnan(v) for v in values) else tuple(values))
    return result


def brute_front(costs) -> list[int]:
    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    return [i for i, c in enumerate(costs)
            if c is not None and not any(o is not None and dominates(o, c) for o in costs)]


def brute_reference(costs) -> list[float]:
    valid = [c for c in costs if c is not None]
    worst = [max(c[d] for c in valid) for d in range(len(valid[0]))]
    best = [min(c[d] for c in valid) for d in range(len(valid[0]))]
    return [w + 0.1 * (w - b) for w, b in zip(worst, best)]


def brute_hypervolume(costs, ref) -> float:
    """Grid cells of the coordinate-compressed space whose low corner some point dominates."""
    points = [c for c in costs if c is not None and all(x < r for x, r in zip(c, ref))]
    axes = [sorted({p[d] for p in points} | {ref[d]}) for d in range(len(ref))]
    volume = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        low = [axes[d][i] for d, i in enumerate(cell)]
        if any(all(p[d] <= low[d] for d in range(len(ref))) for p in points):
            volume += math.prod(axes[d][i + 1] - axes[d][i] for d, i in enumerate(cell))
    return volume


# --- helpers ---------------------------------------------------------------------------------


def run_plot(*args: object):
    return CliRunner().invoke(cli, ["plot", *map(str, args)], catch_exceptions=False)


def printed_hypervolumes(output: str) -> dict[str, float]:
    return {m[1]: float(m[2]) for m in re.finditer(r"^Hypervolume (.+?): (\S+)", output, re.M)}


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def write_ours(path: Path, *, n: int = 30, blank_latency_rows=(), text_row: int | None = None):
    """A metrics_log.csv in our format: seed columns first, then grid_id, study, ..."""
    columns = ["train_loss", "train_accuracy", "val_loss", "val_accuracy", SIZE, "grid_id",
               "study", "n_params", "epochs", "test_accuracy", "latency_ms", "macs"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for i in range(n):
            size = 4 + (i * 7) % 11 * 0.5 + (i % 3) * 0.01
            accuracy = round(0.4 + ((i * 13) % 17) / 40, 4)
            latency = "" if i in blank_latency_rows else round(1 + ((i * 5) % 9) * 0.7, 3)
            writer.writerow([
                0.5, 0.8, 0.9, accuracy - 0.01, size, 100 + i, "grid" if text_row != i else "x",
                1_000_000 + i, 10, accuracy, latency, 5_000_000 + 1000 * i,
            ])
    return path


# --- the seed logs ---------------------------------------------------------------------------


@pytest.mark.parametrize("log", [SEED_10, SEED_30], ids=["epoch_10", "epoch_30"])
def test_default_objectives_on_seed_logs(tmp_path, log):
    out = tmp_path / "out"
    result = run_plot(log, "--out", out)
    assert result.exit_code == 0, result.output
    assert files_in(out) == OUTPUTS

    rows = read_rows(log)
    costs = costs_of(rows, [(SIZE, "min"), ("val_accuracy", "max")])  # seed: no test_accuracy
    expected = brute_front(costs)
    front = read_rows(out / "pareto_front.csv")
    assert sorted(int(r["row"]) for r in front) == expected
    for written in front:  # every column of the original row comes through unchanged
        original = rows[int(written["row"])]
        assert all(float(written[c]) == pytest.approx(float(original[c])) for c in original)
        assert written["source"] == str(log)

    ref = brute_reference(costs)
    (hv,) = printed_hypervolumes(result.output).values()
    assert hv == pytest.approx(brute_hypervolume(costs, ref), rel=1e-5)
    assert f"{SIZE}={ref[0]:.6g}, val_accuracy={-ref[1]:.6g}" in result.output  # reference used

    assert (out / "pareto_front.png").read_bytes().startswith(b"\x89PNG")
    svg = (out / "pareto_front.svg").read_text()
    assert "held-out accuracy (val_accuracy, TEST folder in the seed logs)" in svg
    assert "MiB" in svg and "lower is better" in svg
    for row in expected:  # seed rows are labelled by their row index (= grid point)
        assert f">{row}<" in svg


def test_thirty_epochs_train_accuracy_vs_size(tmp_path):
    out = tmp_path / "out"
    result = run_plot(SEED_30, "--y", "train_accuracy:max", "--out", out)
    assert result.exit_code == 0, result.output
    costs = costs_of(read_rows(SEED_30), [(SIZE, "min"), ("train_accuracy", "max")])
    expected = brute_front(costs)
    assert sorted(int(r["row"]) for r in read_rows(out / "pareto_front.csv")) == expected
    (hv,) = printed_hypervolumes(result.output).values()
    assert hv == pytest.approx(brute_hypervolume(costs, brute_reference(costs)), rel=1e-5)
    assert "train_accuracy (training images)" in (out / "pareto_front.svg").read_text()


def test_two_logs_overlay_in_one_figure(tmp_path):
    out = tmp_path / "out"
    result = run_plot(SEED_10, SEED_30, "--out", out)
    assert result.exit_code == 0, result.output
    objectives = [(SIZE, "min"), ("val_accuracy", "max")]
    per_file = {log: costs_of(read_rows(log), objectives) for log in (SEED_10, SEED_30)}
    pooled = per_file[SEED_10] + per_file[SEED_30]
    ref = brute_reference(pooled)  # one reference for both, so hypervolumes compare

    front = read_rows(out / "pareto_front.csv")
    overall = set(brute_front(pooled))
    for offset, log in ((0, SEED_10), (len(per_file[SEED_10]), SEED_30)):
        mine = [r for r in front if r["source"] == str(log)]
        assert sorted(int(r["row"]) for r in mine) == brute_front(per_file[log])
        for r in mine:
            assert (r["overall_front"] == "True") == (offset + int(r["row"]) in overall)
    hvs = printed_hypervolumes(result.output)
    assert hvs[SEED_10.stem] == pytest.approx(brute_hypervolume(per_file[SEED_10], ref), rel=1e-5)
    assert hvs[SEED_30.stem] == pytest.approx(brute_hypervolume(per_file[SEED_30], ref), rel=1e-5)
    assert hvs["all CSVs together"] == pytest.approx(brute_hypervolume(pooled, ref), rel=1e-5)
    svg = (out / "pareto_front.svg").read_text()
    assert SEED_10.stem in svg and SEED_30.stem in svg  # legend


def test_any_columns_and_reference_point(tmp_path):
    out = tmp_path / "out"
    result = run_plot(SEED_10, "--x", "val_loss", "--y", "train_loss:min", "--ref", "20,2",
                      "--out", out)
    assert result.exit_code == 0, result.output
    costs = costs_of(read_rows(SEED_10), [("val_loss", "min"), ("train_loss", "min")])
    assert sorted(int(r["row"]) for r in read_rows(out / "pareto_front.csv")) == brute_front(costs)
    (hv,) = printed_hypervolumes(result.output).values()
    assert hv == pytest.approx(brute_hypervolume(costs, [20.0, 2.0]), rel=1e-5)
    assert "(--ref)" in result.output


# --- our format, three objectives -----------------------------------------------------------


def test_ours_defaults_to_val_accuracy_and_labels_grid_ids(tmp_path):
    """Choose on validation (the protocol), not on TEST: the default y is val_accuracy."""
    log = write_ours(tmp_path / "metrics_log.csv")
    out = tmp_path / "out"
    result = run_plot(log, "--out", out)
    assert result.exit_code == 0, result.output
    expected = brute_front(costs_of(read_rows(log), [(SIZE, "min"), ("val_accuracy", "max")]))
    front = read_rows(out / "pareto_front.csv")
    assert sorted(int(r["row"]) for r in front) == expected
    svg = (out / "pareto_front.svg").read_text()
    assert "held-out accuracy (val_accuracy, validation split)" in svg
    for row in expected:
        assert f">{100 + row}<" in svg  # grid_id labels
    assert "grid_id" in result.output


def test_third_objective_gives_the_three_objective_front(tmp_path):
    log = write_ours(tmp_path / "metrics_log.csv", n=40, blank_latency_rows=(3, 7))
    out = tmp_path / "out"
    result = run_plot(log, "--y", "test_accuracy:max", "--z", "latency_ms:min", "--out", out)
    assert result.exit_code == 0, result.output
    objectives = [(SIZE, "min"), ("test_accuracy", "max"), ("latency_ms", "min")]
    costs = costs_of(read_rows(log), objectives)
    expected = brute_front(costs)
    assert sorted(int(r["row"]) for r in read_rows(out / "pareto_front.csv")) == expected
    assert len(expected) > len(brute_front(costs_of(read_rows(log), objectives[:2])))
    (hv,) = printed_hypervolumes(result.output).values()
    assert hv == pytest.approx(brute_hypervolume(costs, brute_reference(costs)), rel=1e-5)
    assert "2 rows skipped" in result.output  # blank latency: excluded and counted
    svg = (out / "pareto_front.svg").read_text()
    assert "latency_ms (ms; lower is better)" in svg  # colour bar and panel axes


# --- bad input -------------------------------------------------------------------------------

SEED_COLUMNS = ["train_loss", "train_accuracy", "val_loss", "val_accuracy", SIZE]


def _seed_like(tmp_path: Path) -> Path:
    path = tmp_path / "seed.csv"
    path.write_text(",".join(SEED_COLUMNS) + "\n0.5,0.8,1.0,0.4,4.6\n0.6,0.7,1.1,0.5,5.0\n")
    return path


def _with_text_column(tmp_path: Path) -> Path:
    return write_ours(tmp_path / "ours.csv", n=5)


def _with_blank_column(tmp_path: Path) -> Path:
    return write_ours(tmp_path / "ours.csv", n=5, blank_latency_rows=range(5))


def _with_text_in_number_column(tmp_path: Path) -> Path:
    path = _seed_like(tmp_path)
    path.write_text(path.read_text() + "0.7,0.6,1.2,oops,5.5\n")
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.csv"
    path.write_text("")
    return path


def _header_only(tmp_path: Path) -> Path:
    path = tmp_path / "header.csv"
    path.write_text(",".join(SEED_COLUMNS) + "\n")
    return path


def _no_accuracy(tmp_path: Path) -> Path:
    path = tmp_path / "noacc.csv"
    path.write_text(f"{SIZE},latency_ms\n4.6,3\n5.0,2\n")
    return path


BAD_INPUTS = {
    # name: (make csv, extra args, words the message must hold, must it list the columns)
    "missing file": (lambda p: p / "nope.csv", [], ["nope.csv"], False),
    "empty file": (_empty, [], ["empty.csv", "empty", SIZE], False),
    "header only": (_header_only, [], [SIZE, "no numeric values"], True),
    "missing column": (_seed_like, ["--y", "latency_ms:min"], ["latency_ms"], True),
    "missing x column": (_seed_like, ["--x", "tflite_int8_mb"], ["tflite_int8_mb"], True),
    "text column": (_with_text_column, ["--z", "study:min"], ["study", "not numeric"], True),
    "text in a number column": (_with_text_in_number_column, [], ["val_accuracy", "oops"], True),
    "all-NaN column": (_with_blank_column, ["--z", "latency_ms"], ["latency_ms"], True),
    "unknown direction": (_seed_like, ["--y", "val_accuracy:up"], ["val_accuracy", "up"], True),
    "no held-out accuracy": (_no_accuracy, [], ["test_accuracy", "val_accuracy"], True),
    "same column twice": (_seed_like, ["--x", "val_accuracy"], ["val_accuracy"], True),
    "ref of wrong length": (_seed_like, ["--ref", "1,2,3"], [SIZE, "val_accuracy"], False),
    "ref not numbers": (_seed_like, ["--ref", "big,small"], ["--ref", "big,small"], False),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_exits_2_names_the_problem_and_writes_nothing(tmp_path, case):
    make, extra, words, lists_columns = BAD_INPUTS[case]
    path = make(tmp_path)
    out = tmp_path / "out"
    result = run_plot(path, *extra, "--out", out)
    assert result.exit_code == 2, result.output
    for word in words:
        assert word in result.output, (word, result.output)
    if lists_columns:
        columns = next(csv.reader(open(path)))
        assert "available" in result.output
        assert all(c in result.output for c in columns), result.output
    assert files_in(out) == set()
    assert "Traceback" not in result.output


def test_a_failed_write_leaves_no_partial_output(tmp_path, monkeypatch):
    import pandas as pd

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail)  # the last of the three writes
    out = tmp_path / "out"
    result = run_plot(write_ours(tmp_path / "m.csv"), "--out", out)
    assert result.exit_code == 1, result.output
    assert "disk full" in result.output
    assert files_in(out) == set()  # neither the finished PNG/SVG nor temporary files


def test_outputs_are_replaced_whole_on_a_second_run(tmp_path):
    out = tmp_path / "out"
    assert run_plot(write_ours(tmp_path / "a.csv", n=10), "--out", out).exit_code == 0
    assert run_plot(write_ours(tmp_path / "b.csv", n=20), "--out", out).exit_code == 0
    assert files_in(out) == OUTPUTS
    assert {r["source"] for r in read_rows(out / "pareto_front.csv")} == {str(tmp_path / "b.csv")}


# --- no TensorFlow, real entry point ---------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


@pytest.mark.slow  # a whole plot in a new Python process
def test_plot_never_imports_tensorflow(tmp_path):
    log = write_ours(tmp_path / "metrics_log.csv")
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "import bcpareto.cli, bcpareto.report, bcpareto.plotting, bcpareto.pareto\n"
        f"r = CliRunner().invoke(bcpareto.cli.cli, ['plot', {str(log)!r}, '--z', 'latency_ms',"
        f" '--out', {str(tmp_path / 'out')!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_help_imports_no_heavy_library():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "import bcpareto.cli\n"
        "r = CliRunner().invoke(bcpareto.cli.cli, ['plot', '--help'])\n"
        "assert r.exit_code == 0 and '--z' in r.output, r.output\n"
        "heavy = [m for m in ('numpy', 'pandas', 'matplotlib', 'tensorflow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow  # starts a bcpareto process
def test_python_dash_m_entry_point(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bcpareto", "--help"], env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "plot" in done.stdout, done.stderr


# --- report_to_dict: the plot report as JSON (`bcpareto plot --json`) -----------------------------


def test_report_to_dict_is_strict_json_holding_the_front_hypervolumes_and_outputs(tmp_path):
    ours = write_ours(tmp_path / "metrics_log.csv", n=30, blank_latency_rows=range(30))
    out = tmp_path / "out"
    report = plot_report([ours, SEED_10], out_dir=out)  # the seed log has no test_accuracy
    back = json.loads(json.dumps(report_to_dict(report), allow_nan=False))

    assert back["objectives"] == [{"column": SIZE, "direction": "min"},
                                  {"column": "val_accuracy", "direction": "max"}]
    assert back["reference_point"]["default"] is True
    assert back["reference_point"]["values"] == pytest.approx(
        {SIZE: report.ref[0], "val_accuracy": report.ref[1]})
    assert [s["path"] for s in back["sources"]] == [str(ours), str(SEED_10)]
    for mine, source in zip(back["sources"], report.sources):
        assert mine["hypervolume"] == pytest.approx(source.hypervolume)
        assert (mine["n_rows"], mine["n_front"]) == (len(source.values), int(source.front.sum()))
    assert back["overall_hypervolume"] == pytest.approx(report.overall_hypervolume)

    written = read_rows(out / "pareto_front.csv")  # the same rows as pareto_front.csv
    assert [(r["source"], r["row"]) for r in back["front"]] == [
        (w["source"], int(w["row"])) for w in written]
    for row in back["front"]:
        assert isinstance(row["overall_front"], bool)
        if row["source"] == str(ours):
            assert row["latency_ms"] is None  # a blank cell: null, not NaN
            assert isinstance(row["grid_id"], int) and isinstance(row[SIZE], float)
    assert back["outputs"] == [str(out / name) for name in
                               ("pareto_front.png", "pareto_front.svg", "pareto_front.csv")]


def test_one_csv_has_no_overall_hypervolume(tmp_path):
    report = plot_report([write_ours(tmp_path / "m.csv")], out_dir=tmp_path / "out",
                         ref=[20, 0])
    data = report_to_dict(report)
    assert data["overall_hypervolume"] is None
    assert data["reference_point"] == {"values": {SIZE: 20.0, "val_accuracy": 0.0},
                                       "default": False}
