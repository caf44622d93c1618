"""Edge measurements of a trained model: TFLite conversion, int8 accuracy, CPU latency.

Data flow for one trained model (trial.py calls measure_edge after fit/evaluate):

    keras.Model --convert()--> .tflite bytes (fp32 / fp16 / int8)
                 --evaluate_tflite()--> accuracy of the bytes the device would run
                 --measure_latency()--> single-image latency under LiteRT
    measure_edge() does all three and gives flat CSV columns. Writing files for deployment is
    export.py's job.

Contract with the training code: models take raw pixels as float32 in [0, 255], shape (H, W, C),
carry their own preprocessing (a keras.layers.Rescaling layer, or none for the legacy preset) and
end in a softmax over the classes. Images arrive as uint8 arrays (N, H, W, C), labels as ints (N,).

Sizes are in MiB and named `_mb` (bytes / 2**20), matching how the rest of bcpareto reports
model size. TensorFlow and LiteRT are imported inside functions so `bcpareto --help` starts fast.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from .errors import ExportError
from .quiet import native_stderr

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras

PRECISIONS = ("fp32", "fp16", "int8")
N_REPRESENTATIVE = 200  # TFLite docs suggest ~100-500 calibration images; 200 keeps int8 conversion to seconds
EVAL_BATCH = 64  # images per interpreter call in evaluate_tflite; batch size does not change the results
MIB = 2**20


@dataclass(frozen=True)
class EdgeReport:
    """What measure_edge found: flat CSV columns, how they were measured, and the converted bytes."""

    metrics: dict[str, float | int]
    protocol: dict[str, Any]
    tflite_models: dict[str, bytes] = field(repr=False)
    int8_test_probabilities: np.ndarray | None = field(default=None, repr=False)  # (N, classes)


def convert(
    model: keras.Model,
    *,
    precision: str,
    representative_images: np.ndarray | None = None,
    strip_names: bool = False,
    per_tensor: bool = False,
) -> bytes:
    """Convert a Keras model to a TFLite flatbuffer.

    ``strip_names``: drop tensor, signature and metadata strings (TensorFlow's own
    flatbuffer_utils.strip_strings): 4.5-6.5 KB less per file (5 small nets measured), about a
    quarter of a 23 KB file; the interpreter then reads inputs and outputs by index
    (get_input_details), as bcpareto and its exported preprocess.py do, not by signature name.
    ``per_tensor``: int8 weights with one scale and zero point per tensor instead of one per
    output channel (the converter's ``_experimental_disable_per_channel``).

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
    return convert_all(model, precisions=(precision,), representative_images=representative_images,
                       strip_names=strip_names, per_tensor=per_tensor)[precision]


def convert_all(
    model: keras.Model,
    *,
    precisions: tuple[str, ...] = PRECISIONS,
    representative_images: np.ndarray | None = None,
    strip_names: bool = False,
    per_tensor: bool = False,
) -> dict[str, bytes]:
    """``convert`` for several precisions from one SavedModel export: the same bytes as one
    ``convert`` call per precision (tested), without writing the inference graph out each time."""
    for precision in precisions:
        check_choice(precision, PRECISIONS, what="precision")
    input_shape = model_input_shape(model)
    if "int8" in precisions:
        if representative_images is None or len(representative_images) == 0:
            raise ExportError(
                "int8 conversion needs representative_images: 100-200 raw training images "
                f"of shape (N, {', '.join(map(str, input_shape))}) to calibrate activation ranges"
            )
        _check_images(representative_images, input_shape=input_shape, what="representative_images")

    import tensorflow as tf

    flatbuffers: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="bcpareto-savedmodel-") as saved_model_dir:
        _export_saved_model(model, saved_model_dir)
        for precision in precisions:
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
                converter._experimental_disable_per_channel = per_tensor  # noqa: SLF001 - no public switch
            try:
                with native_stderr():  # the converter's "fully_quantize: 0, ..." line, unless -v
                    flatbuffer = bytes(converter.convert())
            except Exception as exc:  # the converter raises several unrelated types (ConverterError, ...)
                raise ExportError(f"TFLite {precision} conversion failed: {exc}") from exc
            flatbuffers[precision] = _strip_names(flatbuffer) if strip_names else flatbuffer
    return flatbuffers


def _strip_names(flatbuffer: bytes) -> bytes:
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    flatbuffer_utils.strip_strings(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


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
    (int64 array, N), probabilities (float32, (N, classes): the output dequantised with its own
    scale and zero point) and n_images.
    """
    labels = np.asarray(labels)
    interpreter = load_interpreter(tflite_model, num_threads=num_threads)
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
    probabilities = np.empty((len(images), int(output_detail["shape"][-1])), dtype=np.float32)
    scale, zero_point = output_detail.get("quantization", (0.0, 0))
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        n = len(chunk)
        if n < batch:  # pad the last chunk instead of re-allocating the interpreter
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), chunk.dtype)])
        interpreter.set_tensor(input_detail["index"], _to_input(chunk, input_detail))
        interpreter.invoke()
        scores = interpreter.get_tensor(output_detail["index"])[:n]
        predictions[start:start + n] = np.argmax(scores, axis=-1)  # monotonic: no dequantising needed
        probabilities[start:start + n] = ((scores.astype(np.float32) - zero_point) * scale if scale
                                          else scores)

    return {
        "accuracy": float(np.mean(predictions == labels)),
        "balanced_accuracy": _balanced_accuracy(labels, predictions),
        "predictions": predictions,
        "probabilities": probabilities,
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
    interpreter = load_interpreter(tflite_model, num_threads=num_threads)
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


def load_interpreter(tflite_model: bytes, *, num_threads: int):
    """A LiteRT interpreter with tensors allocated (tf.lite.Interpreter is deprecated)."""
    from ai_edge_litert.interpreter import Interpreter

    if num_threads < 1:
        raise ExportError(f"num_threads must be at least 1, got {num_threads}")
    with native_stderr():  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate", unless -v
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


def measure_edge(
    model: keras.Model,
    *,
    train_images: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    runs: int = 50,
    warmup: int = 10,
    num_threads: int = 1,
    strip_names: bool = False,
    per_tensor: bool = False,
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
    models = convert_all(model, precisions=("fp32", "fp16", "int8"), representative_images=train_images,
                         strip_names=strip_names, per_tensor=per_tensor)
    scores = evaluate_tflite(models["int8"], images=test_images, labels=test_labels, num_threads=num_threads)
    int8_latency = measure_latency(models["int8"], runs=runs, warmup=warmup, num_threads=num_threads)
    fp32_latency = measure_latency(models["fp32"], runs=runs, warmup=warmup, num_threads=num_threads)
    metrics: dict[str, float | int] = {
        **{f"tflite_{p}_mb": len(b) / MIB for p, b in models.items()},
        "int8_test_accuracy": scores["accuracy"],
        "int8_test_balanced_accuracy": scores["balanced_accuracy"],
        "latency_ms": int8_latency["latency_ms"],
        "latency_p90_ms": int8_latency["latency_p90_ms"],
        "fp32_latency_ms": fp32_latency["latency_ms"],
        "latency_num_threads": num_threads,
    }
    protocol = {
        "size_unit": "MiB (bytes / 2**20) of the .tflite flatbuffer"
                     + (", tensor and signature names stripped" if strip_names else "")
                     + (", int8 weights quantised per tensor" if per_tensor else ""),
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
    return EdgeReport(metrics=metrics, protocol=protocol, tflite_models=models,
                      int8_test_probabilities=scores["probabilities"])


def check_choice(value: str, valid: tuple[str, ...], *, what: str) -> None:
    if value not in valid:
        raise ExportError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")


def model_input_shape(model: keras.Model) -> tuple[int, ...]:
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
