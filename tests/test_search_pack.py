"""`search --pack M`: a grid point's waiting units (folds, repeats) claimed together and trained
as one packed model (packed.py), each recorded as if trained alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bcpareto import packed
from bcpareto.cli import cli
from bcpareto.config import load_config
from bcpareto.gridspec import read_grid
from bcpareto.runs import load_predictions

from .conftest import BLOOD_CELLS, needs_data


@pytest.mark.parametrize("args, message", [
    (["--pack", "0"], "Invalid value for '--pack': 0 is not in the range x>=1"),
    (["--pack", "many"], "Invalid value for '--pack': 'many' is not a valid integer"),
    (["--pack", "3", "--folds", "3", "--fidelity", "folds"],
     "--pack 3 trains a grid point's models together, but --fidelity folds races each point fold by fold"),
    (["--pack", "2", "--repeats", "2", "--fidelity", "epochs"],
     "--pack 2 trains a grid point's models together, but --fidelity epochs judges each model epoch by epoch"),
])
def test_a_pack_that_cannot_work_exits_2_before_anything_is_created(
    tmp_path: Path, tiny_grid: Path, args: list[str], message: str
) -> None:
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["search", str(tiny_grid), "--config", "quick", "--run-dir", str(run),
                                      "--data-dir", str(tmp_path / "nodata"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not run.exists()


def test_memory_caps_the_pack_with_the_reason(tiny_grid: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config("quick", validation="cv", folds=5)
    point = read_grid(tiny_grid)[1]
    assert packed.pack_size(point, config=config, wanted=5) == (5, None)  # a tiny net: 5 fit easily
    one = packed.train_memory_bytes(point, image_size=config.image_size, channels=config.channels,
                                    padding=config.padding, batch_size=40)  # batch 32 x 5/4 folds
    monkeypatch.setattr(packed, "memory_limit_bytes", lambda: int(2.5 * one))  # a machine with room for 2
    n, reason = packed.pack_size(point, config=config, wanted=5)
    assert n == 2
    assert reason.startswith("grid point 1: 5 models packed need about ") and reason.endswith(": packs of 2")
    monkeypatch.setattr(packed, "memory_limit_bytes", lambda: one // 2)  # not even one: alone (check_memory says why)
    assert packed.pack_size(point, config=config, wanted=5) == (1, packed.pack_size(point, config=config, wanted=5)[1])
    assert packed.pack_size(point, config=config, wanted=1) == (1, None)


@needs_data
@pytest.mark.train
def test_pack_trains_a_points_waiting_folds_together_and_records_each_as_alone(
    tmp_path: Path, tiny_grid: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = ["search", str(tiny_grid), "--config", "quick", "--data-dir", str(BLOOD_CELLS),
            "--limit-per-class", "24", "--epochs", "1", "--image-size", "32", "--folds", "3"]
    result = CliRunner().invoke(cli, [*base, "--pack", "2", "--run-dir", "packed"])
    assert result.exit_code == 0, result.output
    assert "Packed: up to 2 of each grid point's 3 models trained as one (--pack" in result.output
    # each point: folds 1 and 2 in one packed model, fold 3 alone (the pack holds 2)
    for gid in (0, 1):
        assert f"grid point {gid} fold 1/3: " in result.output
    assert result.output.count("packed with fold 2/3 (--pack 2): 2 models trained as one") == 2
    assert "Done: 6/6 models (2 grid points x 3 folds and seeds) completed" in result.output
    rows = pd.read_csv(tmp_path / "packed" / "metrics_log.csv")
    assert sorted(zip(rows["grid_id"], rows["fold"])) == [(g, f) for g in (0, 1) for f in range(3)]  # each once
    assert sorted(rows["pack"].fillna(1).astype(int)) == [1, 1, 2, 2, 2, 2]
    assert (rows[rows["fold"] == 2]["pack"].isna()).all()
    together = rows[rows["pack"] == 2].groupby("grid_id")["wall_seconds"]  # each member: its share of the pack's
    assert (together.nunique() == 1).all() and (together.first() > 0).all()

    # packed members are recorded as a standalone training records them: files, predictions, CSV figures
    folder = tmp_path / "packed" / "runs" / rows["study"].iloc[0]
    tables, predictions = load_predictions(folder)
    (table,) = tables.values()
    assert len(predictions) == 6
    for _, row in rows.iterrows():
        arrays = predictions[(row["grid_id"], row["repeat"])]
        assert (table["fold"][arrays["val_index"]] == row["fold"]).all()  # validated on its own fold only
        labels = table["label"][arrays["test_index"]]
        assert np.mean(arrays["test_prob_int8"].argmax(1) == labels) == pytest.approx(row["int8_test_accuracy"])
        suffix = f"_r{row['repeat']}" if row["repeat"] else ""
        assert (folder / f"grid_{row['grid_id']}{suffix}_int8.tflite").stat().st_size / 1e6 == pytest.approx(
            row["tflite_int8_mb"], abs=1e-3)
    # the same models trained one at a time: the same sizes, no pack
    alone = CliRunner().invoke(cli, [*base, "--pack", "1", "--run-dir", "alone"])
    assert alone.exit_code == 0, alone.output
    assert "packed with" not in alone.output and "Packed:" not in alone.output
    single = pd.read_csv(tmp_path / "alone" / "metrics_log.csv")
    assert "pack" not in single
    keys = ["grid_id", "fold", "seed", "n_params", "n_train", "n_val", "n_test"]
    packed_rows, single_rows = (r.sort_values(keys).reset_index(drop=True) for r in (rows, single))
    pd.testing.assert_frame_equal(packed_rows[keys], single_rows[keys])
    # int8 bytes: equal but for the conv family's layer names, which carry Keras' process-wide
    # counters ("batch_normalization_20") in the file: any two trainings in one process differ so
    np.testing.assert_allclose(packed_rows["tflite_int8_mb"], single_rows["tflite_int8_mb"], atol=2e-4)


@needs_data
@pytest.mark.train
def test_a_pruned_point_trains_its_folds_alone_beside_a_packed_one(tmp_path: Path) -> None:
    from .conftest import write_sheet

    header = ["dense_layers", "neurons", "filters", "kernel_sizes", "block", "stem", "prune"]
    row = ["[1]", "[[8]]", "[[8, 8]]", "[3, 3]", "separable", "[8]"]
    sheet = write_sheet(tmp_path / "grid.xlsx", [header, [*row, "[0.5]"], [*row, None]])
    result = CliRunner().invoke(cli, [
        "search", str(sheet), "--config", "quick", "--data-dir", str(BLOOD_CELLS), "--run-dir", str(tmp_path / "run"),
        "--limit-per-class", "24", "--epochs", "1", "--image-size", "32", "--folds", "2", "--no-edge", "--pack", "2"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "run" / "metrics_log.csv")
    assert sorted(zip(rows["grid_id"], rows["fold"])) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    pruned = rows[rows["prune"] == 0.5]
    assert len(pruned) == 2 and pruned["pack"].isna().all()  # parent, prune, fine-tune: never packed
    assert (pruned["parent_n_params"] > pruned["n_params"]).all()
    assert (rows[rows["prune"].isna()]["pack"] == 2).all()
    assert result.output.count("packed with fold 2/2") == 1
