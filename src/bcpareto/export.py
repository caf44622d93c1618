"""`bcpareto export`: one deployable model file plus model_card.json, written atomically.

The card says what the outputs mean (class names in order), what to feed the file (shape, dtype,
quantisation, preprocessing inside the model, how a camera frame becomes the input), how good the
model is and on which split, and how it was trained. The measurements come from edge.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from . import __version__
from .edge import MIB, check_choice, convert, load_interpreter, model_input_shape
from .errors import ExportError
from .gridspec import OPTIONAL_COLUMNS
from .runs import load_keras, save_keras_atomic, write_atomic

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras

FORMATS = ("keras", "tflite-fp32", "tflite-fp16", "tflite-int8")
MODEL_FILES = {
    "keras": "model.keras",
    "tflite-fp32": "model_fp32.tflite",
    "tflite-fp16": "model_fp16.tflite",
    "tflite-int8": "model_int8.tflite",
}
CARD_FILE = "model_card.json"
PREPROCESS_FILE = "preprocess.py"  # written beside every exported model
# Keys the caller must put in the card: what the outputs mean, how good the model is, how it was made.
REQUIRED_CARD_KEYS = ("class_names", "metrics", "training_config")
# Keys export computes from the written file; a caller's value would silently disagree, so refuse it.
_COMPUTED_CARD_KEYS = (
    "format", "file", "file_size_bytes", "file_size_mb", "sha256", "input", "output",
    "tool_versions", "created_utc",
)



def export_model(
    model: keras.Model,
    *,
    fmt: str,
    out_dir: str | os.PathLike[str],
    card: Mapping[str, Any],
    representative_images: np.ndarray | None = None,
    tflite_model: bytes | None = None,
    strip_names: bool = False,
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
    check_choice(fmt, FORMATS, what="format")
    _check_card(card)
    if fmt == "keras" and tflite_model is not None:
        raise ExportError("tflite_model bytes were given but format is 'keras'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / MODEL_FILES[fmt]

    if fmt == "keras":
        save_keras_atomic(model, model_path)
    else:
        if tflite_model is None:
            tflite_model = convert(
                model, precision=fmt.removeprefix("tflite-"), representative_images=representative_images,
                strip_names=strip_names,
            )
        write_atomic(model_path, tflite_model)

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
    check_choice(fmt, FORMATS, what="format")
    _check_required_card_keys(card)
    model_file = Path(model_file)
    if not model_file.is_file():
        raise ExportError(f"model file {model_file} does not exist; write it before its card")
    data = model_file.read_bytes()
    full = {
        "format": fmt,
        "file": model_file.name,
        "file_size_bytes": len(data),
        "file_size_mb": len(data) / MIB,
        "sha256": hashlib.sha256(data).hexdigest(),
        **card,
        "tool_versions": _tool_versions(),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        text = json.dumps(full, indent=2, default=_json_default)
    except TypeError as exc:
        raise ExportError(f"model card is not JSON-serialisable: {exc}") from exc
    write_atomic(Path(path), (text + "\n").encode())


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
            "shape": list(model_input_shape(model)),
            "dtype": "float32",
            "value_range": [0, 255],
            "pixels": "raw RGB (or grayscale) pixels, no normalisation by the caller",
            "preprocessing_in_model": _preprocessing(model),
        },
        "output": {"meaning": "softmax probabilities, one per class_names entry", "dtype": "float32"},
    }
    if tflite_model is not None:
        interpreter = load_interpreter(tflite_model, num_threads=1)
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


def export_trial(trial: Any, *, fmt: str, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Export a finished search trial (search.TrialArtefacts) with its model card.

    The int8 file is the very one the search measured, so the card's int8 accuracy and latency
    describe exactly the bytes written (the trial's files are checked against the digests its
    record holds first: runs.TrialArtefacts.check). fp32/fp16 are converted from the saved
    Keras model.
    """
    check_choice(fmt, FORMATS, what="format")
    trial.check()  # a replaced, truncated or missing file: nothing written
    record = trial.record
    row = record["row"]
    if fmt == "tflite-int8" and trial.int8_model is None:
        raise ExportError(
            f"study {trial.study!r} has no int8 model for grid point {row['grid_id']} "
            "(it ran with edge metrics off); search again with --edge"
        )
    model = load_keras(trial.keras_model)
    card = {
        "class_names": list(record["classes"]),
        "study": trial.study,
        "grid_point": {k: row[k] for k in ("grid_id", "dense_layers", "neurons", "filters", "kernel_sizes",
                                            *OPTIONAL_COLUMNS) if k in row},
        "metrics": {
            "how_to_read": (
                f"val_accuracy ({row['val_split']}) is what the model was chosen on; test_accuracy "
                f"and the edge section's int8_test_accuracy ({row['test_split']}) are its held-out "
                "figures: quote those" if row["val_split"] != "TEST" else
                "the earlier protocol: TEST doubled as validation data, so no figure here is held out"
            ),
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
    if "n_folds" in row and row["n_folds"] == row["n_folds"]:  # a fold model of cross-validation
        from .cvreport import card_section, judge_folder

        folder = Path(trial.keras_model).parent
        card["cross_validation"] = card_section(judge_folder(folder), int(row["grid_id"]),
                                                fold=int(row["fold"]) if "fold" in row else None)
    tflite = trial.int8_model.read_bytes() if fmt == "tflite-int8" else None
    paths = export_model(model, fmt=fmt, out_dir=out_dir, card=card, tflite_model=tflite,
                         strip_names=bool(record["config"].get("strip_tflite_names", False)))
    reference = Path(out_dir) / PREPROCESS_FILE  # the frame -> input code training used, verbatim
    write_atomic(reference, (Path(__file__).parent / "preprocess.py").read_bytes())
    return [*paths, reference]


def _frame_to_input(config: Mapping[str, Any]) -> str:
    """How a camera frame became the model's input in training: the device must do the same."""
    side = config.get("image_size")
    mode = "grayscale" if config.get("color_mode") == "grayscale" else "RGB"
    reference = f" Reference code (numpy and Pillow only): {PREPROCESS_FILE} beside this card."
    if config.get("cell_crop"):
        crop = config["cell_crop"]
        return (
            f"{mode}; a {crop}x{crop}-pixel window of the frame centred on the stained cell, resized "
            f"bilinearly to {side}x{side}. The cell: on the frame reduced 4x by averaging 4x4 blocks, "
            "pixels with blue - red > 25 and green < 170 are stain; the centre of the 64x64-source-pixel "
            "box holding the most stain pixels (first in row-major order on ties) is the cell's centre "
            "(no stain: the frame's centre); the window is shifted to stay inside the frame."
            + reference
        )
    return f"{mode}; the whole frame resized bilinearly to {side}x{side}." + reference
