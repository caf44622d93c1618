"""The search loop: queue the grid in the study, claim a point, train it with heartbeats, tell the result.

Every grid point is enqueued once as a WAITING trial (under a lock, so concurrent workers do not
enqueue twice). A worker claims a point by moving its trial WAITING -> RUNNING, which the storage
does atomically, so no two workers train the same point. A running trial sends heartbeats; a
trial whose worker died goes stale and is re-enqueued by Optuna's retry callback, and a worker
with nothing left to claim waits for the other workers' running trials rather than leaving, so
it can take over any that go stale. After every trial metrics_log.py regenerates the CSV from
the storage. Storage and locks: storage.py; files of a trial: runs.py; what is printed: progress.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import interrupts
from .config import TrainConfig
from .dataset import CLASSES
from .errors import BcParetoError, DataError, TrialFailed
from .gridspec import GridPoint
from .metrics_log import completed_rows, update_metrics_csv
from .model import cost
from .pausepoints import pause_point
from .progress import Progress, calibrate, unit_label
from .runs import save_record, study_dir
from .storage import HEARTBEAT_SECONDS, default_storage_url, open_storage, redact, storage_lock

if TYPE_CHECKING:
    import optuna

# The study's objectives, in order (also the CSV columns they come from).
OBJECTIVES = (("val_accuracy", "maximize"), ("model_size(MB)", "minimize"))
# Four balanced classes: a model under this validation accuracy learned next to nothing (e.g.
# a 4-unit dense layer in the middle of the stack); the search reports such points.
CHANCE_LEVEL = 0.30
STALE_REASON = "stale: its worker stopped sending heartbeats (killed or lost)"


def default_study_name(grid_name: str, points: list[GridPoint], config: TrainConfig) -> str:
    """Same grid and training settings -> same study, so a rerun resumes instead of restarting."""
    blob = json.dumps([[p.params() for p in points], config.fingerprint()], sort_keys=True)
    # Only the characters --study accepts (it becomes a folder name): others become '_'.
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", f"{Path(grid_name).stem}-{config.name}")[:80].lstrip("._-")
    return f"{stem or 'grid'}-{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


def grid_id_of(trial: optuna.trial.FrozenTrial) -> int | None:
    value = trial.user_attrs.get("grid_id")
    return int(value) if value is not None else None


def unit_of(trial: optuna.trial.FrozenTrial) -> tuple[int, int] | None:
    """(grid id, repeat) of a trial: the unit the study trains exactly once (repeat 0 if unset)."""
    gid = grid_id_of(trial)
    return None if gid is None else (gid, int(trial.user_attrs.get("repeat", 0)))


def sync_grid(
    study: optuna.Study, points: list[GridPoint], *, repeats: int = 1, retry_failed: bool = False
) -> dict[str, int]:
    """Enqueue every (point, repeat) that has no completed, waiting or running trial. Call under
    the lock. Repeat r of a point trains with another seed (``--repeats``), once like any point.

    A point whose last trial failed is enqueued again only if it was interrupted (Ctrl-C) or
    when ``retry_failed`` is set; a failure that training reported (NaN loss, out of memory) is
    kept, since rerunning it would most likely fail the same way.
    """
    from optuna.trial import TrialState

    by_unit: dict[tuple[int, int], list[optuna.trial.FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False):
        unit = unit_of(trial)
        if unit is not None:
            by_unit.setdefault(unit, []).append(trial)
    enqueued = 0
    for point, repeat in ((p, r) for p in points for r in range(repeats)):
        trials = by_unit.get((point.grid_id, repeat), [])
        states = {t.state for t in trials}
        if states & {TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING}:
            continue
        failed = [t for t in trials if t.state == TrialState.FAIL]
        if failed and not retry_failed:
            reason = max(failed, key=lambda t: t.number).user_attrs.get("fail_reason", "")
            if reason != "interrupted":
                continue
        study.enqueue_trial(
            {"grid_id": point.grid_id}, user_attrs={**point.params(), "repeat": repeat},
            skip_if_exists=False,
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
    repeats: int = 1,
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
    with storage_lock(storage, url, name):
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
        study.set_user_attr("repeats", max(repeats, int(theirs.get("repeats", 1))))
        optuna.storages.fail_stale_trials(study)
        sync_grid(study, points, repeats=repeats, retry_failed=retry_failed)
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
    repeats: int = 1,
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
    check_search_inputs(points, config=config, data_dir=data_dir, run_dir=run_dir,
                        storage_url=storage_url)  # a bad storage URL or data dir fails fast
    from .quiet import import_tensorflow  # after the cheap checks: a typo costs no TF start-up

    echo(f"Device: {import_tensorflow()}")
    echo(f"Data: {data_dir} (decoded once per size and colour mode, then cached)")
    # before the study exists; one decoded copy per image size the sheet asks for (same files, same split)
    sizes = sorted({config.at(p).image_size for p in points}, key=lambda s: s != config.image_size)
    by_size = {}
    for size in sizes:
        by_size[size] = load_data_for(data_dir, dataclasses.replace(config, image_size=size),
                                      on_bad_image=on_bad_image, progress=echo if not by_size else None)
    data = by_size[sizes[0]]
    if len(sizes) > 1:
        echo(f"  image sizes of this grid: {', '.join(f'{s} px' for s in sorted(sizes))}")
    echo(f"  train {len(data.train)} images; validation {len(data.val)} ({data.val_source}); "
         f"test {len(data.test)} ({data.test_source})")
    if data.skipped:
        echo(f"  skipped {len(data.skipped)} unreadable file(s): " + ", ".join(data.skipped[:5]))
    handle = open_study(
        points, config=config, run_dir=run_dir, grid_name=grid_name, storage_url=storage_url,
        study_name=study_name, retry_failed=retry_failed, repeats=repeats,
    )
    study, storage, url, name = handle.study, handle.storage, handle.url, handle.name

    summary = SearchSummary(study_name=name, storage=redact(url))
    echo(f"Study {name!r} on {redact(url)}")

    by_id = {p.grid_id: p for p in points}
    todo = [(by_id[g], r) for g, r in _remaining(study)]
    running = _running(study)
    n_repeats = int(study.user_attrs.get("repeats", 1))
    total = len(points) * n_repeats
    noun = "grid points" if n_repeats == 1 else f"models ({len(points)} grid points x {n_repeats} repeats)"
    echo(f"  {len(completed_rows(study))} of {total} {noun} completed, {len(todo)} to train"
         + (f", {len(running)} running in other workers" if running else ""))
    progress = Progress(
        todo, config=config, n_train=len(data.train), n_eval=len(data.val) + len(data.test), echo=echo,
    )
    if todo and estimate:
        step_seconds = calibrate(points=sorted({p for p, _ in todo}, key=lambda p: p.grid_id), config=config)
        if step_seconds is not None:
            progress.announce(step_seconds)

    artefacts = study_dir(run_dir, name)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    pause_point("queued")
    waiting_for: list[tuple[int, int]] = []
    while True:
        interrupts.check()  # an interrupt swallowed by a finalizer stops here, before a claim
        with storage_lock(storage, url, name):
            optuna.storages.fail_stale_trials(study)
            claimed = claim_next(study, storage)
        if claimed is None:
            running = _running(study)
            if not running:
                break
            if running != waiting_for:
                echo(f"  nothing left to claim; waiting for "
                     f"{', '.join((unit_label(*u) for u in running))} running elsewhere (taken over if their "
                     "worker stops sending heartbeats)")
                waiting_for = running
            time.sleep(storage.get_heartbeat_interval() or HEARTBEAT_SECONDS)
            continue
        waiting_for = []
        trial, trial_id = claimed
        trial.set_user_attr("worker", worker)
        point = by_id[int(trial.suggest_categorical("grid_id", [p.grid_id for p in points]))]
        repeat = int(trial.user_attrs.get("repeat", 0))
        label = unit_label(point.grid_id, repeat)
        try:  # every step of this point: whatever fails is this point's failure, with its reason
            retry_of = storage.get_trial(trial_id).system_attrs.get("failed_trial")
            if retry_of is not None:
                echo(f"  {label}: retrying trial {retry_of}, whose worker stopped")
            if estimate:
                progress.start(point, repeat)
            else:  # one of several workers: its own count would mislead, the study's does not
                echo(f"{label}: {point.describe()} (trial {trial.number}; "
                     f"{len(completed_rows(study))}/{total} completed in the study)")
            with _Heartbeat(storage, trial_id):
                result = train_and_evaluate(
                    point, config=config, data=by_size[config.at(point).image_size], model_dir=artefacts,
                    repeat=repeat,
                )
        except KeyboardInterrupt:
            _tell_failed(study, trial, "interrupted")
            raise
        except Exception as exc:  # noqa: BLE001 - one bad trial must not stop the search
            reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, TrialFailed) else str(exc)
            reason = redact(reason, url)
            _tell_failed(study, trial, reason[:1000])
            summary.failed.append(f"{label}: {reason.splitlines()[0][:300]}")
            echo(f"  FAILED {label}: {reason.splitlines()[0][:300]}")
            progress.finish(point, repeat, seconds=None)
            continue
        save_record(artefacts, point.grid_id, repeat=repeat, record={
            "row": result.row, "confusion": result.confusion, "classes": list(CLASSES),
            "edge_protocol": result.edge_protocol, "config": config.at(point).to_dict(),
        })
        if not _tell_completed(study, storage, trial, trial_id, row=result.row):
            echo(f"  {label}: trial {trial.number} was taken as dead meanwhile "
                 "(heartbeats late) and queued again; this result is not counted")
            continue
        summary.trained_here += 1
        if result.row["val_accuracy"] < CHANCE_LEVEL:
            summary.at_chance.append(
                f"{label}: val_accuracy {result.row['val_accuracy']:.3f}; "
                + (f"narrowest dense layer {min(point.neurons)} units, " if point.neurons else "")
                + f"narrowest conv block {min(point.filters)} filters"
            )
            echo(f"  warning: {label} stayed at chance level ({summary.at_chance[-1]})")
        pause_point("csv")
        update_metrics_csv(study, run_dir)
        progress.finish(point, repeat, seconds=result.row["wall_seconds"], row=result.row)

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


def _remaining(study: optuna.Study) -> list[tuple[int, int]]:
    """(grid id, repeat) of the waiting trials, in grid order."""
    from optuna.trial import TrialState

    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return sorted({u for u in map(unit_of, waiting) if u is not None})


def _running(study: optuna.Study) -> list[tuple[int, int]]:
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return sorted(u for u in map(unit_of, running) if u is not None)


def check_search_inputs(
    points: list[GridPoint], *, config: TrainConfig, data_dir: Path, run_dir: Path,
    storage_url: str | None,
) -> None:
    """Everything a search needs that is cheap to check, before anything is created: grid
    points that collapse, the run directory, the storage URL (and a PostgreSQL server's
    answer), the data set's folders. Decoding the images (an empty class) comes next, still before the study."""
    from .runs import check_creatable_dir
    from .storage import check_storage_reachable, check_storage_url, heartbeat_settings

    check_feature_maps(points, config=config)
    heartbeat_settings()
    check_creatable_dir(run_dir, option="--run-dir")
    url = storage_url or default_storage_url(run_dir)
    check_storage_url(url)
    check_storage_reachable(url)
    check_data_dir(data_dir)


def check_data_dir(data_dir: Path) -> None:
    """The data set's folders are there (cheap: lists files, decodes nothing)."""
    from .dataset import find_split

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
            cost(point, image_size=config.at(point).image_size, channels=config.channels,
                 padding=config.padding)
        except TrialFailed as exc:
            problems.append(str(exc))
    if problems:
        sizes = sorted({config.at(p).image_size for p in points})
        raise TrialFailed(
            f"{len(problems)} grid point(s) cannot be built at {'/'.join(map(str, sizes))} px "
            f"(padding '{config.padding}'):\n  " + "\n  ".join(problems)
            + "\nUse a larger --image-size (or image_size cell), or remove these points from the sheet."
        )
