"""Train and evaluate one GridPoint -> TrialResult (one CSV row). Knows nothing about Optuna.

Reads top to bottom: settings, data, model, fit, evaluate, measure, return.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import interrupts
from .backends import set_seed
from .config import TrainConfig
from .data import DataSplits, Split, eval_dataset, fit_input, training_dataset
from .dataset import CLASSES
from .errors import TrialFailed
from .gridspec import GridPoint
from .model import build_model, check_memory, cost, h5_size_mb
from .pausepoints import pause_point
from .runs import save_models

# The earlier version's columns, first and unchanged (names included) so its logs and ours line up.
SEED_COLUMNS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "model_size(MB)")


@dataclass(frozen=True)
class TrialResult:
    row: dict[str, Any]  # one metrics_log.csv row: SEED_COLUMNS first, then identifying columns
    confusion: list[list[int]]  # TEST confusion matrix, rows = true class (CLASSES order)
    model_path: Path | None
    edge_protocol: dict[str, Any] | None = None  # how the TFLite figures were measured
    # per epoch: validation accuracy and training seconds (fit only, validation pass included)
    curve: dict[str, list[float]] | None = None
    # class probabilities of the validation (out-of-fold) and TEST images, float model and int8
    # file, with the images' paths: what cvstats.py recomputes every statistic from
    predictions: Predictions | None = None


@dataclass(frozen=True)
class Predictions:
    val_paths: tuple[str, ...]
    val: np.ndarray  # (n_val, classes) float32
    test_paths: tuple[str, ...]
    test: np.ndarray  # (n_test, classes)
    val_int8: np.ndarray | None = None  # the int8 file's dequantised outputs, same images
    test_int8: np.ndarray | None = None


def make_optimizer(config: TrainConfig, *, steps_per_epoch: int) -> Any:
    import keras

    lr: Any = config.learning_rate
    if config.lr_schedule == "cosine":
        total = max(1, steps_per_epoch * config.epochs)
        warmup = steps_per_epoch * config.warmup_epochs
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate if warmup == 0 else 0.0,
            decay_steps=max(1, total - warmup),
            alpha=0.01,
            warmup_target=config.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(lr)


def compile_model(
    model: Any, config: TrainConfig, *, steps_per_epoch: int, jit_compile: bool | str = "auto",
    optimizer: Any = None,
) -> None:
    """``optimizer``: keep this one (and its state) instead of making one from the config."""
    import keras

    loss: Any = "sparse_categorical_crossentropy"
    accuracy: Any = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    if config.label_smoothing:
        loss = _SmoothedSparseCE(config.label_smoothing)
    if config.teacher is not None:  # training batches carry (label, teacher probabilities)
        from .distill import distillation_loss, label_accuracy

        loss = distillation_loss(temperature=config.distill_temperature, weight=config.distill_weight,
                                 label_smoothing=config.label_smoothing)
        accuracy = keras.metrics.MeanMetricWrapper(label_accuracy, name="accuracy")
    model.compile(
        optimizer=optimizer or make_optimizer(config, steps_per_epoch=steps_per_epoch),
        loss=loss,
        metrics=[accuracy],
        jit_compile=jit_compile,  # "auto" = Keras' default; XLA was 3.7x slower on this CPU
    )


def _SmoothedSparseCE(smoothing: float) -> Any:  # noqa: N802 - a loss factory
    import keras

    def loss(y_true: Any, y_pred: Any) -> Any:
        one_hot = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, [-1]), "int32"), 4)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=smoothing)

    return loss


def train_and_evaluate(
    point: GridPoint,
    *,
    config: TrainConfig,
    data: DataSplits,
    model_dir: Path | None = None,
    repeat: int = 0,
    verbose: int = 2,
    judge: Callable[[int, float, float], str | None] | None = None,
    initial_model: Any = None,
) -> TrialResult:
    """Train one grid point on data.train, validate on data.val, report on data.test.

    ``repeat`` r > 0 trains the same point again with another seed (``--repeats``): the spread
    between repeats is the run-to-run noise of its figures. Under cross-validation (``data.folds``
    set) repeat r trains fold r % K, with its own seed.

    ``judge(epoch, val_accuracy, size_mb)``, called after every epoch (counted from 1), may stop
    the training by returning the reason (successive halving). A stopped model is neither
    tested nor converted nor saved: its row has the figures of its last epoch,
    ``stopped_at_epoch`` and ``stop_reason``; its result has ``model_path`` None.

    ``initial_model``: train this (already trained) Keras model of the point further instead of a
    new one, with a fresh optimizer and schedule over ``config.epochs`` (``bcpareto refine``).

    A pruned point (``point.prune``) trains its parent for ``config.epochs`` (the judge sees these
    epochs), prunes it (prune.py) and fine-tunes the pruned model for ``config.finetune_epochs``
    with a fresh optimizer and schedule; the row is the pruned model's, with the parent's
    ``parent_n_params``, ``parent_val_accuracy`` and the schedule (``parent_epochs``,
    ``prune_finetune_epochs``; ``epochs`` counts both). An ``initial_model`` is not pruned again."""
    import keras

    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
    config = config.at(point)  # data must be decoded at this size (search.py keeps one per size)
    if data.train.images.shape[1] != config.image_size:
        raise TrialFailed(f"grid point {point.grid_id} takes {config.image_size} px images but was given "
                          f"{data.train.images.shape[1]} px ones")
    # settings
    started = time.perf_counter()
    fold = fold_of(data, repeat=repeat)
    if fold is not None:  # cross-validation: this model's fold holds out 1/K of TRAIN's smears
        data_folds = data.n_folds
        data = data.for_fold(fold)
    targets = None  # distillation: the teacher's probabilities on TRAIN (cached), before the seed
    if config.teacher is not None:
        from .distill import soft_targets, training_targets

        targets = training_targets(data.train.labels, soft_targets(config.teacher, data.train))
    seed = seed_of(point, config=config, repeat=repeat)
    set_seed(seed)
    measures = cost(point, image_size=config.image_size, channels=config.channels, padding=config.padding)
    check_memory(point, config=config)  # a point too big for this machine fails with the reason

    # data
    train, val = data.train, data.val
    batches = training_dataset(train, batch_size=config.batch_size, augment=config.augment,
                               seed=config.seed + 1000 * repeat, targets=targets)
    train_ds = fit_input(batches, epochs=config.epochs)
    val_ds = eval_dataset(val, batch_size=max(config.batch_size, 64))
    steps_per_epoch = len(batches)

    # model: measured the earlier way, as .h5 right after compile (a pruned point: its parent first)
    pruning = point.prune is not None and initial_model is None
    model = build_model(point.parent, config=config) if initial_model is None else initial_model
    compile_model(model, config, steps_per_epoch=steps_per_epoch)
    size_mb = h5_size_mb(model)

    # fit
    callbacks: list[Any] = [
        keras.callbacks.TerminateOnNaN(),
        # a Ctrl-C whose KeyboardInterrupt a finalizer swallowed is raised again here; the
        # pause point lets a test signal the search in the middle of fit
        keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: _batch_end(batch)),
    ]
    curve = _Curve()
    callbacks.append(keras.callbacks.LambdaCallback(on_epoch_begin=curve.begin, on_epoch_end=curve.end))
    finetune_callbacks = list(callbacks)  # a pruned model's fine-tuning: not judged
    stopped: list[tuple[int, str]] = []
    if judge is not None:
        def on_epoch_end(epoch: int, logs: Any = None) -> None:
            reason = judge(epoch + 1, float((logs or {}).get("val_accuracy", math.nan)), size_mb)
            if reason:
                stopped.append((epoch + 1, reason))
                model.stop_training = True

        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end))
    pause_point("train")
    history = model.fit(
        train_ds, validation_data=val_ds, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
        verbose=verbose, callbacks=callbacks,
    ).history
    pruned: dict[str, Any] = {}
    if pruning and not stopped:
        _check_finite(history, point)
        model, history, size_mb, pruned = _prune_and_finetune(
            model, point, config=config, batches=batches, val_ds=val_ds, parent_history=history,
            callbacks=finetune_callbacks, verbose=verbose)
    last = {k: float(v[-1]) for k, v in history.items()}
    if config.teacher is not None:  # saved like any model: no custom loss that a plain load_model cannot find
        compile_model(model, replace(config, teacher=None), steps_per_epoch=steps_per_epoch,
                      optimizer=model.optimizer)
    _check_finite(history, point)

    common = common_columns(point, repeat=repeat, fold=fold, n_folds=data_folds if fold is not None else 0,
                            seed=seed, measures=measures)
    common.update({k: v for k, v in pruned.items() if k != "epochs"})
    if stopped:
        keras.backend.clear_session()
        return TrialResult(row={
            "train_loss": last["loss"], "train_accuracy": last["accuracy"], "val_loss": last["val_loss"],
            "val_accuracy": last["val_accuracy"], "model_size(MB)": size_mb, **common,
            "val_split": data.val_source, "n_train": len(train), "n_val": len(val),
            "epochs": len(history["loss"]), "image_size": config.image_size, "preset": config.name,
            "stopped_at_epoch": stopped[0][0], "stop_reason": stopped[0][1],
            "train_seconds": round(sum(curve.seconds), 2),
            "wall_seconds": round(time.perf_counter() - started, 2),
        }, confusion=[], model_path=None, curve=curve.as_dict())

    result = finish_trial(model, point, config=config, data=data, last=last,
                          epochs=pruned.get("epochs", len(history["loss"])),
                          curve=curve, size_mb=size_mb, common=common, started=started,
                          model_dir=model_dir, repeat=repeat)
    keras.backend.clear_session()
    return result


def _check_finite(history: dict[str, list[float]], point: GridPoint) -> None:
    if not all(math.isfinite(float(history.get(k, [math.nan])[-1])) for k in ("loss", "val_loss")):
        raise TrialFailed(
            f"grid point {point.grid_id}: the loss became NaN/inf in epoch {len(history['loss'])}; "
            "try a lower learning_rate"
        )


def _prune_and_finetune(
    parent: Any, point: GridPoint, *, config: TrainConfig, batches: Any, val_ds: Any,
    parent_history: dict[str, list[float]], callbacks: list[Any], verbose: int,
) -> tuple[Any, dict[str, list[float]], float, dict[str, Any]]:
    """The trained parent -> the pruned model fine-tuned on the same batches, its history, its
    .h5 size and the row's columns of the parent and the schedule."""
    from .prune import prune_model

    model = prune_model(parent, point, config=config)
    finetune = replace(config, epochs=config.finetune_epochs, warmup_epochs=0)
    compile_model(model, finetune, steps_per_epoch=len(batches))
    size_mb = h5_size_mb(model)
    history = model.fit(
        fit_input(batches, epochs=finetune.epochs), validation_data=val_ds, epochs=finetune.epochs,
        steps_per_epoch=len(batches), verbose=verbose, callbacks=callbacks,
    ).history
    columns = {
        "parent_n_params": int(parent.count_params()),
        "parent_val_accuracy": float(parent_history["val_accuracy"][-1]),
        "parent_epochs": len(parent_history["loss"]),
        "prune_finetune_epochs": finetune.epochs,
        "epochs": len(parent_history["loss"]) + len(history["loss"]),
    }
    return model, history, size_mb, columns


def seed_of(point: GridPoint, *, config: TrainConfig, repeat: int) -> int:
    """The seed model ``repeat`` of ``point`` trains with (its weights, dropout and batch order)."""
    return config.seed + point.grid_id + 1000 * repeat


def fold_of(data: DataSplits, *, repeat: int) -> int | None:
    """The fold repeat r holds out under cross-validation (r % K), else None."""
    return repeat % data.n_folds if data.folds is not None else None


def common_columns(point: GridPoint, *, repeat: int, fold: int | None, n_folds: int, seed: int,
                   measures: Any) -> dict[str, Any]:
    """The row's columns that identify the model: the point, repeat, fold, seed, cost, backend."""
    import keras

    return {**point.params(), "repeat": repeat,
            **({"fold": fold, "n_folds": n_folds} if fold is not None else {}),
            "seed": seed, "n_params": measures.n_params,
            "float32_mb": measures.float32_mb, "macs": measures.macs, "backend": keras.backend.backend()}


def finish_trial(
    model: Any, point: GridPoint, *, config: TrainConfig, data: DataSplits, last: dict[str, float],
    epochs: int, curve: _Curve, size_mb: float, common: dict[str, Any], started: float,
    model_dir: Path | None, repeat: int,
) -> TrialResult:
    """A trained model -> its TrialResult: TEST and validation predictions, edge figures, saved
    files, the CSV row. ``data`` is the model's own split (one fold's, under cross-validation);
    ``last`` its last epoch's train_loss/accuracy (``loss``, ``accuracy``) and ``val_loss``/
    ``val_accuracy``. Shared by train_and_evaluate and the packed trainer (packed.py)."""
    train, val = data.train, data.val
    # evaluate on held-out TEST (and per class), from the trained model; keep the probabilities
    eval_batch = max(config.batch_size, 64)
    test = _evaluate(model, data.test, batch_size=eval_batch)
    val_probabilities = _probabilities(model, val, batch_size=eval_batch)

    # measure the deployable artefact: TFLite sizes, int8 accuracy on TEST, CPU latency
    edge = val_int8 = None
    if config.edge_metrics:
        from .edge import evaluate_tflite, measure_edge

        pause_point("convert")
        edge = measure_edge(
            model, train_images=train.images, test_images=data.test.images,
            test_labels=data.test.labels, runs=config.latency_runs, num_threads=1,
            strip_names=config.strip_tflite_names, per_tensor=config.int8_per_tensor,
        )
        val_int8 = evaluate_tflite(edge.tflite_models["int8"], images=val.images, labels=val.labels,
                                   num_threads=1)["probabilities"] if len(val) else None

    # save
    model_path = None
    if model_dir is not None:
        model_path = save_models(
            model_dir, point.grid_id, repeat=repeat, model=model,
            int8=edge.tflite_models["int8"] if edge else None,
        )

    row: dict[str, Any] = {
        "train_loss": last["loss"],
        "train_accuracy": last["accuracy"],
        "val_loss": last["val_loss"],
        "val_accuracy": last["val_accuracy"],
        "model_size(MB)": size_mb,
        **common,
        "test_accuracy": test["accuracy"],
        "test_balanced_accuracy": test["balanced_accuracy"],
        **{f"test_recall_{c.lower()}": r for c, r in zip(CLASSES, test["recall"])},
        "val_split": data.val_source,
        "test_split": data.test_source,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(data.test),
        "epochs": epochs,
        "image_size": config.image_size,
        "color_mode": config.color_mode,
        "cell_crop": config.cell_crop,
        "batch_size": config.batch_size,
        "preset": config.name,
        **({"teacher": config.teacher.label, "distill_weight": config.distill_weight,
            "distill_temperature": config.distill_temperature} if config.teacher is not None else {}),
        **(edge.metrics if edge is not None else {}),
        "train_seconds": round(sum(curve.seconds), 2),
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    return TrialResult(
        row=row, confusion=test["confusion"], model_path=model_path,
        edge_protocol=edge.protocol if edge is not None else None, curve=curve.as_dict(),
        predictions=Predictions(
            val_paths=val.paths, val=val_probabilities, test_paths=data.test.paths,
            test=test["probabilities"], val_int8=val_int8,
            test_int8=edge.int8_test_probabilities if edge is not None else None,
        ),
    )


class _Curve:
    """Every epoch's validation accuracy and seconds (the learning curve a halving judges), and
    Keras's own loss, accuracy and val_loss of that epoch (what --track logs per epoch)."""

    LOGGED = ("loss", "accuracy", "val_loss")

    def __init__(self) -> None:
        self.val_accuracy: list[float] = []
        self.seconds: list[float] = []
        self.logged: dict[str, list[float]] = {key: [] for key in self.LOGGED}
        self._start = 0.0

    def begin(self, epoch: int, logs: Any = None) -> None:
        self._start = time.perf_counter()

    def end(self, epoch: int, logs: Any = None) -> None:
        self.seconds.append(round(time.perf_counter() - self._start, 3))
        self.val_accuracy.append(float((logs or {}).get("val_accuracy", math.nan)))
        for key, values in self.logged.items():
            values.append(float((logs or {}).get(key, math.nan)))

    def as_dict(self) -> dict[str, list[float]]:
        extra = {key: list(v) for key, v in self.logged.items() if not all(math.isnan(x) for x in v)}
        return {"val_accuracy": list(self.val_accuracy), "seconds": list(self.seconds), **extra}


def _batch_end(batch: int) -> None:
    if batch == 0:  # after the first step, still inside fit (a tiny test epoch has one batch)
        pause_point("fit")
    interrupts.check()


def _probabilities(model: Any, split: Split, *, batch_size: int) -> np.ndarray:
    if not len(split):
        return np.zeros((0, len(CLASSES)), dtype=np.float32)
    return np.asarray(model.predict(eval_dataset(split, batch_size=batch_size), verbose=0), dtype=np.float32)


def _evaluate(model: Any, split: Split, *, batch_size: int) -> dict[str, Any]:
    """Accuracy, balanced accuracy (mean per-class recall), recalls, confusion matrix, probabilities."""
    probabilities = _probabilities(model, split, batch_size=batch_size)
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
    np.add.at(confusion, (split.labels, predicted), 1)
    recall = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    return {
        "accuracy": float(confusion.trace() / max(confusion.sum(), 1)),
        "balanced_accuracy": float(recall.mean()),
        "recall": [float(r) for r in recall],
        "confusion": confusion.tolist(),
        "probabilities": probabilities,
    }


def time_train_step(point: GridPoint, *, config: TrainConfig, steps: int = 3) -> float:
    """Seconds per training step of this point at the preset's batch size (after warm-up)."""
    import keras

    config = config.at(point)
    check_memory(point, config=config)
    model = build_model(point, config=config)
    compile_model(model, config, steps_per_epoch=100)
    shape = (config.batch_size, config.image_size, config.image_size, config.channels)
    x = np.random.default_rng(0).uniform(0, 255, shape).astype("float32")
    y = np.arange(config.batch_size) % 4
    model.train_on_batch(x, y)  # traces and compiles the step
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    seconds = (time.perf_counter() - start) / steps
    keras.backend.clear_session()
    return seconds
