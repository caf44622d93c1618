"""The Optuna study: which grid points, in what order, on which storage; the CSV log.

Every grid point is enqueued once as a WAITING trial (under a lock, so concurrent workers do not
enqueue twice). A worker claims a point by moving its trial WAITING -> RUNNING, which the storage
does atomically, so no two workers train the same point. A running trial sends heartbeats; a
trial whose worker died goes stale and is re-enqueued by Optuna's retry callback. The CSV is
regenerated from the storage after every trial and replaced atomically, so it never holds a torn
or duplicate row, and a crash loses no completed result.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import os
import re
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .audit import CLASSES
from .config import TrainConfig
from .errors import BcParetoError, TrialFailed
from .gridspec import GridPoint
from .model import cost

if TYPE_CHECKING:
    import optuna

CSV_NAME = "metrics_log.csv"
DB_NAME = "bcpareto.db"
HEARTBEAT_SECONDS = 20
GRACE_SECONDS = 90  # a running trial without a heartbeat for this long is taken as dead
MAX_RETRY = 3
# The study's objectives, in order (also the CSV columns they come from).
OBJECTIVES = (("val_accuracy", "maximize"), ("model_size(MB)", "minimize"))


def default_storage_url(run_dir: Path) -> str:
    """The embedded default: an SQLite file in the run directory."""
    return f"sqlite:///{(run_dir / DB_NAME).resolve()}"


def redact(url: str) -> str:
    """The storage URL with any password replaced by ***, for logs and messages."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def default_study_name(grid_name: str, points: list[GridPoint], config: TrainConfig) -> str:
    """Same grid and training settings -> same study, so a rerun resumes instead of restarting."""
    blob = json.dumps([[p.params() for p in points], config.fingerprint()], sort_keys=True)
    return f"{Path(grid_name).stem}-{config.name}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


def open_storage(url: str) -> optuna.storages.RDBStorage:
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}  # several workers on one file
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRY
            ),
        )
    except Exception as exc:  # SQLAlchemy/driver errors: bad URL, server down, no driver
        raise BcParetoError(
            f"cannot open the study storage {redact(url)}: {redact(str(exc)).splitlines()[0]}"
        ) from None


@contextlib.contextmanager
def _storage_lock(storage: optuna.storages.RDBStorage, url: str, name: str) -> Iterator[None]:
    """Mutual exclusion between workers that share one storage (file lock or advisory lock)."""
    if url.startswith("postgresql"):
        import sqlalchemy

        key = int(hashlib.sha1(name.encode()).hexdigest()[:15], 16)
        with storage.engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        return
    path = url.split("///", 1)[-1] if url.startswith("sqlite") else None
    lock_path = Path(f"{path}.lock") if path else Path(tempfile.gettempdir()) / f"bcpareto-{name}.lock"
    with _file_lock(lock_path):
        yield


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _grid_id(trial: optuna.trial.FrozenTrial) -> int | None:
    value = trial.user_attrs.get("grid_id")
    return int(value) if value is not None else None


def sync_grid(
    study: optuna.Study, points: list[GridPoint], *, retry_failed: bool = False
) -> dict[str, int]:
    """Enqueue every point that has no completed, waiting or running trial. Call under the lock.

    A point whose last trial failed is enqueued again only if it was interrupted (Ctrl-C) or
    when ``retry_failed`` is set; a failure that training reported (NaN loss, out of memory) is
    kept, since rerunning it would most likely fail the same way.
    """
    from optuna.trial import TrialState

    by_point: dict[int, list[optuna.trial.FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False):
        gid = _grid_id(trial)
        if gid is not None:
            by_point.setdefault(gid, []).append(trial)
    enqueued = 0
    for point in points:
        trials = by_point.get(point.grid_id, [])
        states = {t.state for t in trials}
        if states & {TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING}:
            continue
        failed = [t for t in trials if t.state == TrialState.FAIL]
        if failed and not retry_failed:
            reason = max(failed, key=lambda t: t.number).user_attrs.get("fail_reason", "")
            if reason != "interrupted":
                continue
        study.enqueue_trial(
            {"grid_id": point.grid_id}, user_attrs=point.params(), skip_if_exists=False
        )
        enqueued += 1
    return {"enqueued": enqueued}


def claim_next(
    study: optuna.Study, storage: optuna.storages.RDBStorage
) -> tuple[optuna.Trial, int] | None:
    """Take the lowest-numbered WAITING trial; the storage makes WAITING -> RUNNING atomic."""
    import optuna
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, waiting.number)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, trial_id), trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker took it and already finished it
    return None


class _Heartbeat:
    """Records a heartbeat for the running trial every HEARTBEAT_SECONDS, in a daemon thread."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_id: int) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(storage, trial_id), daemon=True)

    def _beat(self, storage: optuna.storages.RDBStorage, trial_id: int) -> None:
        while True:
            with contextlib.suppress(Exception):
                storage.record_heartbeat(trial_id)
            if self._stop.wait(HEARTBEAT_SECONDS):
                return

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def completed_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per grid point with a completed trial, in grid order (the first completion wins)."""
    from optuna.trial import TrialState

    rows: dict[int, dict[str, Any]] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        row = trial.user_attrs.get("row")
        if row is not None and row["grid_id"] not in rows:
            rows[row["grid_id"]] = {**row, "study": study.study_name, "trial": trial.number}
    return [rows[k] for k in sorted(rows)]


def write_metrics_csv(path: Path, *, study_name: str, rows: list[dict[str, Any]]) -> None:
    """Replace this study's rows in the CSV (other studies' rows stay), atomically."""
    kept: list[dict[str, Any]] = []
    columns: list[str] = []
    if path.exists():
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            kept = [r for r in reader if r.get("study") != study_name]
    for row in rows:
        columns += [c for c in row if c not in columns]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept + rows)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass
class SearchSummary:
    study_name: str
    storage: str  # redacted
    completed: int = 0
    failed: list[str] = field(default_factory=list)
    trained_here: int = 0
    wall_seconds: float = 0.0


def run_search(
    points: list[GridPoint],
    *,
    config: TrainConfig,
    data_dir: Path,
    run_dir: Path,
    grid_name: str,
    storage_url: str | None = None,
    study_name: str | None = None,
    retry_failed: bool = False,
    on_bad_image: str = "skip",
    echo: Callable[[str], None] = print,
) -> SearchSummary:
    """Train every grid point not yet completed in the study; keep metrics_log.csv in step."""
    import optuna

    from .data import load_data
    from .trial import train_and_evaluate

    started = time.perf_counter()
    check_feature_maps(points, config=config)
    echo(f"Data: {data_dir} (decoded once per size and colour mode, then cached)")
    data = load_data(
        data_dir,
        image_size=config.image_size,
        color_mode=config.color_mode,
        validation=config.validation,
        val_fraction=config.val_fraction,
        drop_test_duplicates=config.drop_test_duplicates,
        limit_per_class=config.limit_per_class,
        seed=config.seed,
        on_bad_image=on_bad_image,
    )
    echo(f"  train {len(data.train)} images; validation {len(data.val)} ({data.val_source}); "
         f"test {len(data.test)} ({data.test_source})")
    if data.skipped:
        echo(f"  skipped {len(data.skipped)} unreadable file(s): " + ", ".join(data.skipped[:5]))

    run_dir.mkdir(parents=True, exist_ok=True)
    url = storage_url or default_storage_url(run_dir)
    name = study_name or default_study_name(grid_name, points, config)
    storage = open_storage(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with _storage_lock(storage, url, name):
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            directions=[d for _, d in OBJECTIVES],
            load_if_exists=True,
        )
        study.set_metric_names([c for c, _ in OBJECTIVES])
        study.set_user_attr("config", config.to_dict())
        optuna.storages.fail_stale_trials(study)
        sync_grid(study, points, retry_failed=retry_failed)
    summary = SearchSummary(study_name=name, storage=redact(url))
    echo(f"Study {name!r} on {redact(url)}")

    by_id = {p.grid_id: p for p in points}
    todo = _remaining(study, points)
    echo(f"  {len(points) - len(todo)} of {len(points)} grid points already done, {len(todo)} to train")
    progress = Progress(
        [by_id[g] for g in todo], config=config, n_train=len(data.train),
        n_eval=len(data.val) + len(data.test), echo=echo,
    )
    if todo:
        progress.announce(calibrate(points=[by_id[g] for g in todo], config=config))

    artefacts = run_dir / "runs" / name
    csv_path = run_dir / CSV_NAME
    while True:
        with _storage_lock(storage, url, name):
            optuna.storages.fail_stale_trials(study)
            claimed = claim_next(study, storage)
        if claimed is None:
            break
        trial, trial_id = claimed
        point = by_id[int(trial.suggest_categorical("grid_id", [p.grid_id for p in points]))]
        progress.start(point)
        try:
            with _Heartbeat(storage, trial_id):
                result = train_and_evaluate(point, config=config, data=data, model_dir=artefacts)
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        except Exception as exc:  # noqa: BLE001 - one bad trial must not stop the search
            reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, TrialFailed) else str(exc)
            trial.set_user_attr("fail_reason", reason[:1000])
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            summary.failed.append(f"grid point {point.grid_id}: {reason.splitlines()[0][:300]}")
            echo(f"  FAILED grid point {point.grid_id}: {reason.splitlines()[0][:300]}")
            progress.finish(point, seconds=None)
            continue
        (artefacts / f"grid_{point.grid_id}.json").write_text(
            json.dumps({
                "row": result.row, "confusion": result.confusion, "classes": list(CLASSES),
                "edge_protocol": result.edge_protocol, "config": config.to_dict(),
            }, indent=1, default=str)
        )
        trial.set_user_attr("row", result.row)
        study.tell(trial, [result.row[c] for c, _ in OBJECTIVES])
        summary.trained_here += 1
        with _file_lock(run_dir / f".{CSV_NAME}.lock"):
            write_metrics_csv(csv_path, study_name=name, rows=completed_rows(study))
        progress.finish(point, seconds=result.row["wall_seconds"], row=result.row)

    summary.completed = len(completed_rows(study))
    summary.wall_seconds = time.perf_counter() - started
    return summary


def _remaining(study: optuna.Study, points: list[GridPoint]) -> list[int]:
    from optuna.trial import TrialState

    waiting = {
        _grid_id(t) for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    }
    return [p.grid_id for p in points if p.grid_id in waiting]


def check_feature_maps(points: list[GridPoint], *, config: TrainConfig) -> None:
    """Reject, before any training, every point whose feature map collapses at this size."""
    problems = []
    for point in points:
        try:
            cost(point, image_size=config.image_size, channels=config.channels, padding=config.padding)
        except TrialFailed as exc:
            problems.append(str(exc))
    if problems:
        raise TrialFailed(
            f"{len(problems)} grid point(s) cannot be built at {config.image_size} px "
            f"(padding '{config.padding}'):\n  " + "\n  ".join(problems)
            + "\nUse a larger --image-size, or remove these points from the sheet."
        )


def calibrate(*, points: list[GridPoint], config: TrainConfig) -> Callable[[GridPoint], float]:
    """Seconds per training step as a + b * MACs, fitted on the cheapest and costliest point."""
    from .trial import time_train_step

    def macs(p: GridPoint) -> int:
        return cost(p, image_size=config.image_size, channels=config.channels, padding=config.padding).macs

    ordered = sorted(points, key=macs)
    ends = [ordered[0]] if macs(ordered[0]) == macs(ordered[-1]) else [ordered[0], ordered[-1]]
    measured = [(macs(p), time_train_step(p, config=config)) for p in ends]
    if len(measured) == 1:
        return lambda p: measured[0][1]
    (m0, t0), (m1, t1) = measured
    slope = max(0.0, (t1 - t0) / (m1 - m0))
    return lambda p: max(t0 + slope * (macs(p) - m0), 1e-4)


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """A text progress bar over the grid with the current model, elapsed time and ETA."""

    def __init__(
        self, todo: list[GridPoint], *, config: TrainConfig, n_train: int, n_eval: int,
        echo: Callable[[str], None],
    ) -> None:
        self.todo, self.config, self.echo = todo, config, echo
        self.steps = config.epochs * (-(-n_train // config.batch_size) + n_eval / max(config.batch_size, 64) / 3)
        self.predicted: dict[int, float] = {}
        self.actual: dict[int, float] = {}
        self.done = 0
        self.t0 = time.perf_counter()

    def announce(self, step_seconds: Callable[[GridPoint], float]) -> None:
        self.predicted = {p.grid_id: self.steps * step_seconds(p) + 3.0 for p in self.todo}
        total = sum(self.predicted.values())
        self.echo(f"Estimated time for {len(self.todo)} model(s): {_clock(total)} "
                  "(from a short measured calibration; refined as models finish)")
        if total > 3600:
            self.echo("  Warning: this search will take over an hour on this machine. For a "
                      "quicker look, lower --image-size (e.g. 64), --epochs, or use "
                      "--limit-per-class N (N images per class).")

    def _eta(self) -> float:
        left = [g for g in self.predicted if g not in self.actual]
        ratio = 1.0
        if self.actual:
            ratio = sum(self.actual.values()) / sum(self.predicted[g] for g in self.actual)
        return ratio * sum(self.predicted[g] for g in left)

    def start(self, point: GridPoint) -> None:
        n = len(self.todo)
        width = 24
        filled = int(width * self.done / max(n, 1))
        self.echo(
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{n}  grid point "
            f"{point.grid_id}: {point.describe()} | elapsed {_clock(time.perf_counter() - self.t0)}"
            f" | ETA {_clock(self._eta())}"
        )

    def finish(self, point: GridPoint, *, seconds: float | None, row: dict[str, Any] | None = None) -> None:
        self.done += 1
        if point.grid_id in self.predicted:
            self.actual[point.grid_id] = seconds if seconds is not None else self.predicted[point.grid_id]
        if row is not None:
            self.echo(
                f"  grid point {point.grid_id} done in {seconds:.0f} s: val_accuracy "
                f"{row['val_accuracy']:.3f}, test_accuracy {row['test_accuracy']:.3f}, model_size(MB) "
                f"{row['model_size(MB)']:.3f}, {row['n_params']:,} params"
            )


@dataclass(frozen=True)
class TrialArtefacts:
    """What a finished trial left in the run directory (runs/<study>/grid_<id>.*)."""

    study: str
    keras_model: Path
    int8_model: Path | None
    record: dict[str, Any]  # row, confusion, classes, edge_protocol, config


def find_trial(run_dir: Path, grid_id: int, *, study: str | None = None) -> TrialArtefacts:
    """The artefacts of grid point `grid_id`; `study` is needed only when several studies have it."""
    runs = run_dir / "runs"
    folders = [runs / study] if study else sorted(p for p in runs.glob("*") if p.is_dir())
    found = [f for f in folders if (f / f"grid_{grid_id}.json").is_file() and (f / f"grid_{grid_id}.keras").is_file()]
    if not found:
        known = sorted({p.stem.removeprefix("grid_") for p in runs.glob("*/grid_*.json")}, key=int)
        raise BcParetoError(
            f"no finished trial for grid point {grid_id} under {runs}"
            + (f" in study {study!r}" if study else "")
            + (f"; finished grid points: {', '.join(known)}" if known else "; run `bcpareto search` first")
        )
    if len(found) > 1:
        raise BcParetoError(
            f"grid point {grid_id} was trained in {len(found)} studies; pick one with --study: "
            + ", ".join(f.name for f in found)
        )
    folder = found[0]
    int8 = folder / f"grid_{grid_id}_int8.tflite"
    return TrialArtefacts(
        study=folder.name,
        keras_model=folder / f"grid_{grid_id}.keras",
        int8_model=int8 if int8.is_file() else None,
        record=json.loads((folder / f"grid_{grid_id}.json").read_text()),
    )
