"""The Optuna study: which grid points, in what order, on which storage; the CSV log.

Every grid point is enqueued once as a WAITING trial (under a lock, so concurrent workers do not
enqueue twice). A worker claims a point by moving its trial WAITING -> RUNNING, which the storage
does atomically, so no two workers train the same point. A running trial sends heartbeats; a
trial whose worker died goes stale and is re-enqueued by Optuna's retry callback, and a worker
with nothing left to claim waits for the other workers' running trials rather than leaving, so
it can take over any that go stale. The CSV is regenerated from the storage after every trial
and replaced atomically, so it never holds a torn or duplicate row, and a crash loses no
completed result.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import os
import random
import re
import socket
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator
from urllib.parse import unquote, urlsplit

from .audit import CLASSES
from .config import TrainConfig
from .errors import BcParetoError, ConfigError, DataError, TrialFailed
from .gridspec import GridPoint
from .model import cost

if TYPE_CHECKING:
    import optuna

CSV_NAME = "metrics_log.csv"
DB_NAME = "bcpareto.db"
# A worker records a heartbeat every HEARTBEAT_SECONDS; a running trial without one for
# GRACE_SECONDS is taken as dead (worker killed, machine lost), failed and queued again.
# Environment variables BCPARETO_HEARTBEAT_SECONDS / BCPARETO_GRACE_SECONDS override both
# (tests use 1 s / 4 s so a killed worker's trial is retried within seconds).
HEARTBEAT_SECONDS = 20
GRACE_SECONDS = 90  # long enough for a busy database or a slow epoch-end on a loaded machine
MAX_RETRY = 3  # a point whose worker dies 4 times is left failed ("stale"): --retry-failed
# The study's objectives, in order (also the CSV columns they come from).
OBJECTIVES = (("val_accuracy", "maximize"), ("model_size(MB)", "minimize"))
# Four balanced classes: a model under this validation accuracy learned next to nothing (e.g.
# a 4-unit dense layer in the middle of the stack); the search reports such points.
CHANCE_LEVEL = 0.30
STALE_REASON = "stale: its worker stopped sending heartbeats (killed or lost)"


def default_storage_url(run_dir: Path) -> str:
    """The embedded default: an SQLite file in the run directory."""
    return f"sqlite:///{(run_dir / DB_NAME).resolve()}"


def redact(text: str, url: str | None = None) -> str:
    """``text`` (a URL or a message) with storage passwords replaced by ***.

    Masks the password of every ``scheme://user:password@`` in the text; with ``url``, also that
    URL's password wherever else it appears, as written or percent-decoded (a driver's message
    may quote it in its own words).
    """
    masked = re.sub(r"(://[^:/@\s]*:)[^\s/]*@", r"\1***@", text)
    password = _password(url) if url else None
    for secret in {password, unquote(password)} if password else ():
        if len(secret) >= 4:  # masking a 1-3 character password would mangle every message
            masked = masked.replace(secret, "***")
    return masked


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def default_study_name(grid_name: str, points: list[GridPoint], config: TrainConfig) -> str:
    """Same grid and training settings -> same study, so a rerun resumes instead of restarting."""
    blob = json.dumps([[p.params() for p in points], config.fingerprint()], sort_keys=True)
    return f"{Path(grid_name).stem}-{config.name}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


def heartbeat_settings() -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds, from the environment or the defaults."""
    values = {}
    for name, default in (("HEARTBEAT", HEARTBEAT_SECONDS), ("GRACE", GRACE_SECONDS)):
        var = f"BCPARETO_{name}_SECONDS"
        raw = os.environ.get(var, "").strip()
        try:
            values[name] = int(raw) if raw else default
        except ValueError:
            values[name] = 0
        if values[name] < 1:
            raise ConfigError(f"{var}={raw!r}: expected a positive whole number of seconds")
    if values["GRACE"] <= values["HEARTBEAT"]:
        raise ConfigError(
            f"BCPARETO_GRACE_SECONDS ({values['GRACE']}) must exceed BCPARETO_HEARTBEAT_SECONDS "
            f"({values['HEARTBEAT']}), or live trials would be taken as dead"
        )
    return values["HEARTBEAT"], values["GRACE"]


def open_storage(url: str, *, must_exist: bool = False) -> optuna.storages.RDBStorage:
    """The shared study storage, with heartbeats and retry of stale trials switched on.

    ``must_exist``: refuse to create an SQLite file that is not there (``bcpareto status``).
    """
    import optuna
    import sqlalchemy.exc

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    heartbeat, grace = heartbeat_settings()
    engine_kwargs: dict[str, Any] = {}
    creating: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}  # several workers on one file
        path = url.split("///", 1)[-1]
        if must_exist and not Path(path).is_file():
            raise BcParetoError(f"no study storage at {path}; run `bcpareto search` first, or "
                                "pass --run-dir or --storage")
        creating = _file_lock(Path(f"{path}.lock"))  # one process creates the tables
    problem = ""
    for _ in range(3):
        try:
            with creating:
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=MAX_RETRY
                    ),
                )
        except ModuleNotFoundError as exc:  # e.g. psycopg2 for postgresql:// URLs
            problem = f"{exc}; for PostgreSQL: pip install 'bcpareto[postgres]'"
            break
        except Exception as exc:  # SQLAlchemy/driver errors: bad URL, server down, bad password
            problem = _first_line(exc)
            if not (isinstance(exc, sqlalchemy.exc.IntegrityError) or "already exists" in problem):
                break
            # Workers that start together on an empty database race to create its tables; the
            # losers see "already exists" and succeed on the next try.
            time.sleep(0.5 + random.random())
    raise BcParetoError(f"cannot open the study storage {redact(url)}: {redact(problem, url)}")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


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
    """Take the lowest-numbered WAITING trial; the storage makes WAITING -> RUNNING atomic.

    The heartbeat is recorded before the state changes, so a worker killed at any instant leaves
    no RUNNING trial without a heartbeat (Optuna never takes such a trial as stale).
    """
    import optuna
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, waiting.number)
        storage.record_heartbeat(trial_id)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, trial_id), trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker took it and already finished it
    return None


class _Heartbeat:
    """Records a heartbeat for the running trial at the storage's interval, in a daemon thread."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_id: int) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(storage, trial_id), daemon=True)

    def _beat(self, storage: optuna.storages.RDBStorage, trial_id: int) -> None:
        interval = storage.get_heartbeat_interval() or HEARTBEAT_SECONDS
        while True:
            with contextlib.suppress(Exception):
                storage.record_heartbeat(trial_id)
            if self._stop.wait(interval):
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
    elif not rows:
        return  # nothing to log yet: no header-only file
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


def update_metrics_csv(study: optuna.Study, run_dir: Path) -> None:
    """Regenerate this study's rows of run_dir/metrics_log.csv from the storage (file-locked)."""
    with _file_lock(run_dir / f".{CSV_NAME}.lock"):
        write_metrics_csv(run_dir / CSV_NAME, study_name=study.study_name, rows=completed_rows(study))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


@dataclass
class SearchSummary:
    study_name: str
    storage: str  # redacted
    completed: int = 0
    failed: list[str] = field(default_factory=list)
    at_chance: list[str] = field(default_factory=list)  # trained, but no better than guessing
    trained_here: int = 0
    wall_seconds: float = 0.0


@dataclass(frozen=True)
class StudyHandle:
    """An opened study and its storage; ``url`` may hold a password: print ``redact(url)``."""

    study: optuna.Study
    storage: optuna.storages.RDBStorage
    url: str

    @property
    def name(self) -> str:
        return self.study.study_name


def open_study(
    points: list[GridPoint],
    *,
    config: TrainConfig,
    run_dir: Path,
    grid_name: str,
    storage_url: str | None = None,
    study_name: str | None = None,
    retry_failed: bool = False,
) -> StudyHandle:
    """Create or load the study, fail stale trials and enqueue the points left to train (locked).

    Every worker calls this; it is idempotent, so any number of them can start at once. A named
    study that holds another grid or other training settings is refused rather than mixed.
    """
    import optuna

    run_dir.mkdir(parents=True, exist_ok=True)
    url = storage_url or default_storage_url(run_dir)
    name = study_name or default_study_name(grid_name, points, config)
    storage = open_storage(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    grid_hash = hashlib.sha1(json.dumps([p.params() for p in points]).encode()).hexdigest()[:8]
    with _storage_lock(storage, url, name):
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            directions=[d for _, d in OBJECTIVES],
            load_if_exists=True,
        )
        theirs = study.user_attrs
        if (theirs.get("grid_hash", grid_hash), theirs.get("config_hash", config.fingerprint())) != (
            grid_hash, config.fingerprint()
        ):
            raise BcParetoError(
                f"study {name!r} on {redact(url)} was started with another grid "
                f"({theirs.get('grid', '?')}, {theirs.get('grid_size', '?')} points) or other "
                "training settings; every worker of a study needs the same sheet and preset "
                "(or pass another --study)"
            )
        study.set_metric_names([c for c, _ in OBJECTIVES])
        study.set_user_attr("config", config.to_dict())
        study.set_user_attr("grid", Path(grid_name).name)
        study.set_user_attr("grid_size", len(points))
        study.set_user_attr("grid_hash", grid_hash)
        study.set_user_attr("config_hash", config.fingerprint())
        optuna.storages.fail_stale_trials(study)
        sync_grid(study, points, retry_failed=retry_failed)
    return StudyHandle(study=study, storage=storage, url=url)


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
    estimate: bool = True,
    echo: Callable[[str], None] = print,
) -> SearchSummary:
    """Train grid points of the study until none is waiting or running; keep metrics_log.csv in step.

    A worker that finds nothing to claim while other workers' trials run does not leave: it
    polls (every heartbeat interval) until those finish, or go stale and come back to the queue,
    so a point whose worker was killed is still trained in this run. ``estimate``: measure and
    print the time estimate (off for the workers of ``--workers N``).
    """
    import optuna

    from .data import load_data_for
    from .trial import train_and_evaluate

    started = time.perf_counter()
    check_feature_maps(points, config=config)
    handle = open_study(  # before decoding images, so a bad storage URL fails fast
        points, config=config, run_dir=run_dir, grid_name=grid_name, storage_url=storage_url,
        study_name=study_name, retry_failed=retry_failed,
    )
    study, storage, url, name = handle.study, handle.storage, handle.url, handle.name
    echo(f"Data: {data_dir} (decoded once per size and colour mode, then cached)")
    data = load_data_for(data_dir, config, on_bad_image=on_bad_image)
    echo(f"  train {len(data.train)} images; validation {len(data.val)} ({data.val_source}); "
         f"test {len(data.test)} ({data.test_source})")
    if data.skipped:
        echo(f"  skipped {len(data.skipped)} unreadable file(s): " + ", ".join(data.skipped[:5]))

    summary = SearchSummary(study_name=name, storage=redact(url))
    echo(f"Study {name!r} on {redact(url)}")

    by_id = {p.grid_id: p for p in points}
    todo = _remaining(study, points)
    running = _running(study)
    echo(f"  {len(completed_rows(study))} of {len(points)} grid points completed, {len(todo)} to train"
         + (f", {len(running)} running in other workers" if running else ""))
    progress = Progress(
        [by_id[g] for g in todo], config=config, n_train=len(data.train),
        n_eval=len(data.val) + len(data.test), echo=echo,
    )
    if todo and estimate:
        progress.announce(calibrate(points=[by_id[g] for g in todo], config=config))

    artefacts = run_dir / "runs" / name
    worker = f"{socket.gethostname()}:{os.getpid()}"
    waiting_for: list[int] = []
    while True:
        with _storage_lock(storage, url, name):
            optuna.storages.fail_stale_trials(study)
            claimed = claim_next(study, storage)
        if claimed is None:
            running = _running(study)
            if not running:
                break
            if running != waiting_for:
                echo(f"  nothing left to claim; waiting for grid point(s) "
                     f"{', '.join(map(str, running))} running elsewhere (taken over if their "
                     "worker stops sending heartbeats)")
                waiting_for = running
            time.sleep(storage.get_heartbeat_interval() or HEARTBEAT_SECONDS)
            continue
        waiting_for = []
        trial, trial_id = claimed
        trial.set_user_attr("worker", worker)
        point = by_id[int(trial.suggest_categorical("grid_id", [p.grid_id for p in points]))]
        retry_of = storage.get_trial(trial_id).system_attrs.get("failed_trial")
        if retry_of is not None:
            echo(f"  grid point {point.grid_id}: retrying trial {retry_of}, whose worker stopped")
        if estimate:
            progress.start(point)
        else:  # one of several workers: its own count would mislead, the study's does not
            echo(f"grid point {point.grid_id}: {point.describe()} (trial {trial.number}; "
                 f"{len(completed_rows(study))}/{len(points)} completed in the study)")
        try:
            with _Heartbeat(storage, trial_id):
                result = train_and_evaluate(point, config=config, data=data, model_dir=artefacts)
        except KeyboardInterrupt:
            _tell_failed(study, trial, "interrupted")
            raise
        except Exception as exc:  # noqa: BLE001 - one bad trial must not stop the search
            reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, TrialFailed) else str(exc)
            reason = redact(reason, url)
            _tell_failed(study, trial, reason[:1000])
            summary.failed.append(f"grid point {point.grid_id}: {reason.splitlines()[0][:300]}")
            echo(f"  FAILED grid point {point.grid_id}: {reason.splitlines()[0][:300]}")
            progress.finish(point, seconds=None)
            continue
        _write_atomic(artefacts / f"grid_{point.grid_id}.json", json.dumps({
            "row": result.row, "confusion": result.confusion, "classes": list(CLASSES),
            "edge_protocol": result.edge_protocol, "config": config.to_dict(),
        }, indent=1, default=str))
        if not _tell_completed(study, storage, trial, trial_id, row=result.row):
            echo(f"  grid point {point.grid_id}: trial {trial.number} was taken as dead meanwhile "
                 "(heartbeats late) and queued again; this result is not counted")
            continue
        summary.trained_here += 1
        if result.row["val_accuracy"] < CHANCE_LEVEL:
            summary.at_chance.append(
                f"grid point {point.grid_id}: val_accuracy {result.row['val_accuracy']:.3f}; "
                f"narrowest dense layer {min(point.neurons)} units, narrowest conv block "
                f"{min(point.filters)} filters"
            )
            echo(f"  warning: grid point {point.grid_id} stayed at chance level ({summary.at_chance[-1]})")
        update_metrics_csv(study, run_dir)
        progress.finish(point, seconds=result.row["wall_seconds"], row=result.row)

    update_metrics_csv(study, run_dir)  # also brings in what other workers and machines finished
    summary.completed = len(completed_rows(study))
    summary.wall_seconds = time.perf_counter() - started
    return summary


def _tell_failed(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    import optuna

    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


def _tell_completed(
    study: optuna.Study, storage: optuna.storages.RDBStorage, trial: optuna.Trial, trial_id: int,
    *, row: dict[str, Any],
) -> bool:
    """Record the result; False if the trial was failed as stale meanwhile (its retry counts)."""
    import optuna
    from optuna.trial import TrialState

    if storage.get_trial(trial_id).state != TrialState.RUNNING:
        return False
    try:
        trial.set_user_attr("row", row)
        study.tell(trial, [row[c] for c, _ in OBJECTIVES])
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    return True


def _remaining(study: optuna.Study, points: list[GridPoint]) -> list[int]:
    from optuna.trial import TrialState

    waiting = {
        _grid_id(t) for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    }
    return [p.grid_id for p in points if p.grid_id in waiting]


def _running(study: optuna.Study) -> list[int]:
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return sorted(g for g in map(_grid_id, running) if g is not None)


@dataclass(frozen=True)
class StudyStatus:
    """Where one study stands, per grid point (a point counts once, by its best trial)."""

    name: str
    grid: str  # the sheet's file name, "" when unknown
    grid_size: int
    completed: int
    waiting: int
    running: list[str]  # "grid point 2 (trial 5) on host:pid for 0:00:12"
    failed: list[str]  # "grid point 3 (trial 7): reason"
    retried: int  # failed attempts that were queued again (worker killed, Ctrl-C)

    @property
    def remaining(self) -> int:
        """Points a search would still train: not completed and not failed."""
        return self.grid_size - self.completed - len(self.failed)


def study_status(url: str, *, study_name: str | None = None) -> list[StudyStatus]:
    """Completed, running, waiting and failed grid points of every study (or one) in the storage."""
    from datetime import datetime

    from optuna.trial import TrialState

    storage = open_storage(url, must_exist=True)
    studies = storage.get_all_studies()
    if study_name is not None:
        names = [s.study_name for s in studies]
        studies = [s for s in studies if s.study_name == study_name]
        if not studies:
            raise BcParetoError(
                f"no study {study_name!r} in {redact(url)}; studies there: "
                + (", ".join(names) or "none")
            )
    now = datetime.now()
    result = []
    for frozen in studies:
        by_point: dict[int, list[optuna.trial.FrozenTrial]] = {}
        for trial in storage.get_all_trials(frozen._study_id, deepcopy=False):
            gid = _grid_id(trial)
            if gid is not None:
                by_point.setdefault(gid, []).append(trial)
        completed = waiting = n_failed = 0
        running: list[str] = []
        failed: list[str] = []
        for gid, trials in sorted(by_point.items()):
            states = [t.state for t in trials]
            n_failed += states.count(TrialState.FAIL)
            if TrialState.COMPLETE in states:
                completed += 1
            elif TrialState.RUNNING in states:
                t = next(t for t in trials if t.state == TrialState.RUNNING)
                age = _clock((now - t.datetime_start).total_seconds()) if t.datetime_start else "?"
                running.append(f"grid point {gid} (trial {t.number}) on "
                               f"{t.user_attrs.get('worker', '?')} for {age}")
            elif TrialState.WAITING in states:
                waiting += 1
            elif TrialState.FAIL in states:
                t = max((t for t in trials if t.state == TrialState.FAIL), key=lambda t: t.number)
                reason = t.user_attrs.get("fail_reason") or STALE_REASON
                failed.append(f"grid point {gid} (trial {t.number}): {reason.splitlines()[0][:200]}")
        result.append(StudyStatus(
            name=frozen.study_name,
            grid=str(frozen.user_attrs.get("grid", "")),
            grid_size=int(frozen.user_attrs.get("grid_size", len(by_point))),
            completed=completed, waiting=waiting, running=running, failed=failed,
            retried=n_failed - len(failed),
        ))
    return result


def check_data_dir(data_dir: Path) -> None:
    """The data set's folders are there (cheap: lists files, decodes nothing)."""
    from .audit import find_split

    if not data_dir.is_dir():
        raise DataError(
            f"data directory {data_dir} does not exist; pass --data-dir, set BCPARETO_DATA, "
            "or run `bcpareto data download` (expects TRAIN/ and TEST/ inside)"
        )
    for split in ("TRAIN", "TEST"):
        find_split(data_dir / split)


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
