"""`bcpareto search` end to end on a few real images per class (32 px, 1 epoch, 2 grid points)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bcpareto.cli import cli

from .conftest import BLOOD_CELLS, CLASSES, copy_subset, needs_data, write_sheet

pytestmark = [needs_data, pytest.mark.train]


def _search(tmp_path: Path, grid: Path, *extra: str, data: Path = BLOOD_CELLS,
            edge: bool = False) -> tuple[int, str]:
    args = ["search", "--edge" if edge else "--no-edge", str(grid), "--image-size", "32", "--epochs", "1", "--limit-per-class", "4",
            "--data-dir", str(data), "--run-dir", str(tmp_path / "run"), *extra]
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


def _rows(tmp_path: Path) -> list[dict[str, str]]:
    with open(tmp_path / "run" / "metrics_log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow  # trains through the CLI: about a minute on 2 cores
def test_search_trains_every_point_logs_one_row_each_and_resumes(tmp_path: Path, tiny_grid: Path) -> None:
    code, output = _search(tmp_path, tiny_grid, edge=True)
    assert code == 0, output
    assert "Estimated time" in output and "ETA" in output and "2/2 grid points completed" in output
    rows = _rows(tmp_path)
    header = list(rows[0])
    assert header[:5] == ["train_loss", "train_accuracy", "val_loss", "val_accuracy", "model_size(MB)"]
    assert [r["grid_id"] for r in rows] == ["0", "1"]
    assert [r["filters"] for r in rows] == ["[4,8]", "[4,8,8]"]
    for row in rows:
        assert 0 <= float(row["val_accuracy"]) <= 1 and 0 <= float(row["test_accuracy"]) <= 1
        assert row["epochs"] == "1" and row["image_size"] == "32"
        assert row["val_split"].startswith("TRAIN grouped 15% (")  # whole source smears held out
        assert row["test_split"].startswith("TEST minus") and int(row["n_test"]) <= 16
        assert float(row["tflite_int8_mb"]) > 0 and float(row["latency_ms"]) > 0
        assert float(row["model_size(MB)"]) > int(row["n_params"]) * 4 / 2**20  # h5 > raw weights
    # models that learned nothing are reported by name, not hidden
    for row in rows:
        reported = f"grid point {row['grid_id']} stayed at chance level" in output
        assert reported == (float(row["val_accuracy"]) < 0.30), output
    # the per-trial record: confusion matrix on TEST beside the study
    record = json.loads(next((tmp_path / "run" / "runs").glob("*/grid_1.json")).read_text())
    assert len(record["confusion"]) == len(CLASSES)
    assert sum(map(sum, record["confusion"])) == int(rows[1]["n_test"])

    code, output = _search(tmp_path, tiny_grid, edge=True)  # the same command again: nothing to do
    assert code == 0, output
    assert "2 of 2 grid points completed, 0 to train" in output
    assert _rows(tmp_path) == rows


@pytest.mark.slow
def test_changed_settings_start_a_new_study_and_keep_the_old_rows(tmp_path: Path, tiny_grid: Path) -> None:
    assert _search(tmp_path, tiny_grid)[0] == 0
    code, output = _search(tmp_path, tiny_grid, "--batch-size", "4")
    assert code == 0, output
    rows = _rows(tmp_path)
    assert len(rows) == 4 and len({r["study"] for r in rows}) == 2
    assert sorted((r["study"], r["grid_id"]) for r in rows) == sorted({(r["study"], r["grid_id"]) for r in rows})


def test_a_collapsing_point_is_rejected_before_training(tmp_path: Path) -> None:
    grid = write_sheet(tmp_path / "deep.xlsx", [
        ["dense_layers", "neurons", "filters", "kernel_sizes"],
        ["[1]", "[[8]]", "[[4, 4, 4, 4, 4, 4, 4]]", "[3, 3, 3, 3, 3, 3, 3]"],
    ])
    code, output = _search(tmp_path, grid)
    assert code == 2, output
    assert "grid point 0" in output and "collapses" in output and "at least 128 px" in output
    assert "Traceback" not in output
    assert not (tmp_path / "run" / "metrics_log.csv").exists()


def test_missing_data_directory_is_a_clear_error_and_writes_nothing(tmp_path: Path, tiny_grid: Path) -> None:
    code, output = _search(tmp_path, tiny_grid, data=tmp_path / "nowhere")
    assert code == 2, output
    assert "nowhere" in output and "does not exist" in output
    assert not (tmp_path / "run" / "metrics_log.csv").exists()


def test_a_class_missing_from_test_is_named_and_nothing_is_written(tmp_path: Path, tiny_grid: Path) -> None:
    data = copy_subset(tmp_path / "data", per_class=2)
    shutil.rmtree(data / "TEST" / "MONOCYTE")
    code, output = _search(tmp_path, tiny_grid, data=data)
    assert code == 2, output
    assert "MONOCYTE" in output and "TEST" in output
    assert not (tmp_path / "run" / "metrics_log.csv").exists()


def test_bad_sheet_writes_nothing(tmp_path: Path) -> None:
    grid = write_sheet(tmp_path / "bad.xlsx", [["dense_layers", "neurons", "filters", "kernel_sizes"],
                                               ["[2]", "[[8]]", "[[4]]", "[3]"]])
    code, output = _search(tmp_path, grid)
    assert code == 2 and "cell B2" in output
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_unreadable_images_are_skipped_and_listed(tmp_path: Path, tiny_grid: Path) -> None:
    data = copy_subset(tmp_path / "data", per_class=3)
    victim = sorted((data / "TRAIN" / "EOSINOPHIL").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated JPEG
    (data / "TRAIN" / "EOSINOPHIL" / ".DS_Store").write_bytes(b"\0\1")
    code, output = _search(tmp_path, tiny_grid, data=data)
    assert code == 0, output
    assert "skipped 1 unreadable file(s)" in output and victim.name in output
    code, output = _search(tmp_path / "strict", tiny_grid, "--on-bad-image", "fail", data=data)
    assert code == 2 and victim.name in output


@pytest.mark.slow
def test_exported_int8_model_reproduces_the_recorded_accuracy(tmp_path: Path, tiny_grid: Path) -> None:
    """Export after a real search, load the file with LiteRT, score the same TEST images."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from bcpareto.config import load_config
    from bcpareto.data import load_data_for

    assert _search(tmp_path, tiny_grid, edge=True)[0] == 0
    row = _rows(tmp_path)[1]
    out = tmp_path / "export"
    result = CliRunner().invoke(cli, ["export", "1", "--format", "tflite-int8", "--out", str(out),
                                      "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    card = json.loads((out / "model_card.json").read_text())
    assert card["class_names"] == list(CLASSES)
    assert card["metrics"]["test_split"] == row["test_split"]
    assert "chosen on" in card["metrics"]["how_to_read"] and "held-out" in card["metrics"]["how_to_read"]
    assert card["training_config"]["image_size"] == 32
    # the default preset cuts a window on the cell: the card tells the device to do the same
    assert row["cell_crop"] == "144" and card["training_config"]["cell_crop"] == 144
    assert "144x144-pixel window" in card["frame_to_input"] and "32x32" in card["frame_to_input"]

    # a device implementer's view: the frames themselves, through the exported reference
    # preprocess.py alone (bcpareto blocked from importing) and the exported int8 file
    config = load_config("default", image_size=32, epochs=1, limit_per_class=4)
    test = load_data_for(BLOOD_CELLS, config).test
    script = (
        "import sys, json, numpy as np\n"
        "sys.modules['bcpareto'] = None  # the reference must need nothing from bcpareto\n"
        f"sys.path.insert(0, {str(out)!r})\n"
        "import preprocess\n"
        f"settings = preprocess.input_settings({str(out / 'model_card.json')!r})\n"
        "paths = json.loads(sys.stdin.read())\n"
        f"np.save({str(tmp_path / 'frames.npy')!r}, "
        "np.stack([preprocess.decode_image(p, **settings) for p in paths]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(list(test.paths)),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    frames = np.load(tmp_path / "frames.npy")
    interpreter = Interpreter(model_path=str(next(out.glob("*.tflite"))))
    interpreter.allocate_tensors()
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    predicted = []
    for image in frames:
        interpreter.set_tensor(inp["index"], image[None].astype(inp["dtype"]))
        interpreter.invoke()
        predicted.append(int(np.argmax(interpreter.get_tensor(outp["index"])[0])))
    accuracy = float(np.mean(np.array(predicted) == test.labels))
    assert accuracy == pytest.approx(float(row["int8_test_accuracy"]))


@pytest.mark.slow
def test_export_of_an_unknown_grid_point_lists_the_finished_ones(tmp_path: Path, tiny_grid: Path) -> None:
    assert _search(tmp_path, tiny_grid)[0] == 0
    result = CliRunner().invoke(cli, ["export", "7", "--out", str(tmp_path / "x"), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "grid point 7" in result.output and "finished grid points: 0, 1" in result.output
    result = CliRunner().invoke(cli, ["export", "0", "--out", str(tmp_path / "x"), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 1 and "no int8 model" in result.output and "--edge" in result.output
