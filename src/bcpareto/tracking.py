"""Experiment tracking (`--track`): every trained model as an MLflow run, its curves as TensorBoard events.

    --track mlflow              <run_dir>/mlflow.db (SQLite, MLflow 3's own default store), artifacts
                                in <run_dir>/mlartifacts; `mlflow ui --backend-store-uri sqlite:///...`
    --track mlflow:URI          any MLflow tracking URI: sqlite:///x.db, postgresql://..., http://host:5000
    --track tensorboard         <run_dir>/tensorboard/<study>/grid_<id>[_r<r>]/events.out.tfevents.*
    --track tensorboard:DIR     DIR/<study>/grid_<id>[_r<r>]/...

One MLflow experiment per study (its name), one run per trained model (grid point x repeat or
fold), named like its files (grid_<id>[_r<r>]): parameters are the grid point's architecture and
the settings it trained with (preset, seed, fold, epochs, image size, ...), metrics the per-epoch
curve (step = epoch, counted from 1) and the model's CSV row (the columns MLflow cannot name
renamed: ``model_size(MB)`` -> ``model_size_MB``), artifacts its files under runs/<study>/ (the
.keras model, the int8 .tflite file when measured, the JSON record). TensorBoard gets the
per-epoch curve, written with TensorFlow's own summary writer (no tensorboard package needed).

Tracking never costs a model: the model is saved and told to the study before it is logged, and
a store that fails (unwritable, unreachable) is said once, then left alone for the rest of the
command. MLflow is an optional extra (``pip install 'bcpareto[track]'``), imported only here and
only when asked for. Over 400 lines on purpose: both trackers share the option's parsing, the
up-front checks and the one rule that a failing store is said once and never costs a model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from .errors import ConfigError

TRACK_FORMS = "mlflow, mlflow:URI, tensorboard or tensorboard:DIR"
TRACK_EXTRA = "pip install 'bcpareto[track]'"
MLFLOW_DB = "mlflow.db"  # MLflow 3.7+ defaults to SQLite (its file store is in maintenance mode)
MLFLOW_ARTIFACTS = "mlartifacts"  # the folder name `mlflow server` gives its local artifacts
TENSORBOARD_DIR = "tensorboard"
# MLflow tracking URI schemes (a database dialect may name its driver: postgresql+psycopg2)
_MLFLOW_SCHEMES = ("file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")
# Row columns that say how a model was trained, not how it did: parameters, not metrics.
_SETTINGS = ("repeat", "seed", "fold", "n_folds", "epochs", "image_size", "batch_size", "color_mode",
             "cell_crop", "preset", "backend", "val_split", "test_split", "n_train", "n_val", "n_test",
             "teacher", "distill_weight", "distill_temperature", "parent_grid_id", "refine_epochs",
             "latency_num_threads")
# MLflow's HTTP client retries 7 times with backoff 2 (about 4 minutes for a server that is down)
# and waits 120 s for an answer; a search only loses its tracking, so it gives up sooner (the
# user's own settings of these variables win).
_HTTP_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
_LOG_BATCH = 1000  # MLflow's limit of metrics per log_batch call


@dataclass(frozen=True)
class Tracking:
    """What ``--track`` asked for; None fields take their place in the run directory."""

    mlflow: bool = False
    mlflow_uri: str | None = None  # None: sqlite <run_dir>/mlflow.db
    tensorboard: bool = False
    tensorboard_dir: Path | None = None  # None: <run_dir>/tensorboard

    def any(self) -> bool:
        return self.mlflow or self.tensorboard

    def mlflow_store(self, run_dir: Path) -> tuple[str, str | None]:
        """(tracking URI, artifact location of a new experiment: None leaves it to MLflow)."""
        if self.mlflow_uri is not None:
            return self.mlflow_uri, None
        run_dir = Path(run_dir).resolve()
        # quoted like storage.default_storage_url: a folder named 'what-if?' stays a path
        return (f"sqlite:///{quote(str(run_dir / MLFLOW_DB), safe='/')}",
                (run_dir / MLFLOW_ARTIFACTS).as_uri())

    def tensorboard_root(self, run_dir: Path) -> Path:
        return self.tensorboard_dir if self.tensorboard_dir is not None else Path(run_dir) / TENSORBOARD_DIR


def parse_track(values: Sequence[str], *, run_dir: Path) -> Tracking:
    """``--track`` values -> Tracking, checked before anything is created (ConfigError: exit 2):
    the forms, MLflow installed, the URI's scheme, the folders creatable."""
    from .runs import check_creatable_dir

    mlflow = tensorboard = False
    mlflow_uri: str | None = None
    tensorboard_dir: Path | None = None
    for value in values:
        kind, sep, rest = str(value).partition(":")
        kind = kind.strip().lower()
        if kind not in ("mlflow", "tensorboard") or (sep and not rest.strip()):
            raise ConfigError(f"--track {value!r}: expected {TRACK_FORMS} (e.g. --track mlflow "
                              "--track tensorboard); the option may be given once per tracker")
        if (kind == "mlflow" and mlflow) or (kind == "tensorboard" and tensorboard):
            raise ConfigError(f"--track {kind} is given twice; expected each of {TRACK_FORMS} at most once")
        if kind == "mlflow":
            mlflow, mlflow_uri = True, rest.strip() or None
        else:
            tensorboard, tensorboard_dir = True, Path(rest.strip()) if rest.strip() else None
    tracking = Tracking(mlflow=mlflow, mlflow_uri=mlflow_uri, tensorboard=tensorboard,
                        tensorboard_dir=tensorboard_dir)
    if tracking.mlflow:
        if importlib.util.find_spec("mlflow") is None:
            raise ConfigError(f"--track mlflow: MLflow is not installed; {TRACK_EXTRA} (or pip install "
                              f"mlflow-skinny), or leave --track mlflow out (expected {TRACK_FORMS})")
        uri = tracking.mlflow_uri
        if uri is not None:
            scheme = _scheme(uri)
            if scheme and scheme not in _MLFLOW_SCHEMES:
                raise ConfigError(
                    f"--track mlflow:{uri}: {scheme!r} is not an MLflow tracking URI scheme; expected "
                    "sqlite:///path/mlflow.db, postgresql://..., mysql://..., http(s)://host:port, "
                    "file:/folder or a folder (or --track mlflow for <run-dir>/mlflow.db)")
            if scheme == "sqlite" and (path := _sqlite_path(uri)) is not None:
                check_creatable_dir(path.parent, option=f"--track mlflow:{uri}")
            elif not scheme:
                check_creatable_dir(Path(uri), option=f"--track mlflow:{uri}")
            elif scheme in ("http", "https"):
                _check_reachable(uri)
        else:
            check_creatable_dir(Path(run_dir), option="--run-dir")
    if tracking.tensorboard:
        check_creatable_dir(tracking.tensorboard_root(run_dir),
                            option="--track tensorboard" + (f":{tracking.tensorboard_dir}"
                                                             if tracking.tensorboard_dir else ""))
    return tracking


def _check_reachable(uri: str, *, timeout: float = 5.0) -> None:
    """An MLflow server answers a TCP connection (a typo in its address stops here, exit 2)."""
    import socket

    parts = urlsplit(uri)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = -1
    if not parts.hostname or port < 0:
        raise ConfigError(f"--track mlflow:{_display(uri)}: expected http(s)://host[:port] of an MLflow server")
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"--track mlflow:{_display(uri)}: no MLflow server answers at {parts.hostname}:{port} "
                          f"({exc.strerror or exc}); start it (mlflow server) or leave --track mlflow:URI out "
                          "(--track mlflow logs to <run-dir>/mlflow.db)") from None


def _scheme(uri: str) -> str:
    """A tracking URI's scheme without its driver (postgresql+psycopg2 -> postgresql); '' for a path."""
    if "://" not in uri and not uri.startswith("file:"):
        return ""
    return urlsplit(uri).scheme.split("+")[0].lower()


def _sqlite_path(uri: str) -> Path | None:
    """The file of sqlite:///relative.db or sqlite:////absolute.db (None: in memory)."""
    path = uri.split("://", 1)[1].split("?", 1)[0]
    return Path(unquote(path[1:])) if path.startswith("/") and len(path) > 1 else None


def _display(uri: str) -> str:
    """``uri`` with a password masked (an http or database URI may carry one)."""
    with contextlib.suppress(ValueError):
        parts = urlsplit(uri)
        if parts.password:
            return uri.replace(f":{parts.password}@", ":***@")
    return uri


def _quiet_mlflow() -> None:
    """MLflow's and Alembic's INFO lines (creating the database's tables) unless -v."""
    from .quiet import verbose

    if not verbose():
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)


class Tracker:
    """Logs each trained model to the trackers asked for; never raises (a failing one is said once)."""

    def __init__(self, tracking: Tracking, *, run_dir: Path, study: str,
                 echo: Callable[[str], None] = print) -> None:
        self.tracking = tracking
        self.run_dir = Path(run_dir)
        self.study = study
        self._echo = echo
        self._client: Any = None
        self._experiment_id: str | None = None
        self._uri = ""
        self._off: set[str] = set()  # trackers that failed once: left alone from then on
        self.logged: dict[str, int] = {"mlflow": 0, "tensorboard": 0}

    # -- opening -------------------------------------------------------------------------------

    def open(self, *, announce: bool = True) -> Tracker:
        """Open the MLflow store and its experiment (created on first use: a few seconds once)."""
        if self.tracking.mlflow:
            uri, artifacts = self.tracking.mlflow_store(self.run_dir)
            self._uri = uri
            try:
                self._open_mlflow(uri, artifacts)
            except Exception as exc:
                self._failed("mlflow", "opening the store", exc)
        if announce and self.tracking.any():
            where = []
            if self.tracking.mlflow and "mlflow" not in self._off:
                where.append(f"MLflow {_display(self._uri)} (experiment {self.study!r}, one run per model)")
            if self.tracking.tensorboard:
                where.append(f"TensorBoard {self.tensorboard_dir()}")
            if where:
                self._echo("Tracking: " + "; ".join(where))
        return self

    def _open_mlflow(self, uri: str, artifacts: str | None) -> None:
        scheme = _scheme(uri)
        if scheme in ("", "file"):  # MLflow's file store, asked for by name: MLflow 3.7+ refuses it otherwise
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        elif scheme in ("http", "https"):  # a server gone mid-search: minutes of retries per call by default
            for name, value in _HTTP_RETRIES.items():
                os.environ.setdefault(name, value)
        elif scheme == "sqlite" and (path := _sqlite_path(uri)) is not None:
            path.parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        _quiet_mlflow()  # after the import, which sets MLflow's own logger to INFO
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(self.study)
        if experiment is None:
            try:
                self._experiment_id = client.create_experiment(self.study, artifact_location=artifacts)
            except MlflowException:  # another worker created it meanwhile
                experiment = client.get_experiment_by_name(self.study)
                if experiment is None:
                    raise
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":  # deleted in the UI; the study goes on
                client.restore_experiment(experiment.experiment_id)
            self._experiment_id = experiment.experiment_id
        self._client = client

    def tensorboard_dir(self) -> Path:
        return self.tracking.tensorboard_root(self.run_dir) / self.study

    # -- logging -------------------------------------------------------------------------------

    def log_model(self, grid_id: int, *, repeat: int, point_params: dict[str, Any], row: dict[str, Any],
                  curve: dict[str, list[float]] | None, first_epoch: int = 1,
                  tags: dict[str, Any] | None = None) -> None:
        """Log one finished model (its files already under runs/<study>/) to every tracker."""
        if not self.tracking.any():
            return
        from .runs import find_trial

        try:
            found = find_trial(self.run_dir, grid_id, study=self.study, repeat=repeat)
        except Exception as exc:  # its files are gone: nothing to log them from
            for kind in ("mlflow", "tensorboard"):
                if getattr(self.tracking, kind):
                    self._failed(kind, f"grid point {grid_id}", exc)
            return
        name = found.keras_model.stem  # grid_<id>[_r<r>]: the model's own file names (runs.py)
        files = [p for p in (found.keras_model, found.int8_model, found.keras_model.with_suffix(".json"))
                 if p is not None and p.is_file()]
        steps = _curve_steps(curve, first_epoch=first_epoch)
        if self.tracking.mlflow and "mlflow" not in self._off and self._client is not None:
            for attempt in (1, 2):  # SQLite shared by workers: a lock held too long, once
                try:
                    self._log_mlflow(name, point_params=point_params, row=row,
                                     config=found.record.get("config") or {}, steps=steps,
                                     files=files, tags=tags or {})
                    self.logged["mlflow"] += 1
                    break
                except Exception as exc:
                    if attempt == 2:
                        self._failed("mlflow", name, exc)
                    else:
                        time.sleep(1.0)
        if self.tracking.tensorboard and "tensorboard" not in self._off and steps:
            try:
                self._log_tensorboard(name, steps)
                self.logged["tensorboard"] += 1
            except Exception as exc:
                self._failed("tensorboard", name, exc)

    def log_export(self, name: str, files: list[Path]) -> None:
        """Add an exported model's files (the deployable file and its model card) under export/
        to the MLflow run of model ``name`` (grid_<id>[_r<r>]); a run of its own when the model was
        trained before --track. TensorBoard has nothing to add."""
        if not self.tracking.mlflow or "mlflow" in self._off or self._client is None:
            return
        try:
            found = self._client.search_runs([self._experiment_id], f"attributes.run_name = '{name}'",
                                             order_by=["attributes.start_time DESC"], max_results=1)
            run_id = (found[0].info.run_id if found else
                      self._client.create_run(self._experiment_id, run_name=name,
                                              tags={"bcpareto.study": self.study}).info.run_id)
            for path in files:
                self._client.log_artifact(run_id, str(path), artifact_path="export")
            if not found:
                self._client.set_terminated(run_id, "FINISHED")
            self.logged["mlflow"] += 1
        except Exception as exc:
            self._failed("mlflow", f"{name}'s export", exc)

    def _log_mlflow(self, name: str, *, point_params: dict[str, Any], row: dict[str, Any],
                    config: dict[str, Any], steps: dict[str, list[tuple[int, float]]], files: list[Path],
                    tags: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        client = self._client
        now = int(time.time() * 1000)
        wall = row.get("wall_seconds")
        start = now - int(float(wall) * 1000) if _number(wall) else now
        run = client.create_run(self._experiment_id, run_name=name, start_time=start, tags={
            "bcpareto.study": self.study, **{f"bcpareto.{k}": str(v) for k, v in tags.items()}})
        run_id = run.info.run_id
        try:
            params, finals = split_row(row, point_params=point_params)
            params.update({f"config.{k}": v for k, v in config.items()  # the preset's values, as trained
                           if v is not None and v != "" and v != [] and f"config.{k}" not in params})
            metrics = [Metric(key, value, now, step) for key, points in steps.items() for step, value in points]
            last = max((s for points in steps.values() for s, _ in points), default=0)
            metrics += [Metric(key, value, now, last) for key, value in finals.items() if key not in steps]
            param_list = [Param(k, str(v)[:6000]) for k, v in params.items()]
            for i in range(0, max(len(param_list), 1), 100):  # MLflow: 100 parameters per batch
                client.log_batch(run_id, params=param_list[i:i + 100], tags=[] if i else [
                    RunTag("bcpareto.metrics_from", "metrics_log.csv row; per-epoch curve at step = epoch")])
            for i in range(0, len(metrics), _LOG_BATCH):
                client.log_batch(run_id, metrics=metrics[i:i + _LOG_BATCH])
            for path in files:
                client.log_artifact(run_id, str(path))
        except BaseException:
            with contextlib.suppress(Exception):  # a half-logged run is not left looking complete
                client.delete_run(run_id)
            raise
        client.set_terminated(run_id, "FINISHED", end_time=now)

    def _log_tensorboard(self, name: str, steps: dict[str, list[tuple[int, float]]]) -> None:
        from .quiet import native_stderr

        with native_stderr():  # TensorFlow's start-up lines, where Keras trains on another backend
            import tensorflow as tf

        metadata = tf.compat.v1.SummaryMetadata()
        # what tensorboard.summary.scalar writes, without needing the tensorboard package
        metadata.plugin_data.plugin_name = "scalars"
        metadata.data_class = 1  # DATA_CLASS_SCALAR
        folder = self.tensorboard_dir() / name
        folder.mkdir(parents=True, exist_ok=True)
        writer = tf.summary.create_file_writer(str(folder))
        try:
            with writer.as_default():
                for key, points in steps.items():
                    for step, value in points:
                        tf.summary.write(key, tf.constant(value, tf.float32), step=step, metadata=metadata)
            writer.flush()
        finally:
            writer.close()

    def _failed(self, kind: str, what: str, exc: BaseException) -> None:
        if kind in self._off:
            return
        self._off.add(kind)
        where = f"MLflow ({_display(self._uri)})" if kind == "mlflow" else f"TensorBoard ({self.tensorboard_dir()})"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        self._echo(f"  warning: tracking to {where} failed at {what}: {type(exc).__name__}: {first}. "
                   f"The models are kept (metrics_log.csv, runs/); nothing more is sent to {kind} "
                   "in this command")


def open_tracker(tracking: Tracking | None, *, run_dir: Path, study: str,
                 echo: Callable[[str], None] = print, announce: bool = True) -> Tracker:
    """A Tracker for this study (one that logs nothing when ``tracking`` asks for nothing)."""
    return Tracker(tracking or Tracking(), run_dir=run_dir, study=study, echo=echo).open(announce=announce)


def split_row(row: dict[str, Any], *, point_params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """A CSV row -> (MLflow parameters, MLflow metrics): the architecture, the settings and every
    text column are parameters; every other number is a metric, under ``metric_name``."""
    params = dict(point_params)
    metrics: dict[str, float] = {}
    for key, value in row.items():
        if key in point_params:
            continue
        if key in _SETTINGS or not _number(value):
            if value is not None and value != "":
                params[key] = value
        elif math.isfinite(float(value)):
            metrics[metric_name(key)] = float(value)
    return params, metrics


def metric_name(column: str) -> str:
    """A CSV column as an MLflow metric key (which allows letters, digits, _ - . : / and space):
    ``model_size(MB)`` -> ``model_size_MB``."""
    allowed = "".join(c if c.isalnum() or c in "_-.:/ " else "_" for c in column)
    return allowed.strip("_") or "metric"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _curve_steps(curve: dict[str, list[float]] | None, *, first_epoch: int) -> dict[str, list[tuple[int, float]]]:
    """The per-epoch curve as {metric: [(epoch, value)]}: ``seconds`` becomes ``epoch_seconds``."""
    steps: dict[str, list[tuple[int, float]]] = {}
    for key, values in (curve or {}).items():
        name = "epoch_seconds" if key == "seconds" else metric_name(key)
        points = [(first_epoch + i, float(v)) for i, v in enumerate(values or [])
                  if _number(v) and math.isfinite(float(v))]
        if points:
            steps[name] = points
    return steps
