"""`bcpareto edge`: fill the TFLite columns of models trained without them, later, in one process.

A search run with ``--no-edge`` (or, later, on a Keras backend other than TensorFlow) saves each
trained model as runs/<study>/grid_<id>.keras but measures no TFLite file. This command loads
each such model, converts and measures it exactly as a search does (edge.measure_edge: fp32,
fp16 and int8 sizes, int8 TEST accuracy, latency), writes its int8 file beside it, adds the
figures and their protocol to its record, and stores them in the study, so metrics_log.csv,
`plot` and `export` have them as if the search had measured them. A model whose files are
missing, changed or unreadable (runs.TrialArtefacts.check) is skipped and listed; the others
are measured all the same.

A finished Optuna trial cannot be changed, so the figures go into a study attribute
(``edge:<grid id>:<repeat>``) that metrics_log.completed_rows merges into the trial's row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BcParetoError

if TYPE_CHECKING:
    import optuna

ATTR = "edge:{grid_id}:{repeat}"  # the study attribute that holds one model's edge figures


def edge_attr(grid_id: int, repeat: int = 0) -> str:
    return ATTR.format(grid_id=grid_id, repeat=repeat)


@dataclass(frozen=True)
class Filled:
    study: str
    grid_id: int
    repeat: int
    metrics: dict[str, Any]


@dataclass(frozen=True)
class EdgeFill:
    """What `bcpareto edge` did: the models measured, and why each bad one was not."""

    filled: list[Filled]
    bad: list[str]  # one message per model whose files are missing, changed or unreadable


def missing_edge(study: optuna.Study) -> list[tuple[int, int, dict[str, Any]]]:
    """(grid id, repeat, row) of the study's completed models without TFLite figures."""
    from .metrics_log import completed_rows

    return [(int(r["grid_id"]), int(r.get("repeat", 0)), r) for r in completed_rows(study)
            if r.get("tflite_int8_mb") in (None, "")]


def fill_edge(
    run_dir: Path, *, data_dir: Path, storage_url: str | None = None, study_name: str | None = None,
    echo: Callable[[str], None] = print,
) -> EdgeFill:
    """Measure every completed model of the storage's studies (or one) that lacks TFLite figures;
    a model with a bad file is skipped and listed in ``EdgeFill.bad``, the rest are measured."""
    import keras
    import optuna

    from .data import load_data_for
    from .edge import measure_edge
    from .metrics_log import update_metrics_csv
    from .refine import config_from_record
    from .runs import find_trial, load_keras, save_int8, save_record, study_dir
    from .storage import default_storage_url, open_storage, redact

    url = storage_url or default_storage_url(run_dir)
    storage = open_storage(url, must_exist=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [s.study_name for s in storage.get_all_studies()]
    if study_name is not None and study_name not in names:
        raise BcParetoError(f"no study {study_name!r} in {redact(url)}; studies there: "
                            + (", ".join(names) or "none"))
    filled: list[Filled] = []
    bad: list[str] = []
    data_cache: dict[str, Any] = {}
    for name in [study_name] if study_name else names:
        study = optuna.load_study(study_name=name, storage=storage)
        todo = missing_edge(study)
        if not todo:
            echo(f"Study '{name}': every completed model has its TFLite figures")
            continue
        echo(f"Study '{name}': {len(todo)} model(s) without TFLite figures")
        for grid_id, repeat, row in todo:
            label = f"grid point {grid_id}" + (f" repeat {repeat}" if repeat else "")
            try:
                trial = find_trial(run_dir, grid_id, study=name, repeat=repeat)
                trial.check()
                model = load_keras(trial.keras_model)
            except BcParetoError as exc:  # its record or a file missing, changed or unreadable
                bad.append(str(exc))  # the message names the study, the model and the file
                echo(f"  {label}: not measured (listed at the end)")
                keras.backend.clear_session()
                continue
            config = config_from_record(trial.record)
            key = config.fingerprint()  # the decoded images depend on the config only
            if key not in data_cache:
                data_cache.clear()  # one decoded data set at a time
                data_cache[key] = load_data_for(data_dir, config)
            data = data_cache[key]
            if data.test_source != row.get("test_split", data.test_source):
                raise BcParetoError(
                    f"the data in {data_dir} gives another TEST split ({data.test_source}) than grid "
                    f"point {grid_id} was tested on ({row.get('test_split')}); use the same data set"
                )
            report = measure_edge(
                model, train_images=data.train.images, test_images=data.test.images,
                test_labels=data.test.labels, runs=config.latency_runs, num_threads=1,
                strip_names=config.strip_tflite_names, per_tensor=config.int8_per_tensor,
            )
            keras.backend.clear_session()
            folder = study_dir(run_dir, name)
            save_int8(folder, grid_id, repeat=repeat, int8=report.tflite_models["int8"])
            record = {**trial.record, "row": {**trial.record["row"], **report.metrics},
                      "edge_protocol": report.protocol}
            save_record(folder, grid_id, repeat=repeat, record=record)
            study.set_user_attr(edge_attr(grid_id, repeat), report.metrics)
            update_metrics_csv(study, run_dir, echo=echo)
            m = report.metrics
            echo(f"  {label}: int8 {m['tflite_int8_mb']:.4f} MB, int8 TEST {m['int8_test_accuracy']:.3f} "
                 f"(float {row.get('test_accuracy', float('nan')):.3f}), {m['latency_ms']:.2f} ms")
            filled.append(Filled(name, grid_id, repeat, m))
    return EdgeFill(filled=filled, bad=bad)
