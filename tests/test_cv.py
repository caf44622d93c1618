"""Grouped K-fold cross-validation: the folds, the units of the study, kept predictions, and
`bcpareto plot` / `bcpareto compare` on a real (tiny) CV run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bcpareto.cli import cli
from bcpareto.config import load_config
from bcpareto.data import DataSplits, Split, grouped_folds
from bcpareto.errors import DataError
from bcpareto.runs import load_predictions

from .conftest import BLOOD_CELLS, copy_subset, needs_data


def _synthetic(rng: np.random.Generator, groups_per_class: tuple[int, ...] = (40, 60, 16, 50)):
    labels, groups = [], []
    for c, n in enumerate(groups_per_class):
        for g in range(n):
            size = int(rng.integers(16, 157))  # smears hold 16-156 images
            labels += [c] * size
            groups += [f"{c}-{g}"] * size
    return np.array(labels), np.array(groups)


@pytest.mark.parametrize("folds", [2, 5, 16])
def test_folds_keep_each_group_whole_and_each_class_in_every_fold(folds: int) -> None:
    labels, groups = _synthetic(np.random.default_rng(folds))
    fold = grouped_folds(labels, groups, folds=folds, seed=0)
    assert set(fold) == set(range(folds))
    for g in np.unique(groups):  # no group in two folds
        assert len(set(fold[groups == g])) == 1
    for c in range(4):  # stratified: every fold holds the class, in about equal shares
        counts = np.bincount(fold[labels == c], minlength=folds)
        assert counts.min() > 0
        if folds == 5:
            assert counts.max() - counts.min() <= 156  # at most one smear apart
            assert counts.min() / counts.max() > 0.5


def test_folds_are_seeded() -> None:
    labels, groups = _synthetic(np.random.default_rng(0))
    a = grouped_folds(labels, groups, folds=5, seed=0)
    np.testing.assert_array_equal(a, grouped_folds(labels, groups, folds=5, seed=0))
    assert (a != grouped_folds(labels, groups, folds=5, seed=1)).any()


def test_more_folds_than_a_class_has_groups_is_refused_with_the_bound() -> None:
    labels, groups = _synthetic(np.random.default_rng(0), (10, 10, 4, 10))
    with pytest.raises(DataError, match=r"5-fold .* at least 5 source groups per class; MONOCYTE has 4 .* --folds 4"):
        grouped_folds(labels, groups, folds=5, seed=0)


def test_every_image_its_own_group_gives_plain_stratified_folds() -> None:
    labels = np.repeat(np.arange(4), 25)
    fold = grouped_folds(labels, np.arange(100).astype(str), folds=5, seed=0)
    for c in range(4):
        assert (np.bincount(fold[labels == c], minlength=5) == 5).all()


def test_for_fold_trains_on_the_other_folds_and_validates_on_its_own() -> None:
    n = 30
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1)
    split = Split("TRAIN", images, np.arange(n) % 4, tuple(f"/d/TRAIN/C/{i}.jpeg" for i in range(n)))
    test = Split("TEST", images[:4], np.arange(4), tuple(f"/d/TEST/C/{i}.jpeg" for i in range(4)))
    folds = np.arange(n) % 3
    data = DataSplits(split, split.subset(np.zeros(n, bool), name="val"), test, "cv", "TEST", 0, folds=folds)
    assert data.n_folds == 3
    for k in range(3):
        one = data.for_fold(k)
        assert set(one.val.paths) == {p for p, f in zip(split.paths, folds) if f == k}
        assert not set(one.train.paths) & set(one.val.paths)
        assert len(one.train) + len(one.val) == n and one.folds is None
    table = data.image_table()
    assert list(table["fold"]) == list(folds) + [-2] * 4
    assert table["path"][0] == "/d/TRAIN/C/0.jpeg"


@pytest.mark.parametrize("args, message", [
    (["--folds", "1"], "--folds 1: expected 2-50"),
    (["--folds", "0"], "--folds 0: expected 2-50"),
])
def test_bad_fold_counts_exit_2_before_anything_is_created(tmp_path: Path, tiny_grid: Path, args: list[str],
                                                            message: str) -> None:
    result = CliRunner().invoke(cli, ["search", str(tiny_grid), "--run-dir", str(tmp_path / "run"),
                                      "--data-dir", str(tmp_path / "nodata"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "run").exists()


def test_folds_change_the_study_only_under_cv() -> None:
    grouped = load_config("quick")
    assert load_config("quick", folds=3).fingerprint() == grouped.fingerprint()  # unused: old names stay
    cv5, cv3 = load_config("quick", validation="cv"), load_config("quick", validation="cv", folds=3)
    assert len({grouped.fingerprint(), cv5.fingerprint(), cv3.fingerprint()}) == 3


@needs_data
def test_more_folds_than_groups_exits_2_and_queues_nothing(tmp_path: Path, tiny_grid: Path) -> None:
    data = copy_subset(tmp_path / "data", per_class=3)  # at most 3 smears per class
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["search", str(tiny_grid), "--config", "quick", "--data-dir", str(data),
                                      "--run-dir", str(run), "--folds", "5", "--image-size", "32"])
    assert result.exit_code == 2, result.output
    assert "5-fold cross-validation needs at least 5 source groups per class" in result.output
    assert "Traceback" not in result.output
    assert not (run / "bcpareto.db").exists() and not (run / "runs").exists()


@needs_data
@pytest.mark.train
def test_tiny_cv_search_trains_every_fold_once_keeps_predictions_and_plots_intervals(
    tmp_path: Path, tiny_grid: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["search", str(tiny_grid), "--config", "quick", "--data-dir", str(BLOOD_CELLS),
            "--limit-per-class", "24", "--epochs", "1", "--image-size", "32", "--folds", "3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Done: 6/6 models (2 grid points x 3 folds and seeds) completed" in result.output
    rows = pd.read_csv(tmp_path / "metrics_log.csv")
    assert sorted(zip(rows["grid_id"], rows["fold"])) == [(g, f) for g in (0, 1) for f in range(3)]
    assert set(rows["n_folds"]) == {3} and rows["seed"].nunique() == 6

    folder = tmp_path / "runs" / rows["study"].iloc[0]
    tables, predictions = load_predictions(folder)
    (table,) = tables.values()
    assert len(predictions) == 6
    train = table["fold"] >= 0
    for g in np.unique(table["group"][train]):  # no smear in two folds
        assert len(set(table["fold"][train][table["group"][train] == g])) == 1
    for (gid, repeat), arrays in predictions.items():
        fold = repeat % 3
        assert (table["fold"][arrays["val_index"]] == fold).all()  # validated on its own fold only
        assert set(arrays["val_index"]) == set(np.flatnonzero(table["fold"] == fold))
        assert (table["fold"][arrays["test_index"]] == -2).all()
        assert arrays["val_prob"].shape == (len(arrays["val_index"]), 4)
        assert "val_prob_int8" in arrays and "test_prob_int8" in arrays
        # the kept probabilities give the CSV's figures
        row = rows[(rows["grid_id"] == gid) & (rows["repeat"] == repeat)].iloc[0]
        labels = table["label"][arrays["test_index"]]
        assert np.mean(arrays["test_prob"].argmax(1) == labels) == pytest.approx(row["test_accuracy"])
        assert np.mean(arrays["test_prob_int8"].argmax(1) == labels) == pytest.approx(row["int8_test_accuracy"])

    # a rerun trains nothing; --json: the summary alone on stdout
    again = CliRunner().invoke(cli, [*args, "--json"])
    assert again.exit_code == 0, again.output + again.stderr
    summary = json.loads(again.stdout)
    assert (summary["completed"], summary["total"], summary["trained_here"]) == (6, 6, 0)
    assert "Study" in again.stderr

    plotted = CliRunner().invoke(cli, ["plot", "metrics_log.csv", "--json"])
    assert plotted.exit_code == 0, plotted.output
    report = json.loads(plotted.output)
    assert [m["grid_id"] for m in report["models"]] == [0, 1]
    for model in report["models"]:
        assert model["n_fold_models"] == 3
        assert model["cv_accuracy_lo"] <= model["cv_accuracy"] <= model["cv_accuracy_hi"]
        assert 0 <= model["p_front"] <= 1
    assert [c["budget"] for c in report["choices"]] == [0.02, 0.1, None]
    models = pd.read_csv(tmp_path / "pareto_outputs" / "cv_models.csv")
    assert {"cv_accuracy_se", "cv_int8_accuracy", "int8_test_accuracy_hi", "p_front", "chosen"} <= set(models)
    assert (tmp_path / "pareto_outputs" / "pareto_front.png").stat().st_size > 10_000

    compared = CliRunner().invoke(cli, ["compare", "metrics_log.csv", "0", "1"])
    assert compared.exit_code == 0, compared.output
    assert "A - B =" in compared.output and "P(A better)" in compared.output
    missing = CliRunner().invoke(cli, ["compare", "metrics_log.csv", "0", "9"])
    assert missing.exit_code == 1 and "grid id 9 has no kept predictions" in missing.output

    exported = CliRunner().invoke(cli, ["export", "1", "--repeat", "2", "--format", "tflite-int8", "--out", "out",
                                        "--json"])
    assert exported.exit_code == 0, exported.output
    files = {Path(f["path"]).name: f["bytes"] for f in json.loads(exported.output)["files"]}
    assert files["model_int8.tflite"] == (tmp_path / "out" / "model_int8.tflite").stat().st_size
    card = json.loads((tmp_path / "out" / "model_card.json").read_text())["cross_validation"]
    model = next(m for m in report["models"] if m["grid_id"] == 1)
    assert card["this_file"] == "the fold-3 model of 3"
    assert card["cv_int8_accuracy"]["value"] == pytest.approx(model["cv_int8_accuracy"])
    assert card["int8_test_accuracy"]["interval_90%"] == pytest.approx(
        [model["int8_test_accuracy_lo"], model["int8_test_accuracy_hi"]])

    # refine trains a fold model further on its own fold's split (never on its held-out smears)
    refined = CliRunner().invoke(cli, ["refine", "1", "--repeat", "2", "--epochs", "1", "--data-dir", str(BLOOD_CELLS)])
    assert refined.exit_code == 0, refined.output
    row = pd.read_csv(tmp_path / "metrics_log.csv").set_index("grid_id").loc[2]
    assert row["val_split"].endswith("fold 3") and row["parent_grid_id"] == 1
    assert row["n_val"] == rows[(rows["grid_id"] == 1) & (rows["repeat"] == 2)]["n_val"].iloc[0]


@pytest.mark.parametrize("args, message", [
    (["--fidelity", "folds"], "--fidelity folds races grid points over the folds of cross-validation; add --folds K"),
    (["--fidelity", "folds", "--folds", "3", "--sampler", "random", "--n-trials", "2"],
     "--fidelity folds races the grid's points"),
])
def test_racing_needs_cross_validation_and_the_grid(tmp_path: Path, tiny_grid: Path, args: list[str],
                                                    message: str) -> None:
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["search", str(tiny_grid), "--run-dir", str(run), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not run.exists()


@needs_data
@pytest.mark.train
def test_racing_search_judges_each_later_fold_and_logs_why_a_point_stops(
    tmp_path: Path, tiny_grid: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bcpareto import racing

    monkeypatch.chdir(tmp_path)
    judged = []
    real = racing.raced_out

    def spy(grid_id, **kwargs):  # the real verdict, except point 1, dropped after its first fold
        judged.append((grid_id, len(kwargs["predictions"])))
        return "dominated with confidence by grid point 0 (test)" if grid_id == 1 else real(grid_id, **kwargs)

    monkeypatch.setattr(racing, "raced_out", spy)
    args = ["search", str(tiny_grid), "--config", "quick", "--data-dir", str(BLOOD_CELLS), "--limit-per-class",
            "24", "--epochs", "1", "--image-size", "32", "--folds", "3", "--fidelity", "folds", "--no-edge"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    # fold-major: both fold-1 models finished before any later fold was judged
    assert judged and all(n >= 2 for _, n in judged), judged
    assert "grid point 1 fold 2/3: not trained, dominated with confidence by grid point 0" in result.output
    rows = pd.read_csv(tmp_path / "metrics_log.csv")
    trained = rows[rows["status"].isna() | (rows["status"] == "completed")] if "status" in rows else rows
    assert sorted(zip(trained["grid_id"], trained["fold"])) == [(0, 0), (0, 1), (0, 2), (1, 0)]
    raced = rows[rows.get("status") == "raced out"]
    assert sorted(raced["fold"]) == [1, 2] and set(raced["grid_id"]) == {1}
    assert raced["stop_reason"].str.contains("dominated with confidence").all()
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "0 trained now" in again.output, again.output
    plotted = CliRunner().invoke(cli, ["plot", "metrics_log.csv", "--json"])
    assert plotted.exit_code == 0, plotted.output
    report = json.loads(plotted.output)
    assert {m["grid_id"]: m["raced_out"] for m in report["models"]} == {0: False, 1: True}
    assert {c["chosen"] for c in report["choices"]} <= {0, None}  # a raced-out point is never chosen


@needs_data
@pytest.mark.slow
@pytest.mark.train
@pytest.mark.parametrize("pack", ["1", "2"])  # 2: each point's two folds trained as one packed model
def test_cv_units_are_trained_exactly_once_by_two_workers_and_resume_after_sigkill(tmp_path: Path, pack: str) -> None:
    import os
    import signal

    from .procs import GRID_2, _finish, _setup, _sqlite, _start, _trials, _wait_for

    _setup(tmp_path, GRID_2)
    url = _sqlite(tmp_path / "run")
    args = ("--run-dir", "run", "--data-dir", str(BLOOD_CELLS), "--limit-per-class", "24", "--folds", "2",
            "--workers", "2", "--pack", pack)
    proc = _start(tmp_path, *args)
    # SIGKILL once a fold model is completed and another is training (packed: once a pack trains)
    wanted = {"COMPLETE", "RUNNING"} if pack == "1" else {"RUNNING"}
    _wait_for(url, lambda ts: {t.state.name for t in ts} >= wanted and (pack == "1" or sum(
        t.state.name == "RUNNING" for t in ts) >= 2), proc=proc, timeout=240)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    out = _finish(_start(tmp_path, *args), timeout=400)
    assert "Done: 4/4 models completed" in out, out  # 2 points x 2 folds
    done = [t for t in _trials(url) if t.state.name == "COMPLETE"]  # each (grid id, fold) once
    assert sorted((t.user_attrs["grid_id"], t.user_attrs["repeat"]) for t in done) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    rows = pd.read_csv(tmp_path / "run" / "metrics_log.csv")
    assert sorted(zip(rows["grid_id"], rows["fold"])) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    if pack == "2":
        assert "packed with fold 2/2 (--pack 2): 2 models trained as one" in out, out  # the killed pack again
        assert (rows["pack"] == 2).all()
