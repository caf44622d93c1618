"""Distillation: find the teacher, cache its softened targets on TRAIN, and the student's loss.

A student trains on y = concat(one-hot label, teacher probabilities), shape (N, 8), which the
input pipeline gathers with the same index as the image (data.training_dataset), so an augmented
image keeps its own image's soft target. The teacher runs once per (teacher file, TRAIN images):
its probabilities are cached as .npy under cache.cache_dir(); every later student reads them.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .config import Teacher, TrainConfig
from .cache import cache_dir, write_atomic
from .data import Split
from .errors import ArtefactError, BcParetoError, ConfigError
from .model import N_CLASSES

EPSILON = 1e-7  # probabilities are clipped here before a log, as Keras' cross-entropy does


def resolve_teacher(spec: str, *, run_dir: Path) -> Teacher:
    """``--teacher SPEC``: GRID_ID or STUDY/GRID_ID finished in run_dir, or a .keras file's path.

    A bare grid id names the one study's trial that was not itself distilled, so rerunning
    ``--teacher 0`` finds the teacher, not the students' own grid point 0; when several such
    studies hold it, STUDY/GRID_ID picks one."""
    from .runs import find_trial, studies_with_trial

    spec = spec.strip()
    study, _, gid = spec.rpartition("/")
    by_id = gid.isdigit() and not spec.endswith(".keras")
    if by_id:
        try:
            if not study:
                studies = studies_with_trial(run_dir, int(gid))
                plain = [s for s in studies if not _distilled(run_dir, int(gid), s)]
                choices = plain or studies
                if len(choices) > 1:
                    raise ConfigError(
                        f"--teacher {spec}: grid point {gid} was trained in {len(choices)} studies under "
                        f"{Path(run_dir) / 'runs'}; name one: "
                        + ", ".join(f"--teacher {s}/{gid}" for s in choices)
                    )
                study = choices[0] if choices else ""
            trial = find_trial(run_dir, int(gid), study=study or None)
            trial.check()  # the teacher's file is the one its record describes, and readable
        except ArtefactError as exc:
            raise ConfigError(f"--teacher {spec}: {exc}") from None
        except ConfigError:
            raise
        except BcParetoError as exc:
            raise ConfigError(f"--teacher {spec}: {exc}; or pass a .keras file's path") from None
        path = trial.keras_model
    else:
        path = Path(spec)
        if path.suffix != ".keras" or not path.is_file():
            raise ConfigError(
                f"--teacher {spec}: expected the grid id of a finished trial in {run_dir} "
                "or the path of an existing .keras file"
            )
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"--teacher {spec}: {path} is not a Keras model file (.keras is a zip)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return Teacher(label=spec if by_id else path.name,
                   path=str(path.resolve()), sha256=digest)


def _distilled(run_dir: Path, grid_id: int, study: str) -> bool:
    """Whether that study's trial of grid_id was itself trained with a teacher."""
    from .runs import find_trial

    return bool(find_trial(run_dir, grid_id, study=study).record.get("config", {}).get("teacher"))


def check_teacher(teacher: Teacher, *, config: TrainConfig) -> None:
    """The teacher takes the student's input (image_size, channels) and has 4 outputs: checked
    from the file's config.json, so no TensorFlow is needed before anything is created."""
    shape = teacher_input_shape(Path(teacher.path))
    want = (config.image_size, config.image_size, config.channels)
    if shape is not None and shape != want:
        raise ConfigError(
            f"--teacher {teacher.label}: the teacher takes {shape[0]}x{shape[1]}x{shape[2]} inputs but "
            f"the students train on {want[0]}x{want[1]}x{want[2]} ({config.color_mode}); train the "
            "teacher at the students' image size and colour mode, or pass --image-size"
        )


def teacher_input_shape(path: Path) -> tuple[int, ...] | None:
    """(height, width, channels) of a .keras file's first InputLayer; None if not found there."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    for layer in config.get("config", {}).get("layers", []):
        if layer.get("class_name") == "InputLayer":
            shape = layer.get("config", {}).get("batch_shape")
            return tuple(shape[1:]) if shape else None
    return None


def soft_targets(teacher: Teacher, split: Split, *, batch_size: int = 256) -> np.ndarray:
    """The teacher's probabilities (N, 4) on ``split``'s images, from the cache when there.

    Keyed by the teacher's digest, the split's paths and its images (a digest of the decoded
    arrays, so another crop or size of the same files is another entry)."""
    path = cache_dir() / "teacher" / f"{teacher.sha256}-{_split_key(split)}.npy"
    try:
        cached = np.load(path)
        if cached.shape == (len(split), N_CLASSES):
            return cached
    except (OSError, ValueError):
        pass
    probs = _teacher_probabilities(teacher, split.images, batch_size=batch_size)
    _save_atomic(path, probs)
    return probs


def _split_key(split: Split) -> str:
    digest = hashlib.sha1("\n".join(split.paths).encode())
    digest.update(str(split.images.shape).encode())
    digest.update(np.ascontiguousarray(split.images).data)
    return digest.hexdigest()[:16]


def _teacher_probabilities(teacher: Teacher, images: np.ndarray, *, batch_size: int) -> np.ndarray:
    import keras

    from .runs import load_keras

    model = load_keras(Path(teacher.path))
    if tuple(model.input_shape[1:]) != images.shape[1:] or model.output_shape[-1] != N_CLASSES:
        raise BcParetoError(
            f"teacher {teacher.label} ({teacher.path}) maps {model.input_shape[1:]} to "
            f"{model.output_shape[1:]}; the students need {images.shape[1:]} -> ({N_CLASSES},)"
        )
    probs = _predict(model, images, batch_size=batch_size)
    keras.backend.clear_session()  # the student starts from a clean session, as without a teacher
    return probs


def _predict(model: Any, images: np.ndarray, *, batch_size: int) -> np.ndarray:
    """The teacher's forward pass (raw 0-255 pixels in, as every exported model takes them)."""
    probs = model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0)
    return np.asarray(probs, dtype=np.float32)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """A cache entry appears whole or not at all (cache.write_atomic); an unwritable cache only
    costs recomputing."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, buffer.getvalue())
    except OSError:
        pass


def training_targets(labels: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """y for a distilled student: concat(one-hot label, teacher probabilities), float32 (N, 8)."""
    return np.concatenate([np.eye(N_CLASSES, dtype=np.float32)[labels], soft.astype(np.float32)], axis=1)


def distillation_loss(*, temperature: float, weight: float, label_smoothing: float = 0.0) -> Any:
    """(1 - w) CE(label, student) + w T^2 KL(softmax(log teacher / T) || softmax(log student / T)).

    The student outputs softmax probabilities (the export contract), so both sides are tempered
    from log-probabilities; log p = logits - logsumexp(logits), a per-row constant that the
    softmax removes, so this equals tempering the logits. T^2 keeps the soft term's gradient
    scale independent of T (Hinton et al. 2015). y_true of width 8 is a training batch
    (training_targets); any other y_true is a plain label (validation): cross-entropy only, so
    val_loss means what it means without a teacher.
    """
    import keras
    from keras import ops

    def loss(y_true: Any, y_pred: Any) -> Any:
        if y_true.shape[-1] != 2 * N_CLASSES:
            one_hot = ops.one_hot(ops.cast(ops.reshape(y_true, [-1]), "int32"), N_CLASSES)
            return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=label_smoothing)
        one_hot, teacher = y_true[:, :N_CLASSES], y_true[:, N_CLASSES:]
        hard = keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=label_smoothing)
        log_t = ops.log_softmax(ops.log(ops.clip(teacher, EPSILON, 1.0)) / temperature, axis=-1)
        log_s = ops.log_softmax(ops.log(ops.clip(y_pred, EPSILON, 1.0)) / temperature, axis=-1)
        soft = ops.sum(ops.exp(log_t) * (log_t - log_s), axis=-1)
        return (1.0 - weight) * hard + weight * temperature**2 * soft

    return loss


def label_accuracy(y_true: Any, y_pred: Any) -> Any:
    """Accuracy on the labels, whether y_true is a plain label or training_targets' (N, 8)."""
    from keras import ops

    if y_true.shape[-1] == 2 * N_CLASSES:
        labels = ops.argmax(y_true[:, :N_CLASSES], axis=-1)
    else:
        labels = ops.cast(ops.reshape(y_true, [-1]), "int64")
    return ops.cast(ops.equal(ops.argmax(y_pred, axis=-1), ops.cast(labels, "int64")), "float32")
