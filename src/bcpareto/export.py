"""Deployable artefacts and edge measurements: TFLite conversion, accuracy, latency, model card.

Data flow for one trained model (training code calls these after fit/evaluate):

    keras.Model --convert()--> .tflite bytes (fp32 / fp16 / int8)
                 --evaluate_tflite()--> accuracy of the bytes the device would run
                 --measure_latency()--> single-image latency under LiteRT
    measure_edge() does all three and gives flat CSV columns;
    export_model() writes one model file plus model_card.json, atomically.

Contract with the training code: models take raw pixels as float32 in [0, 255], shape (H, W, C),
carry their own preprocessing (a keras.layers.Rescaling layer, or none for the legacy preset) and
end in a softmax over the classes. Images arrive as uint8 arrays (N, H, W, C), labels as ints (N,).

Sizes are in MiB and named `_mb` (bytes / 2**20), matching how the rest of bcpareto reports
model size. TensorFlow and LiteRT are imported inside functions so `bcpareto --help` starts fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from . import __version__
from .errors import ExportError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras

PRECISIONS = ("fp32", "fp16", "int8")
FORMATS = ("keras", "tflite-fp32", "tflite-fp16", "tflite-int8")
MODEL_FILES = {
    "keras": "model.keras",
    "tflite-fp32": "model_fp32.tflite",
    "tflite-fp16": "model_fp16.tflite",
    "tflite-int8": "model_int8.tflite",
}
CARD_FILE = "model_card.json"
# Keys the caller must put in the card: what the outputs mean, how good the model is, how it was made.
REQUIRED_CARD_KEYS = ("class_names", "metrics", "training_config")
# Keys export computes from the written file; a caller's value would silently disagree, so refuse it.
_COMPUTED_CARD_KEYS = (
    "format", "file", "file_size_bytes", "file_size_mb", "sha256", "input", "output",
    "tool_versions", "created_utc",
)

N_REPRESENTATIVE = 200  # TFLite docs suggest ~100-500 calibration images; 200 keeps int8 conversion to seconds
EVAL_BATCH = 64  # images per interpreter call in evaluate_tflite; batch size does not change the results
_MIB = 2**20


@dataclass(frozen=True)
class EdgeReport:
    """What measure_edge found: flat CSV columns, how they were measured, and the converted bytes."""

    metrics: dict[str, float | int]
    protocol: dict[str, Any]
    tflite_models: dict[str, bytes] = field(repr=False)


# --------------------------------------------------------------------------------------------
# Conversion


def convert(
    model: keras.Model,
    *,
    precision: str,
    representative_images: np.ndarray | None = None,
) -> bytes:
    """Convert a Keras model to a TFLite flatbuffer.

    fp32: plain float model. fp16: float16 weights, float32 maths and I/O (half the size).
    int8: full-integer quantisation (int8 weights and activations, TFLITE_BUILTINS_INT8 only, so it
    also runs on integer-only accelerators and microcontrollers), calibrated on
    `representative_images` (raw pixels from the training split; at most N_REPRESENTATIVE are
    used, picked with a fixed seed so the same inputs give the same bytes).

    int8 I/O: input is uint8 with scale 1 and zero point 0, i.e. the device feeds the raw camera
    or JPEG-decoder pixels directly (the model's own Rescaling does the /255 inside the integer
    graph); output is uint8 (scale 1/256, zero point 0): argmax works on it directly and
    probability = value / 256. Integer I/O keeps the whole graph integer (no float Quantize or
    Dequantize ops), which integer-only hardware (Edge TPU, MCUs) requires.
    """
    _check_choice(precision, PRECISIONS, what="precision")
    input_shape = _model_input_shape(model)
    if precision == "int8":
        if representative_images is None or len(representative_images) == 0:
            raise ExportError(
                "int8 conversion needs representative_images: 100-200 raw training images "
                f"of shape (N, {', '.join(map(str, input_shape))}) to calibrate activation ranges"
            )
        _check_images(representative_images, input_shape=input_shape, what="representative_images")

    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="bcpareto-savedmodel-") as saved_model_dir:
        _export_saved_model(model, saved_model_dir)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        if precision == "fp16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif precision == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = _representative_dataset(representative_images)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
        try:
            return bytes(converter.convert())
        except Exception as exc:  # the converter raises several unrelated types (ConverterError, ...)
            raise ExportError(f"TFLite {precision} conversion failed: {exc}") from exc


def _export_saved_model(model: keras.Model, directory: str) -> None:
    """Write the inference graph (training=False) as a SavedModel, quietly.

    TFLiteConverter.from_keras_model does the same for Keras 3 models but prints the endpoint
    listing to stdout; library code must not print, so we export ourselves with verbose=False.
    """
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    signature = [tf.TensorSpec(t.shape, dtype=t.dtype, name=t.name) for t in model.inputs]
    archive.add_endpoint("serve", lambda x: model(x, training=False), signature)
    archive.write_out(directory, verbose=False)


def _representative_dataset(images: np.ndarray) -> Callable[[], Any]:
    """Calibration generator: up to N_REPRESENTATIVE raw images as float32, one per call.

    One value of the first image is set to 0 and one to 255 so that the calibrated input range is
    exactly [0, 255], which makes the uint8 input scale 1 and zero point 0 (raw pixels go straight
    in). Two single-channel corner pixels barely move the ranges of later layers.
    """
    if len(images) > N_REPRESENTATIVE:
        picked = np.random.default_rng(0).choice(len(images), N_REPRESENTATIVE, replace=False)
        images = images[np.sort(picked)]
    sample = images.astype(np.float32)  # a copy: the caller's array is never modified
    sample[0, 0, 0, 0] = 0.0
    sample[0, -1, -1, 0] = 255.0

    def generate():
        for image in sample:
            yield [image[np.newaxis]]

    return generate


# --------------------------------------------------------------------------------------------
# Running a converted model


def evaluate_tflite(
    tflite_model: bytes,
    *,
    images: np.ndarray,
    labels: np.ndarray,
    num_threads: int = 1,
    batch_size: int = EVAL_BATCH,
) -> dict[str, Any]:
    """Classify `images` (raw pixels, (N, H, W, C)) with a TFLite model and score against `labels`.

    Handles float and quantised inputs: for a quantised input, pixels are quantised with the
    tensor's own scale and zero point (identity for our int8 models). Returns accuracy,
    balanced_accuracy (mean per-class recall over the classes present in `labels`), predictions
    (int64 array, N) and n_images.
    """
    labels = np.asarray(labels)
    interpreter = _interpreter(tflite_model, num_threads=num_threads)
    input_detail = interpreter.get_input_details()[0]
    _check_images(images, input_shape=tuple(input_detail["shape_signature"][1:]), what="images")
    if labels.shape != (len(images),):
        raise ExportError(f"labels must have shape ({len(images)},) to match images, got {labels.shape}")
    if batch_size < 1:
        raise ExportError(f"batch_size must be at least 1, got {batch_size}")

    batch = min(batch_size, len(images))
    interpreter.resize_tensor_input(input_detail["index"], [batch, *input_detail["shape"][1:]])
    interpreter.allocate_tensors()
    input_detail = interpreter.get_input_details()[0]
    output_detail = interpreter.get_output_details()[0]

    predictions = np.empty(len(images), dtype=np.int64)
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        n = len(chunk)
        if n < batch:  # pad the last chunk instead of re-allocating the interpreter
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), chunk.dtype)])
        interpreter.set_tensor(input_detail["index"], _to_input(chunk, input_detail))
        interpreter.invoke()
        scores = interpreter.get_tensor(output_detail["index"])[:n]
        predictions[start:start + n] = np.argmax(scores, axis=-1)  # monotonic: no dequantising needed

    return {
        "accuracy": float(np.mean(predictions == labels)),
        "balanced_accuracy": _balanced_accuracy(labels, predictions),
        "predictions": predictions,
        "n_images": int(len(images)),
    }


def measure_latency(
    tflite_model: bytes,
    *,
    runs: int = 50,
    warmup: int = 10,
    num_threads: int = 1,
) -> dict[str, Any]:
    """Single-image latency of `tflite_model` under the LiteRT interpreter on this machine.

    Batch 1, a fixed random image of the model's input type, `warmup` untimed invokes, then
    `runs` timed invokes (invoke() only: set_tensor of one image is negligible and the same for
    every model). The default op resolver is used, which applies the XNNPACK delegate as the
    LiteRT runtime does on ARM edge devices. Returns latency_ms (median), latency_p90_ms,
    latency_mean_ms, runs, warmup and num_threads.
    """
    if runs < 1 or warmup < 0:
        raise ExportError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    interpreter = _interpreter(tflite_model, num_threads=num_threads)
    detail = interpreter.get_input_details()[0]
    pixels = np.random.default_rng(0).integers(0, 256, size=detail["shape"], dtype=np.uint8)
    interpreter.set_tensor(detail["index"], _to_input(pixels, detail))
    for _ in range(warmup):
        interpreter.invoke()
    times_ms = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times_ms[i] = (time.perf_counter() - start) * 1e3
    return {
        "latency_ms": float(np.median(times_ms)),
        "latency_p90_ms": float(np.percentile(times_ms, 90)),
        "latency_mean_ms": float(np.mean(times_ms)),
        "runs": runs,
        "warmup": warmup,
        "num_threads": num_threads,
    }


def _interpreter(tflite_model: bytes, *, num_threads: int):
    """A LiteRT interpreter with tensors allocated (tf.lite.Interpreter is deprecated)."""
    from ai_edge_litert.interpreter import Interpreter

    if num_threads < 1:
        raise ExportError(f"num_threads must be at least 1, got {num_threads}")
    try:
        interpreter = Interpreter(model_content=tflite_model, num_threads=num_threads)
    except ValueError as exc:
        raise ExportError(f"not a valid TFLite model: {exc}") from exc
    interpreter.allocate_tensors()
    return interpreter


def _to_input(pixels: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    """Raw pixels -> the input tensor's dtype, quantising with its scale and zero point if any."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return pixels.astype(dtype)
    scale, zero_point = detail["quantization"]
    if scale == 1.0 and zero_point == 0 and pixels.dtype == dtype:
        return pixels
    values = pixels.astype(np.float32)
    if scale:
        values = np.round(values / scale + zero_point)
    info = np.iinfo(dtype)
    return np.clip(values, info.min, info.max).astype(dtype)


def _balanced_accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    recalls = [np.mean(predictions[labels == c] == c) for c in np.unique(labels)]
    return float(np.mean(recalls))


# --------------------------------------------------------------------------------------------
# Everything the Pareto search needs per model


def measure_edge(
    model: keras.Model,
    *,
    train_images: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    runs: int = 50,
    warmup: int = 10,
    num_threads: int = 1,
) -> EdgeReport:
    """Convert to fp32/fp16/int8, score int8 on the test split, time int8 and fp32.

    metrics (flat, CSV-ready; sizes in MiB = bytes / 2**20):
      tflite_fp32_mb, tflite_fp16_mb, tflite_int8_mb    flatbuffer sizes
      int8_test_accuracy, int8_test_balanced_accuracy   the int8 model on test_images
      latency_ms, latency_p90_ms                        int8 model, batch 1, median / 90th pct
      fp32_latency_ms                                   fp32 model, same protocol (int8 speed-up)
      latency_num_threads                               thread count the latencies used
    protocol: how those were measured, for the model card. tflite_models: bytes by precision.
    """
    models = {
        "fp32": convert(model, precision="fp32"),
        "fp16": convert(model, precision="fp16"),
        "int8": convert(model, precision="int8", representative_images=train_images),
    }
    scores = evaluate_tflite(models["int8"], images=test_images, labels=test_labels, num_threads=num_threads)
    int8_latency = measure_latency(models["int8"], runs=runs, warmup=warmup, num_threads=num_threads)
    fp32_latency = measure_latency(models["fp32"], runs=runs, warmup=warmup, num_threads=num_threads)
    metrics: dict[str, float | int] = {
        **{f"tflite_{p}_mb": len(b) / _MIB for p, b in models.items()},
        "int8_test_accuracy": scores["accuracy"],
        "int8_test_balanced_accuracy": scores["balanced_accuracy"],
        "latency_ms": int8_latency["latency_ms"],
        "latency_p90_ms": int8_latency["latency_p90_ms"],
        "fp32_latency_ms": fp32_latency["latency_ms"],
        "latency_num_threads": num_threads,
    }
    protocol = {
        "size_unit": "MiB (bytes / 2**20) of the .tflite flatbuffer",
        "accuracy": f"int8 model on the test split ({scores['n_images']} images), raw uint8 pixels in",
        "latency": (
            f"int8 model, batch 1, median and 90th percentile of {runs} timed invoke() calls "
            f"after {warmup} warm-up calls, {num_threads} thread(s), LiteRT interpreter with its "
            "default op resolver (XNNPACK)"
        ),
        "latency_machine": f"{platform.machine()} {platform.processor() or platform.system()}, "
                           f"{os.cpu_count()} logical CPUs",
        "int8_calibration": f"{min(len(train_images), N_REPRESENTATIVE)} training images, seed 0",
        "int8_io": "uint8 raw pixels in (scale 1, zero point 0); uint8 softmax out (probability = q/256)",
    }
    return EdgeReport(metrics=metrics, protocol=protocol, tflite_models=models)


# --------------------------------------------------------------------------------------------
# Files: model + model card, written atomically


def export_model(
    model: keras.Model,
    *,
    fmt: str,
    out_dir: str | os.PathLike[str],
    card: Mapping[str, Any],
    representative_images: np.ndarray | None = None,
    tflite_model: bytes | None = None,
) -> list[Path]:
    """Write `model` in format `fmt` plus model_card.json into `out_dir`; return both paths.

    fmt: keras | tflite-fp32 | tflite-fp16 | tflite-int8 (int8 needs representative_images,
    unless `tflite_model` already holds the converted bytes, e.g. from measure_edge().tflite_models).
    card: what the caller knows, at least REQUIRED_CARD_KEYS (class_names in output order,
    metrics with the split in their names, training_config); add e.g. "edge": {**report.metrics,
    "how_measured": report.protocol}. Export adds the format, file, size, sha256, input/output
    description (shape, dtype, quantisation, preprocessing) and tool versions.
    Files are written to a temporary name and renamed, so a crash never leaves half a file.
    """
    _check_choice(fmt, FORMATS, what="format")
    _check_card(card)
    if fmt == "keras" and tflite_model is not None:
        raise ExportError("tflite_model bytes were given but format is 'keras'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / MODEL_FILES[fmt]

    if fmt == "keras":
        _save_keras_atomic(model, model_path)
    else:
        if tflite_model is None:
            tflite_model = convert(
                model, precision=fmt.removeprefix("tflite-"), representative_images=representative_images
            )
        _write_atomic(model_path, tflite_model)

    card_path = out / CARD_FILE
    io_card = _io_card(model, tflite_model=tflite_model)
    write_model_card(card_path, card={**card, **io_card}, model_file=model_path, fmt=fmt)
    return [model_path, card_path]


def write_model_card(
    path: str | os.PathLike[str],
    *,
    card: Mapping[str, Any],
    model_file: str | os.PathLike[str],
    fmt: str,
) -> None:
    """Write `card` as JSON to `path` (atomically), adding what can be read off `model_file`.

    Added: format, file (name, relative to the card), file_size_bytes, file_size_mb (MiB),
    sha256, tool_versions, created_utc. `card` must hold REQUIRED_CARD_KEYS and be
    JSON-serialisable (numpy scalars and arrays are converted).
    """
    _check_choice(fmt, FORMATS, what="format")
    _check_required_card_keys(card)
    model_file = Path(model_file)
    if not model_file.is_file():
        raise ExportError(f"model file {model_file} does not exist; write it before its card")
    data = model_file.read_bytes()
    full = {
        "format": fmt,
        "file": model_file.name,
        "file_size_bytes": len(data),
        "file_size_mb": len(data) / _MIB,
        "sha256": hashlib.sha256(data).hexdigest(),
        **card,
        "tool_versions": _tool_versions(),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        text = json.dumps(full, indent=2, default=_json_default)
    except TypeError as exc:
        raise ExportError(f"model card is not JSON-serialisable: {exc}") from exc
    _write_atomic(Path(path), (text + "\n").encode())


def _check_card(card: Mapping[str, Any]) -> None:
    clash = [k for k in _COMPUTED_CARD_KEYS if k in card]
    if clash:
        raise ExportError(f"model card keys {', '.join(clash)} are filled in by export; leave them out")
    _check_required_card_keys(card)
    try:  # fail before writing the model file, not after
        json.dumps(dict(card), default=_json_default)
    except TypeError as exc:
        raise ExportError(f"model card is not JSON-serialisable: {exc}") from exc


def _check_required_card_keys(card: Mapping[str, Any]) -> None:
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
    if missing:
        raise ExportError(f"model card lacks {', '.join(missing)} (required: {', '.join(REQUIRED_CARD_KEYS)})")


def _io_card(model: keras.Model, *, tflite_model: bytes | None) -> dict[str, Any]:
    """The card's input and output sections: what to feed the file and what comes out."""
    card: dict[str, Any] = {
        "input": {
            "shape": list(_model_input_shape(model)),
            "dtype": "float32",
            "value_range": [0, 255],
            "pixels": "raw RGB (or grayscale) pixels, no normalisation by the caller",
            "preprocessing_in_model": _preprocessing(model),
        },
        "output": {"meaning": "softmax probabilities, one per class_names entry", "dtype": "float32"},
    }
    if tflite_model is not None:
        interpreter = _interpreter(tflite_model, num_threads=1)
        for section, detail in (("input", interpreter.get_input_details()[0]),
                                ("output", interpreter.get_output_details()[0])):
            card[section]["dtype"] = np.dtype(detail["dtype"]).name
            card[section]["quantization"] = _quantization(detail)
    return card


def _quantization(detail: Mapping[str, Any]) -> dict[str, float] | None:
    scale, zero_point = detail["quantization"]
    if not scale:
        return None
    return {"scale": float(scale), "zero_point": int(zero_point),
            "real_value": "scale * (q - zero_point)"}


def _preprocessing(model: keras.Model) -> list[str]:
    """Rescaling layers inside the model (searched through nested models), or [] for none."""
    import keras

    found: list[str] = []

    def walk(layer: Any) -> None:
        if isinstance(layer, keras.layers.Rescaling):
            found.append(f"Rescaling(scale={float(np.ravel(layer.scale)[0]):.8g}, "
                         f"offset={float(np.ravel(layer.offset)[0]):.8g})")
        for child in getattr(layer, "layers", []):
            walk(child)

    for layer in model.layers:
        walk(layer)
    return found


def _save_keras_atomic(model: keras.Model, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".keras")
    os.close(fd)
    try:
        with warnings.catch_warnings():  # Keras 3.15 + numpy 2 warn inside save(); not ours to fix
            warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
            model.save(tmp)  # Keras insists on the .keras suffix, hence the suffix above
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _tool_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"bcpareto": __version__, "python": platform.python_version()}
    for package in ("tensorflow", "keras", "ai-edge-litert", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


# --------------------------------------------------------------------------------------------
# Checks on user input


def _check_choice(value: str, valid: tuple[str, ...], *, what: str) -> None:
    if value not in valid:
        raise ExportError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")


def _model_input_shape(model: keras.Model) -> tuple[int, ...]:
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        raise ExportError("expected a built Keras model with exactly one image input")
    shape = tuple(inputs[0].shape[1:])
    if len(shape) != 3 or any(d is None for d in shape):
        raise ExportError(f"expected a fixed (H, W, C) model input, got {shape}")
    return tuple(int(d) for d in shape)


def _check_images(images: np.ndarray, *, input_shape: tuple[int, ...], what: str) -> None:
    if not isinstance(images, np.ndarray) or images.ndim != 4:
        raise ExportError(f"{what} must be a 4-D numpy array (N, H, W, C), got {getattr(images, 'shape', type(images))}")
    if tuple(images.shape[1:]) != tuple(int(d) for d in input_shape):
        raise ExportError(f"{what} have shape {images.shape[1:]} per image but the model expects {tuple(input_shape)}")
    if len(images) == 0:
        raise ExportError(f"{what} is empty")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 255:
        raise ExportError(f"{what} must be raw pixels in [0, 255], got values in [{low:g}, {high:g}]")
    if images.dtype.kind == "f" and high <= 1.0 and len(images) > 1:
        raise ExportError(
            f"{what} look already rescaled (all values in [{low:g}, {high:g}]); pass raw pixels in "
            "[0, 255]: the model rescales them itself"
        )


def export_trial(trial: Any, *, fmt: str, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Export a finished search trial (search.TrialArtefacts) with its model card.

    The int8 file is the very one the search measured, so the card's int8 accuracy and latency
    describe exactly the bytes written. fp32/fp16 are converted from the saved Keras model.
    """
    import keras

    _check_choice(fmt, FORMATS, what="format")
    record = trial.record
    row = record["row"]
    if fmt == "tflite-int8" and trial.int8_model is None:
        raise ExportError(
            f"study {trial.study!r} has no int8 model for grid point {row['grid_id']} "
            "(it ran with edge metrics off); search again with --edge"
        )
    model = keras.saving.load_model(trial.keras_model, compile=False)
    card = {
        "class_names": list(record["classes"]),
        "study": trial.study,
        "grid_point": {k: row[k] for k in ("grid_id", "dense_layers", "neurons", "filters", "kernel_sizes")},
        "metrics": {
            "val_accuracy": row["val_accuracy"], "validation_split": row["val_split"],
            "test_accuracy": row["test_accuracy"],
            "test_balanced_accuracy": row["test_balanced_accuracy"],
            "test_split": row["test_split"], "n_test": row["n_test"],
            "test_confusion_matrix": record["confusion"],
            "n_params": row["n_params"], "macs_per_image": row["macs"],
        },
        "edge": {
            **{k: v for k, v in row.items() if k.startswith(("tflite_", "int8_", "latency", "fp32_lat"))},
            "how_measured": record.get("edge_protocol"),
        },
        "training_config": record["config"],
        "frame_to_input": _frame_to_input(record["config"]),
    }
    tflite = trial.int8_model.read_bytes() if fmt == "tflite-int8" else None
    return export_model(model, fmt=fmt, out_dir=out_dir, card=card, tflite_model=tflite)


def _frame_to_input(config: Mapping[str, Any]) -> str:
    """How a camera frame became the model's input in training: the device must do the same."""
    side = config.get("image_size")
    mode = "grayscale" if config.get("color_mode") == "grayscale" else "RGB"
    if config.get("cell_crop"):
        return (f"{mode}; a {config['cell_crop']}x{config['cell_crop']}-pixel window of the frame centred "
                f"on the stained cell (bcpareto.data.crop_cell), resized bilinearly to {side}x{side}")
    return f"{mode}; the whole frame resized bilinearly to {side}x{side}"
