"""`bcpareto edge`: the TFLite columns of models trained with `--no-edge`, filled in later."""

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
def test_edge_fills_the_tflite_columns_later_with_the_search_s_own_bytes(tmp_path: Path, tiny_grid: Path) -> None:
    """`search --no-edge` then `bcpareto edge`: the CSV, the record and export get the TFLite
    figures; converting a saved model later gives the very int8 file the search itself wrote."""
    result = _search(tmp_path, tiny_grid)  # FAST: edge_metrics = false
    assert result.exit_code == 0, result.output
    assert all(r.get("tflite_int8_mb", "") == "" for r in _rows(tmp_path / "run"))
    filled = CliRunner().invoke(cli, ["edge", "--run-dir", str(tmp_path / "run"), "--data-dir", str(BLOOD_CELLS)])
    assert filled.exit_code == 0, filled.output
    assert "2 model(s) without TFLite figures" in filled.output and "Done: 2 model(s) measured" in filled.output
    rows = _rows(tmp_path / "run")
    for row in rows:
        assert float(row["tflite_int8_mb"]) > 0 and 0 <= float(row["int8_test_accuracy"]) <= 1
    again = CliRunner().invoke(cli, ["edge", "--run-dir", str(tmp_path / "run"), "--data-dir", str(BLOOD_CELLS)])
    assert "every completed model has its TFLite figures" in again.output, again.output
    out = tmp_path / "export"
    exported = CliRunner().invoke(cli, ["export", "1", "--format", "tflite-int8", "--out", str(out),
                                        "--run-dir", str(tmp_path / "run")])
    assert exported.exit_code == 0, exported.output
    card = (out / "model_card.json").read_text()
    assert '"int8_test_accuracy"' in card

    # the same conversion as in a search: a search with edge figures, then its model converted again
    preset = _preset(tmp_path, FAST.replace("edge_metrics = false", "latency_runs = 2"))
    assert _search(tmp_path, tiny_grid, "--run-dir", str(tmp_path / "run2"), preset=str(preset)).exit_code == 0
    import keras

    from bcpareto.data import load_data_for
    from bcpareto.edge import measure_edge
    from bcpareto.refine import config_from_record
    from bcpareto.runs import find_trial

    trial = find_trial(tmp_path / "run2", 0)
    data = load_data_for(BLOOD_CELLS, config_from_record(trial.record))
    report = measure_edge(keras.models.load_model(trial.keras_model, compile=False),
                          train_images=data.train.images, test_images=data.test.images,
                          test_labels=data.test.labels, runs=2)
    assert report.tflite_models["int8"] == trial.int8_model.read_bytes()
    assert report.metrics["int8_test_accuracy"] == trial.record["row"]["int8_test_accuracy"]

