"""`--track mlflow[:URI]` and `--track tensorboard[:DIR]`: every trained model as an MLflow run in a
real local store (read back through MLflow's own client), its per-epoch curve as TensorBoard events."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bcpareto.cli import cli

from .conftest import BLOOD_CELLS, needs_data

ROOT = Path(__file__).resolve().parents[1]
FORMS = "mlflow, mlflow:URI, tensorboard or tensorboard:DIR"


def _search_args(tmp_path: Path, grid: Path, *extra: str, edge: bool = False, epochs: int = 1) -> list[str]:
    return ["search", str(grid), "--edge" if edge else "--no-edge", "--image-size", "32",
            "--epochs", str(epochs), "--limit-per-class", "3", "--data-dir", str(BLOOD_CELLS),
            "--run-dir", str(tmp_path / "run"), *extra]


def _csv_rows(run_dir: Path) -> dict[str, dict[str, str]]:
    with open(run_dir / "metrics_log.csv", newline="") as handle:
        return {row["grid_id"]: row for row in csv.DictReader(handle)}


def _runs(run_dir: Path, *, uri: str | None = None) -> tuple[object, dict[str, object]]:
    """(MlflowClient, {run name: run}) of the run directory's one experiment."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri or f"sqlite:///{(run_dir / 'mlflow.db').resolve()}")
    [experiment] = [e for e in client.search_experiments() if e.name != "Default"]
    runs = client.search_runs([experiment.experiment_id])
    return client, {r.info.run_name: r for r in runs}


def _tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars of one TensorBoard run folder: through tensorboard's own reader where it is
    installed, else by parsing the event file's records with TensorFlow."""
    import tensorflow as tf

    try:
        from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    except ImportError:
        found: dict[str, list[tuple[int, float]]] = {}
        for path in sorted(folder.glob("events.out.tfevents.*")):
            for record in tf.data.TFRecordDataset(str(path)):
                event = tf.compat.v1.Event.FromString(record.numpy())
                for value in event.summary.value:
                    assert value.metadata.plugin_data.plugin_name == "scalars"
                    found.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
        return found
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in accumulator.Tensors(tag)]
            for tag in accumulator.PluginTagToContent("scalars")}


@pytest.mark.parametrize("values, expected", [
    (["wandb"], "--track 'wandb': expected " + FORMS),
    (["mlflow:"], "--track 'mlflow:': expected " + FORMS),
    (["tensorboard:"], "--track 'tensorboard:': expected " + FORMS),
    (["mlflow", "mlflow:sqlite:///x.db"], "--track mlflow is given twice"),
    (["mlflow:ftp://host/x"], "'ftp' is not an MLflow tracking URI scheme"),
    (["mlflow:http://127.0.0.1:9"], "no MLflow server answers at 127.0.0.1:9"),  # nothing listens there
])
def test_a_bad_track_value_exits_2_and_creates_nothing(tmp_path: Path, tiny_grid: Path,
                                                         values: list[str], expected: str) -> None:
    args = [a for v in values for a in ("--track", v)]
    result = CliRunner().invoke(cli, _search_args(tmp_path, tiny_grid, *args))
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()  # no study queued, no run directory


def test_a_tensorboard_folder_that_cannot_be_created_exits_2(tmp_path: Path, tiny_grid: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    result = CliRunner().invoke(cli, _search_args(tmp_path, tiny_grid, "--track",
                                                  f"tensorboard:{tmp_path / 'taken' / 'tb'}"))
    assert result.exit_code == 2, result.output
    assert "--track tensorboard:" in result.output and "is a file, not a folder" in result.output
    assert not (tmp_path / "run").exists()


def test_refine_checks_track_before_anything(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["refine", "0", "--epochs", "1", "--run-dir", str(tmp_path / "run"),
                                      "--track", "neptune"])
    assert result.exit_code == 2, result.output
    assert "--track 'neptune': expected " + FORMS in result.output
    assert not (tmp_path / "run").exists()


def test_mlflow_not_installed_names_the_extra_and_creates_nothing(tmp_path: Path, tiny_grid: Path) -> None:
    # a process in which `import mlflow` fails as it does where the package is not installed
    code = ("import sys; sys.modules['mlflow'] = None; from bcpareto.cli import cli; "
            "cli(sys.argv[1:], prog_name='bcpareto')")
    result = subprocess.run([sys.executable, "-c", code, *_search_args(tmp_path, tiny_grid, "--track", "mlflow")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "--track mlflow: MLflow is not installed; pip install 'bcpareto[track]'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@needs_data
@pytest.mark.train
def test_every_model_is_an_mlflow_run_and_its_curve_a_tensorboard_run(tmp_path: Path, tiny_grid: Path) -> None:
    pytest.importorskip("mlflow")
    epochs = 2
    result = CliRunner().invoke(cli, _search_args(tmp_path, tiny_grid, "--track", "mlflow", "--track",
                                                  "tensorboard", edge=True, epochs=epochs))
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "run"
    rows = _csv_rows(run_dir)
    study = rows["0"]["study"]
    assert f"Tracking: MLflow sqlite:///{run_dir.resolve() / 'mlflow.db'} (experiment {study!r}" in result.output
    assert "warning: tracking" not in result.output

    client, runs = _runs(run_dir)
    assert sorted(runs) == ["grid_0", "grid_1"]  # one run per model, named like its files
    for name, run in runs.items():
        row = rows[name.removeprefix("grid_")]
        assert run.info.status == "FINISHED"
        assert client.get_experiment(run.info.experiment_id).name == study
        params = run.data.params
        for key in ("grid_id", "filters", "kernel_sizes", "neurons", "dense_layers", "preset", "seed",
                    "repeat", "epochs", "image_size"):
            assert params[key] == row[key], key
        assert params["config.learning_rate"] and params["config.name"] == row["preset"]
        # the final metrics are the CSV row's (model_size(MB) under a name MLflow allows)
        metrics = run.data.metrics
        for column in ("val_accuracy", "test_accuracy", "test_balanced_accuracy", "model_size(MB)",
                       "int8_test_accuracy", "tflite_int8_mb", "latency_ms", "n_params", "macs",
                       "train_seconds", "wall_seconds"):
            key = column.replace("(MB)", "_MB")
            assert metrics[key] == pytest.approx(float(row[column]), rel=1e-9), column
        # the per-epoch curve, step = epoch from 1
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert sorted(m.step for m in history) == list(range(1, epochs + 1))
        assert max(history, key=lambda m: m.step).value == pytest.approx(float(row["val_accuracy"]))
        assert len(client.get_metric_history(run.info.run_id, "epoch_seconds")) == epochs
        for keras_log in ("loss", "accuracy", "val_loss"):  # Keras's own per-epoch logs too
            assert len(client.get_metric_history(run.info.run_id, keras_log)) == epochs, keras_log
        # its files as artifacts, byte for byte
        files = sorted(a.path for a in client.list_artifacts(run.info.run_id))
        assert files == [f"{name}.json", f"{name}.keras", f"{name}_int8.tflite"]
        local = Path(client.download_artifacts(run.info.run_id, f"{name}_int8.tflite", str(tmp_path)))
        assert local.read_bytes() == (run_dir / "runs" / study / f"{name}_int8.tflite").read_bytes()

        scalars = _tensorboard_scalars(run_dir / "tensorboard" / study / name)
        assert [s for s, _ in scalars["val_accuracy"]] == list(range(1, epochs + 1))
        assert scalars["val_accuracy"][-1][1] == pytest.approx(float(row["val_accuracy"]), abs=1e-6)
        assert len(scalars["epoch_seconds"]) == epochs

    # refine logs its new model too, its curve after the parent's epochs
    result = CliRunner().invoke(cli, ["refine", "1", "--epochs", "1", "--run-dir", str(run_dir),
                                      "--data-dir", str(BLOOD_CELLS), "--track", "mlflow"])
    assert result.exit_code == 0, result.output
    client, runs = _runs(run_dir)
    assert sorted(runs) == ["grid_0", "grid_1", "grid_2"]
    refined = runs["grid_2"]
    assert refined.data.params["parent_grid_id"] == "1" and refined.data.tags["bcpareto.parent_grid_id"] == "1"
    assert [m.step for m in client.get_metric_history(refined.info.run_id, "val_accuracy")] == [epochs + 1]
    assert refined.data.metrics["test_accuracy"] == pytest.approx(float(_csv_rows(run_dir)["2"]["test_accuracy"]))

    # export adds the deployable file and its model card to that model's run
    result = CliRunner().invoke(cli, ["export", "0", "--out", str(tmp_path / "shipped"), "--run-dir", str(run_dir),
                                      "--track", "mlflow"])
    assert result.exit_code == 0, result.output
    client, runs = _runs(run_dir)
    assert sorted(runs) == ["grid_0", "grid_1", "grid_2"]  # no new run: the model's own
    exported = sorted(a.path for a in client.list_artifacts(runs["grid_0"].info.run_id, "export"))
    assert exported == sorted(f"export/{p.name}" for p in (tmp_path / "shipped").iterdir()), exported
    assert "export/model_card.json" in exported


@needs_data
@pytest.mark.train
def test_a_store_that_fails_mid_search_is_said_once_and_costs_no_model(tmp_path: Path, tiny_grid: Path) -> None:
    pytest.importorskip("mlflow")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "mlartifacts").write_text("a file where MLflow puts its artifacts")  # every upload fails
    result = CliRunner().invoke(cli, _search_args(tmp_path, tiny_grid, "--track", "mlflow"))
    assert result.exit_code == 0, result.output
    assert result.output.count("warning: tracking to MLflow") == 1, result.output
    assert "The models are kept (metrics_log.csv, runs/); nothing more is sent to mlflow" in result.output
    assert "2/2 grid points completed" in result.output
    assert sorted(_csv_rows(run_dir)) == ["0", "1"]
    _, runs = _runs(run_dir)
    assert runs == {}  # the half-logged run is deleted, not left looking complete


@needs_data
@pytest.mark.train
@pytest.mark.slow  # two worker processes, each starting TensorFlow
def test_each_worker_logs_its_own_models(tmp_path: Path, tiny_grid: Path) -> None:
    pytest.importorskip("mlflow")
    result = subprocess.run(
        [sys.executable, "-m", "bcpareto", *_search_args(tmp_path, tiny_grid, "--workers", "2", "--track",
                                                         "mlflow", "--track", f"tensorboard:{tmp_path / 'tb'}")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = tmp_path / "run"
    rows = _csv_rows(run_dir)
    _, runs = _runs(run_dir)
    assert sorted(runs) == ["grid_0", "grid_1"]
    assert {runs[f"grid_{g}"].data.metrics["val_accuracy"] for g in rows} == {float(r["val_accuracy"]) for r in rows.values()}
    study = rows["0"]["study"]
    assert sorted(p.name for p in (tmp_path / "tb" / study).iterdir()) == ["grid_0", "grid_1"]
    assert result.stdout.count("Tracking: MLflow") == 1  # said by the parent, not by each worker
