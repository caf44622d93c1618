"""edge.py and export.py on a tiny real Keras model trained on images whose colour encodes the class."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bcpareto import edge, export
from bcpareto.errors import BcParetoError, ExportError

CLASS_NAMES = ["EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"]
# Mean colour per class; per-pixel noise (sd 40) makes single pixels ambiguous, whole images not.
CLASS_COLOURS = np.array([(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)], dtype=float)


def _images(n: int, *, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    noisy = CLASS_COLOURS[labels][:, None, None, :] + rng.normal(0, 40, (n, size, size, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8), labels


def _tiny_model(*, head: str = "gap"):
    """Input(32,32,3) -> Rescaling -> Conv2D(8) -> MaxPool -> GAP (or Flatten) -> Dense(4, softmax)."""
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x) if head == "gap" else keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(4, activation="softmax")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def trained():
    """The tiny model after a few dozen Adam steps (~3 s on 2 cores), with train and test images."""
    import keras

    keras.utils.set_random_seed(0)
    train_images, train_labels = _images(128, seed=0)
    test_images, test_labels = _images(64, seed=1)
    model = _tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(train_images.astype("float32"), train_labels, epochs=15, batch_size=32, verbose=0)
    keras_predictions = model.predict(test_images.astype("float32"), verbose=0).argmax(axis=1)
    keras_accuracy = float(np.mean(keras_predictions == test_labels))
    assert keras_accuracy >= 0.8, "the tiny model should learn colour -> class well above chance (0.25)"
    int8 = edge.convert(model, precision="int8", representative_images=train_images)
    return {
        "model": model, "train_images": train_images, "test_images": test_images,
        "test_labels": test_labels, "keras_accuracy": keras_accuracy, "int8": int8,
    }


def _card() -> dict:
    return {
        "class_names": CLASS_NAMES,
        "metrics": {"test_accuracy": 0.9, "val_accuracy": 0.91},
        "training_config": {"epochs": 15, "image_size": 32, "optimizer": "adam"},
    }


# --- conversion -----------------------------------------------------------------------------


@pytest.mark.train
@pytest.mark.slow  # waits on the 15-epoch `trained` fixture
def test_int8_model_takes_raw_uint8_pixels_and_gives_uint8_probabilities(trained):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=trained["int8"])
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.uint8 and inp["quantization"] == (1.0, 0)  # raw pixels, no arithmetic
    assert out["dtype"] == np.uint8 and out["quantization"] == (1 / 256, 0)


@pytest.mark.train
@pytest.mark.slow
def test_int8_accuracy_close_to_keras(trained):
    result = edge.evaluate_tflite(
        trained["int8"], images=trained["test_images"], labels=trained["test_labels"]
    )
    # 64 test images: 3 flips (~0.05) is more than int8 rounding should ever cost on this task.
    assert abs(result["accuracy"] - trained["keras_accuracy"]) <= 0.05
    assert result["predictions"].shape == (64,)


@pytest.mark.train
@pytest.mark.slow
def test_balanced_accuracy_is_the_mean_recall_per_class(trained):
    # 2 images of class 0 and 16 of each other class: balanced and plain accuracy differ
    keep = (trained["test_labels"] != 0) | (np.arange(64) < 8)
    labels = trained["test_labels"][keep]
    result = edge.evaluate_tflite(trained["int8"], images=trained["test_images"][keep],
                                    labels=labels)
    predictions = result["predictions"]
    recalls = [np.mean(predictions[labels == c] == c) for c in range(4)]
    assert result["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    assert result["accuracy"] == pytest.approx(np.mean(predictions == labels))
    assert result["n_images"] == 50


@pytest.mark.train
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_float_models_match_keras_predictions(trained, precision):
    model_bytes = edge.convert(trained["model"], precision=precision)
    result = edge.evaluate_tflite(
        model_bytes, images=trained["test_images"], labels=trained["test_labels"], batch_size=5
    )
    keras_predictions = trained["model"].predict(trained["test_images"].astype("float32"), verbose=0)
    np.testing.assert_array_equal(result["predictions"], keras_predictions.argmax(axis=1))


@pytest.mark.train
@pytest.mark.slow
def test_int8_is_about_four_times_smaller_for_a_weights_dominated_model(trained):
    # Flatten head: 16*16*8*4 + 4 + 224 = 8420 parameters. fp32 = 4 B/param + ~3 KiB of graph;
    # int8 = 1 B/param + ~4 KiB of graph, int32 biases and per-channel scales that do not shrink:
    # (4*8420 + 3K) / (8420 + 4K) ~= 3.0 here (measured 36576 / 12248 B), tending to 4 as the
    # weights grow. 2.7 leaves room for converter-version drift; fp16 (2 B/param) measured 1.8.
    model = _tiny_model(head="flatten")
    sizes = {
        p: len(edge.convert(model, precision=p, representative_images=trained["train_images"]))
        for p in edge.PRECISIONS
    }
    assert sizes["fp32"] / sizes["int8"] > 2.7, sizes
    assert sizes["fp32"] / sizes["fp16"] > 1.6, sizes


@pytest.mark.train
@pytest.mark.slow
def test_int8_without_representative_images_is_refused(trained):
    with pytest.raises(ExportError, match="representative_images"):
        edge.convert(trained["model"], precision="int8")


@pytest.mark.train
@pytest.mark.slow
@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((4, 16, 16, 3), np.uint8), "model expects"),
        (np.zeros((16, 16, 3), np.uint8), "4-D"),
        (np.full((4, 32, 32, 3), 0.5, np.float32), "already rescaled"),
        (np.full((4, 32, 32, 3), 300.0, np.float32), r"\[0, 255\]"),
    ],
)
def test_bad_representative_images_are_refused(trained, images, message):
    with pytest.raises(ExportError, match=message):
        edge.convert(trained["model"], precision="int8", representative_images=images)


@pytest.mark.train
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp64", "INT8", "uint8", ""])
def test_unknown_precision_names_the_valid_ones(trained, precision):
    with pytest.raises(BcParetoError, match="valid: fp32, fp16, int8"):
        edge.convert(trained["model"], precision=precision)


# --- measuring --------------------------------------------------------------------------------


@pytest.mark.train
@pytest.mark.slow
def test_latency_is_the_median_and_p90_of_the_timed_runs_after_warmup(trained, monkeypatch):
    """A clock that only moves inside invoke(): 100 ms per warm-up run, then 1..20 ms shuffled."""
    import time

    from ai_edge_litert.interpreter import Interpreter

    assert edge.measure_latency(trained["int8"], runs=3, warmup=1)["latency_ms"] > 0  # real
    timed = [float(ms) for ms in np.random.default_rng(0).permutation(np.arange(1, 21))]
    durations = iter([100.0] * 3 + timed)
    clock = [0.0]

    def invoke(self):
        clock[0] += next(durations) / 1e3

    monkeypatch.setattr(Interpreter, "invoke", invoke)
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    result = edge.measure_latency(trained["int8"], runs=20, warmup=3)
    assert result["latency_ms"] == pytest.approx(10.5)  # median of 1..20; warm-up left out
    assert result["latency_p90_ms"] == pytest.approx(18.1)  # linear interpolation: 18 + 0.1
    assert result["latency_mean_ms"] == pytest.approx(10.5)
    assert (result["runs"], result["warmup"], result["num_threads"]) == (20, 3, 1)
    assert next(durations, None) is None  # exactly warmup + runs invokes


@pytest.mark.train
@pytest.mark.slow
def test_edge_metrics_gives_flat_csv_columns(trained):
    report = edge.measure_edge(
        trained["model"], train_images=trained["train_images"], test_images=trained["test_images"],
        test_labels=trained["test_labels"], runs=5, warmup=1,
    )
    assert set(report.metrics) == {
        "tflite_fp32_mb", "tflite_fp16_mb", "tflite_int8_mb", "int8_test_accuracy",
        "int8_test_balanced_accuracy", "latency_ms", "latency_p90_ms", "fp32_latency_ms",
        "latency_num_threads",
    }
    assert all(isinstance(v, (int, float)) for v in report.metrics.values())
    assert report.metrics["tflite_int8_mb"] == len(report.tflite_models["int8"]) / 2**20
    assert report.tflite_models["int8"] == trained["int8"]  # same sample, same seed: same bytes
    assert abs(report.metrics["int8_test_accuracy"] - trained["keras_accuracy"]) <= 0.05


@pytest.mark.train
@pytest.mark.slow
def test_one_export_for_every_precision_gives_the_bytes_of_one_export_each(trained):
    """measure_edge converts fp32, fp16 and int8 from one SavedModel (edge.convert_all): each file
    is byte for byte the one a separate convert() call, with its own export, writes."""
    shared = edge.convert_all(trained["model"], representative_images=trained["train_images"])
    assert list(shared) == ["fp32", "fp16", "int8"]
    assert shared["int8"] == trained["int8"]
    for precision in ("fp32", "fp16"):
        assert shared[precision] == edge.convert(trained["model"], precision=precision)
    assert len(set(shared.values())) == 3  # three different files, not one copied


# --- files ------------------------------------------------------------------------------------


@pytest.mark.train
@pytest.mark.slow
def test_exported_int8_file_reproduces_reported_accuracy(trained, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    images, labels = trained["test_images"], trained["test_labels"]
    model_path, _ = export.export_model(
        trained["model"], fmt="tflite-int8", out_dir=tmp_path, card=_card(),
        representative_images=trained["train_images"],
    )
    reported = edge.evaluate_tflite(model_path.read_bytes(), images=images, labels=labels)

    # What an edge app does: load the file, push raw uint8 pixels one at a time, argmax.
    interpreter = Interpreter(model_path=str(model_path), num_threads=1)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    predictions = []
    for image in images:
        interpreter.set_tensor(inp["index"], image[np.newaxis])
        interpreter.invoke()
        predictions.append(int(interpreter.get_tensor(out["index"])[0].argmax()))
    np.testing.assert_array_equal(predictions, reported["predictions"])
    assert np.mean(np.array(predictions) == labels) == reported["accuracy"]


@pytest.mark.train
@pytest.mark.slow
@pytest.mark.parametrize("fmt", export.FORMATS)
def test_export_model_writes_file_and_card(trained, tmp_path, fmt):
    paths = export.export_model(
        trained["model"], fmt=fmt, out_dir=tmp_path / "out", card=_card(),
        representative_images=trained["train_images"],
    )
    model_path, card_path = paths
    assert model_path.name == export.MODEL_FILES[fmt] and card_path.name == "model_card.json"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)  # no temp files
    card = json.loads(card_path.read_text())
    required = {
        "format", "file", "file_size_bytes", "file_size_mb", "sha256", "class_names", "input",
        "output", "metrics", "training_config", "tool_versions", "created_utc",
    }
    assert required <= set(card), required - set(card)
    assert card["format"] == fmt and card["file"] == model_path.name
    assert card["class_names"] == CLASS_NAMES
    assert card["sha256"] == hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert card["file_size_bytes"] == model_path.stat().st_size
    assert card["input"]["shape"] == [32, 32, 3]
    assert card["input"]["preprocessing_in_model"] == [f"Rescaling(scale={1 / 255:.8g}, offset=0)"]
    assert {"tensorflow", "keras", "ai-edge-litert", "numpy"} <= set(card["tool_versions"])
    if fmt == "tflite-int8":
        assert card["input"]["dtype"] == "uint8"
        assert card["input"]["quantization"]["scale"] == 1.0
        assert card["output"]["quantization"]["scale"] == 1 / 256


@pytest.mark.train
@pytest.mark.slow
def test_export_model_twice_overwrites_cleanly(trained, tmp_path):
    for _ in range(2):
        export.export_model(trained["model"], fmt="tflite-int8", out_dir=tmp_path, card=_card(),
                            tflite_model=trained["int8"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_card.json", "model_int8.tflite"]
    assert (tmp_path / "model_int8.tflite").read_bytes() == trained["int8"]


@pytest.mark.train
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "tflite", "tflite-int4", "Keras"])
def test_unknown_format_names_the_valid_ones(trained, tmp_path, fmt):
    with pytest.raises(ExportError, match="valid: keras, tflite-fp32, tflite-fp16, tflite-int8"):
        export.export_model(trained["model"], fmt=fmt, out_dir=tmp_path, card=_card())
    assert not any(tmp_path.iterdir())


@pytest.mark.train
@pytest.mark.slow
@pytest.mark.parametrize(
    "change, message",
    [
        ({"metrics": None}, "lacks metrics"),
        ({"class_names": None, "training_config": None}, "lacks class_names, training_config"),
        ({"sha256": "abc"}, "filled in by export"),
    ],
)
def test_bad_card_is_refused(trained, tmp_path, change, message):
    card = {**_card(), **change}
    card = {k: v for k, v in card.items() if v is not None}
    with pytest.raises(ExportError, match=message):
        export.export_model(trained["model"], fmt="keras", out_dir=tmp_path, card=card)


# --- start-up cost ----------------------------------------------------------------------------


def test_importing_export_does_not_import_tensorflow():
    code = ("import sys, bcpareto.export, bcpareto.edge; "
            "sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)")
    src = str(Path(export.__file__).parents[1])
    result = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": src}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
