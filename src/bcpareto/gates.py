"""What decides about a claimed unit besides training it: a device limit it breaks before
training (check_limits), successive halving's judgement at each rung (make_judge), racing over
folds (race), and an earlier run's complete files that make training it again needless
(saved_result). The search loop (search.py) asks each in turn."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import TrainConfig
from .gridspec import GridPoint
from .metrics_log import completed_rows
from .model import cost
from .strategy import Limits, Strategy
from .study import OBJECTIVES

if TYPE_CHECKING:
    import optuna


def check_limits(
    point: GridPoint, *, config: TrainConfig, limits: Limits, images: Any, trial: optuna.Trial,
) -> dict[str, Any] | None:
    """Measure what the limits bound before training; None if within them, else the row to record.

    Multiply-adds come from the architecture; the int8 file's size and its latency do not
    depend on the weights' values, so they are measured on the untrained model (converted as
    after training, calibrated on a few TRAIN images). Every measure is also given to the
    sampler as a constraint (Optuna: feasible when <= 0).
    """
    at = config.at(point)
    measures: dict[str, Any] = {"macs": cost(point, image_size=at.image_size, channels=at.channels,
                                             padding=at.padding).macs}
    if limits.needs_tflite():
        import keras

        from .edge import convert, measure_latency
        from .model import build_model

        model = build_model(point, config=at)
        flatbuffer = convert(model, precision="int8", representative_images=images[:16],
                             strip_names=at.strip_tflite_names, per_tensor=at.int8_per_tensor)
        measures["tflite_int8_mb"] = len(flatbuffer) / 2**20
        if limits.max_latency_ms is not None:
            measures["latency_ms"] = measure_latency(flatbuffer, runs=at.latency_runs)["latency_ms"]
        keras.backend.clear_session()
    violations = limits.violations(measures)
    for key, value in violations.items():
        trial.set_constraint(key, value)
    if not any(v > 0 for v in violations.values()):
        return None
    return {**point.params(), "repeat": trial.user_attrs.get("repeat", 0), **measures,
            "image_size": at.image_size, "preset": at.name, "status": "infeasible",
            "stop_reason": limits.describe(violations), "train_seconds": 0.0}


def make_judge(
    study: optuna.Study, trial: optuna.Trial, *, strategy: Strategy, epochs: int, label: str,
    echo: Callable[[str], None],
) -> Callable[[int, float, float], str | None]:
    """train_and_evaluate's ``judge``: at each rung, record this trial's result in the storage
    and compare it with every result recorded there at that rung (any worker's; halving.py)."""
    from optuna.trial import TrialState

    from .halving import RungResult, decide, rungs

    assert strategy.eta is not None
    judged = set(rungs(strategy.min_epochs, epochs, strategy.eta))

    def judge(epoch: int, val_accuracy: float, size_mb: float) -> str | None:
        if epoch not in judged:
            return None
        key = f"rung_{epoch}"
        trial.set_user_attr(key, [val_accuracy, size_mb])
        results = [
            RungResult(t.number, *t.user_attrs[key])
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                               TrialState.RUNNING))
            if t.user_attrs.get(key) is not None and "duplicate_of" not in t.user_attrs
        ]
        if trial.number not in {r.key for r in results}:
            results.append(RungResult(trial.number, val_accuracy, size_mb))
        decision = decide(results, trial.number, eta=strategy.eta, epoch=epoch)
        trial.set_user_attr(f"{key}_decision", f"{decision.action}: {decision.reason}")
        echo(f"  {label} epoch {epoch}: val_accuracy {val_accuracy:.3f}, {decision.action} "
             f"({decision.reason})")
        return None if decision.proceed else decision.reason

    return judge


def race(study: optuna.Study, artefacts: Path, point: GridPoint, *, table: str, edge: bool) -> str | None:
    """racing.raced_out on the study's finished models, sized by their int8 files (float .h5
    without TFLite figures); a point raced out once stays out (its later folds are not trained)."""
    from .racing import raced_out
    from .runs import load_predictions

    reason = study.user_attrs.get(f"raced_out_{point.grid_id}")
    if reason:
        return reason
    tables, predictions = load_predictions(artefacts)
    if table not in tables:
        return None
    predictions = {k: v for k, v in predictions.items() if str(v["table"]) == table}
    column = "tflite_int8_mb" if edge else "model_size(MB)"
    sizes = {int(r["grid_id"]): float(r[column]) for r in completed_rows(study) if r.get(column) is not None}
    reason = raced_out(point.grid_id, table=tables[table], predictions=predictions, sizes=sizes, int8=edge)
    if reason:
        study.set_user_attr(f"raced_out_{point.grid_id}", reason)
    return reason


def saved_result(artefacts: Path, point: GridPoint, repeat: int, *, config: TrainConfig) -> dict[str, Any] | None:
    """The record of this unit if an earlier run trained it completely (its record, model and
    kept predictions on disk, each matching the digest in the record; the same architecture and
    settings), else None: it is trained."""
    from .runs import TrialArtefacts, _int8_path, _keras_path, _predictions_path, _record_path

    path = _record_path(artefacts, point.grid_id, repeat)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        row = record["row"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # torn or foreign: trained again
    settings = json.loads(json.dumps(config.at(point).to_dict(), default=str))
    same = (record.get("config") == settings
            and all(str(row.get(k)) == str(v) for k, v in point.params().items())
            and int(row.get("repeat", 0)) == repeat
            and all(row.get(c) is not None for c, _ in OBJECTIVES))
    if not same or not _predictions_path(artefacts, point.grid_id, repeat).is_file():
        return None
    int8 = _int8_path(artefacts, point.grid_id, repeat)
    saved = TrialArtefacts(study=artefacts.name, keras_model=_keras_path(artefacts, point.grid_id, repeat),
                           int8_model=int8 if int8.is_file() else None, record=record, record_file=path,
                           grid_id=point.grid_id, repeat=repeat)
    return record if saved.verified and not saved.problems() else None
