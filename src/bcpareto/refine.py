"""`bcpareto refine`: train a finished model further, and record it as a new model of its study.

The earlier version did this by hand: pick a model off the front, load it, train it some more.
Here the model is loaded from its saved file (runs/<study>/grid_<id>.keras), compiled with a
fresh optimizer and learning-rate schedule over the new epochs (the preset's optimizer and
rate, with its cosine decay: a warm restart), trained on the same TRAIN split, and measured like
any model (validation, TEST, TFLite sizes, int8 TEST accuracy, latency). The result is a new
completed trial of the same study, with a grid id of its own and ``parent_grid_id`` naming
the model it came from, so metrics_log.csv, `plot`, `export` and `status` treat it like the
others.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .errors import BcParetoError
from .gridspec import GridPoint


@dataclasses.dataclass(frozen=True)
class Refined:
    study: str
    grid_id: int  # the new model's id
    row: dict[str, Any]


def point_from_row(row: dict[str, Any]) -> GridPoint:
    """The architecture a CSV row / record row names (GridPoint.params' columns)."""

    def ints(value: Any) -> tuple[int, ...]:
        return tuple(int(v) for v in json.loads(str(value)))

    return GridPoint(
        grid_id=int(row["grid_id"]), filters=ints(row["filters"]), kernel_sizes=ints(row["kernel_sizes"]),
        neurons=ints(row["neurons"]), block=str(row.get("block") or "conv"),
        strides=ints(row["strides"]) if row.get("strides") else (), stem=int(row.get("stem") or 0),
        width=float(row.get("width") or 1.0),
        **({"expansion": int(row["expansion"])} if row.get("expansion") else {}),
        image_size=int(row.get("image_size") or 0),
    )


def config_from_record(record: dict[str, Any]) -> TrainConfig:
    """The TrainConfig a model was trained with (its record's ``config``), without a teacher."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    raw = {k: v for k, v in record["config"].items() if k in known}
    raw["augment"] = tuple(raw.get("augment", ()))
    raw["teacher"] = None  # refining trains on the labels alone
    return TrainConfig(**raw)


def refine(
    run_dir: Path, grid_id: int, *, epochs: int, data_dir: Path, study: str | None = None, repeat: int = 0,
    learning_rate: float | None = None, storage_url: str | None = None, tracking: Any = None,
    echo: Callable[[str], None] = print,
) -> Refined:
    """Train grid point ``grid_id`` of ``study`` for ``epochs`` more epochs; record the new model
    (and log it to ``tracking``'s MLflow / TensorBoard, its curve from the parent's epochs on)."""
    import optuna

    from .backends import tensorflow_trains
    from .data import load_data_for
    from .metrics_log import update_metrics_csv
    from .runs import find_trial, load_keras, save_record, study_dir
    from .study import OBJECTIVES, reserve_id
    from .storage import default_storage_url, open_storage, redact, storage_lock
    from .trial import train_and_evaluate

    parent = find_trial(run_dir, grid_id, study=study, repeat=repeat)  # a bad id stops here
    parent.check()  # and a missing, replaced or unreadable file: before a new id is reserved
    url = storage_url or default_storage_url(run_dir)
    storage = open_storage(url, must_exist=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        handle = optuna.load_study(study_name=parent.study, storage=storage)
    except KeyError:
        raise BcParetoError(f"study {parent.study!r} is not in {redact(url)} (pass the search's --storage)") from None
    row = parent.record["row"]
    config = dataclasses.replace(config_from_record(parent.record), epochs=epochs)
    if learning_rate is not None:
        config = dataclasses.replace(config, learning_rate=learning_rate)
    if not tensorflow_trains():  # no TFLite converter in this process: `bcpareto edge` later
        config = dataclasses.replace(config, edge_metrics=False)
    point = point_from_row(row)
    echo(f"Refining grid point {grid_id} of study {parent.study!r}: {point.describe()}; "
         f"{row.get('epochs', '?')} epoch(s) so far, val_accuracy {row['val_accuracy']:.3f}; "
         f"{epochs} more at learning rate {config.learning_rate:g} ({config.lr_schedule})")
    data = load_data_for(data_dir, config.at(point), progress=echo)
    if data.folds is not None and "fold" in row:  # a fold model of cross-validation: its own fold
        data = data.for_fold(int(row["fold"]))
    if data.val_source != row.get("val_split", data.val_source):
        raise BcParetoError(
            f"the data in {data_dir} gives another validation split ({data.val_source}) than the one "
            f"grid point {grid_id} was chosen on ({row.get('val_split')}); refine on the same data set"
        )
    model = load_keras(parent.keras_model)  # an unreadable file: before a new id is reserved
    with storage_lock(storage, url, parent.study):  # an id no other model of the study has
        new_id = reserve_id(handle)
    new_point = dataclasses.replace(point, grid_id=new_id)
    folder = study_dir(run_dir, parent.study)
    result = train_and_evaluate(new_point, config=config, data=data, model_dir=folder, initial_model=model)
    new_row = {**result.row, "parent_grid_id": grid_id, "refine_epochs": epochs,
               "epochs": int(row.get("epochs", 0)) + epochs}
    save_record(folder, new_id, record={
        "row": new_row, "confusion": result.confusion, "classes": parent.record.get("classes"),
        "edge_protocol": result.edge_protocol, "config": config.at(new_point).to_dict(),
        "curve": result.curve, "parent": {"grid_id": grid_id, "study": parent.study},
    })
    # one atomic step, after training: a refine killed midway leaves no trial behind to retry
    handle.add_trial(optuna.trial.create_trial(
        values=[new_row[c] for c, _ in OBJECTIVES],
        distributions={},
        params={},
        user_attrs={**new_point.params(), "repeat": 0, "parent_grid_id": grid_id, "row": new_row,
                    "curve": result.curve},
    ))
    update_metrics_csv(handle, run_dir, echo=echo)
    if tracking is not None and tracking.any():
        from .tracking import open_tracker

        open_tracker(tracking, run_dir=run_dir, study=parent.study, echo=echo).log_model(
            new_id, repeat=0, point_params=new_point.params(), row=new_row, curve=result.curve,
            first_epoch=int(row.get("epochs", 0)) + 1, tags={"parent_grid_id": grid_id})
    return Refined(study=parent.study, grid_id=new_id, row=new_row)
