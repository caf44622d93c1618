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
import errno
import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import interrupts
from .config import TrainConfig
from .dataset import CLASSES
from .errors import BcParetoError, DataError, TrialFailed
from .gridspec import GridPoint
from .metrics_log import MetricsLogError, check_metrics_csv, completed_rows, update_metrics_csv
from .model import cost
from .pausepoints import pause_point
from .progress import WORKER_COUNT_ENV, Progress, calibrate, clock, stdout_gone, study_eta, unit_label
from .runs import save_image_table, save_predictions, save_record, study_dir
from .storage import (
    HEARTBEAT_SECONDS,
    default_storage_url,
    open_storage,
    redact,
    storage_lock,
)
from .strategy import (
    MAX_REPEATED_PROPOSALS,
    Limits,
    RepeatedProposals,
    Strategy,
    architecture,
    distributions,
    encode,
    make_sampler,
)
from .tracking import Tracking, open_tracker

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


def units_per_point(config: TrainConfig, repeats: int = 1) -> int:
    """Models one grid point trains: its repeats (seeds), times the folds under cross-validation.
    Unit r of a point trains fold r % K with seed r (trial.py)."""
    return repeats * (config.folds if config.validation == "cv" else 1)


def sync_grid(
    study: optuna.Study, points: list[GridPoint], *, repeats: int = 1, retry_failed: bool = False,
    strategy: Strategy | None = None, fold_major: bool = False,
) -> dict[str, int]:
    """Enqueue every (point, repeat) that has no completed, waiting or running trial. Call under
    the lock. Repeat r of a point trains with another seed (``--repeats``), once like any point.

    A point whose last trial failed is enqueued again only if it was interrupted (Ctrl-C) or
    when ``retry_failed`` is set; a failure that training reported (NaN loss, out of memory) is
    kept, since rerunning it would most likely fail the same way. A point stopped by
    successive halving or found infeasible (PRUNED) is done, like a completed one.

    With a sampler (``strategy.sampled``: the grid as a warm start), a point the space can
    express is queued with the space's values as its parameters, so the sampler learns from it;
    and an interrupted sampled model is queued again with its own values.
    """

    by_unit: dict[tuple[int, int], list[optuna.trial.FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False):
        unit = unit_of(trial)
        if unit is not None:
            by_unit.setdefault(unit, []).append(trial)
    enqueued = 0
    # fold_major (cross-validation): every point's first fold before any point's second, so
    # claims in queue order learn something of every point first (and racing can drop points)
    order = (((p, r) for r in range(repeats) for p in points) if fold_major
             else ((p, r) for p in points for r in range(repeats)))
    for point, repeat in order:
        trials = by_unit.get((point.grid_id, repeat), [])
        if not _needs_queueing(trials, retry_failed=retry_failed):
            continue
        if strategy is not None and strategy.sampled:
            params = (encode(strategy.space, point) if strategy.space is not None else None) or {}
        else:
            params = {"grid_id": point.grid_id}
        study.enqueue_trial(params, user_attrs={**point.params(), "repeat": repeat}, skip_if_exists=False)
        enqueued += 1
    if strategy is not None and strategy.sampled:  # sampled models interrupted by Ctrl-C
        sheet = {p.grid_id for p in points}
        for unit, trials in sorted(by_unit.items()):
            last = max(trials, key=lambda t: t.number)
            if unit[0] in sheet or not _needs_queueing(trials, retry_failed=retry_failed):
                continue
            attrs = {k: v for k, v in last.user_attrs.items() if not k.startswith(_TRIAL_OWN_ATTRS)}
            study.enqueue_trial(last.params, user_attrs=attrs, skip_if_exists=False)
            enqueued += 1
    return {"enqueued": enqueued}


# user attrs a trial records for itself, not copied when its model is queued again
_TRIAL_OWN_ATTRS = ("rung_", "fail_reason", "worker", "row", "curve", "duplicate_of", "stop_reason")


def _needs_queueing(trials: list[optuna.trial.FrozenTrial], *, retry_failed: bool) -> bool:
    """A unit with these trials has no result and no trial queued, and was interrupted (or may be retried)."""
    from optuna.trial import TrialState

    if trials and all("duplicate_of" in t.user_attrs for t in trials):
        return False  # a repeated proposal: its model is another trial's
    states = {t.state for t in trials}
    if states & {TrialState.COMPLETE, TrialState.PRUNED, TrialState.WAITING, TrialState.RUNNING}:
        return False
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if failed and not retry_failed:
        reason = max(failed, key=lambda t: t.number).user_attrs.get("fail_reason", "")
        return reason == "interrupted" or reason.startswith(ENVIRONMENT_FAULT)
    return True


# A trial failed by its environment, not its model (fail_reason prefix): a rerun trains it again.
ENVIRONMENT_FAULT = "environment: "
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}


def _stop_for_environment(study: optuna.Study, trial: optuna.Trial, exc: BaseException, *, label: str,
                          run_dir: Path, url: str, echo: Callable[[str], None]) -> None:
    """The machine failed this model (environment_fault): record it for a rerun, stop the search."""
    reason = redact(f"{type(exc).__name__}: {exc}", url).splitlines()[0][:300]
    _tell_failed(study, trial, f"{ENVIRONMENT_FAULT}{reason}")
    with contextlib.suppress(Exception):  # the CSV may not be writable either
        update_metrics_csv(study, run_dir, echo=echo)
    raise BcParetoError(
        f"{label}: {reason}. The machine, not the model, failed (a full disk, a read-only or failing "
        "file system): the search stops here. Free the space or fix the folder, then run the same "
        "command again: this model and the ones left are trained then (finished models are kept)")


def environment_fault(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is the machine's fault: a full disk or quota,
    a read-only or failing file system (TensorFlow reports a full disk as a ResourceExhaustedError
    or an internal error saying so). A model too big for memory is its own fault, not this."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
            return True
        if type(exc).__name__ in ("ResourceExhaustedError", "InternalError", "UnknownError") and re.search(
                r"No space left on device|Disk quota exceeded|Read-only file system", str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


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
    stopped: int = 0  # by successive halving (trained, counted in trained_here)
    infeasible: int = 0  # over a --max-* limit, not trained
    duplicates: int = 0  # sampled again after the study had them: told, not trained
    budget_spent: bool = False
    total: int = 0  # models the study trains (grid points x folds x repeats; sampled: n_trials)


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
    strategy: Strategy | None = None,
    sampler_seed: int | None = None,
) -> StudyHandle:
    """Create or load the study, fail stale trials and enqueue the points left to train (locked).

    Every worker calls this; it is idempotent, so any number of them can start at once. A named
    study that holds another grid, other training settings or another strategy (sampler,
    halving, limits) is refused rather than mixed. ``sampler_seed``: this worker's seed for the
    strategy's sampler (workers of one study need different ones).
    """
    import optuna

    strategy = strategy or Strategy()
    run_dir.mkdir(parents=True, exist_ok=True)
    url = storage_url or default_storage_url(run_dir)
    name = study_name or default_study_name(grid_name, points, config) + strategy.name_suffix()
    sampler = make_sampler(strategy if sampler_seed is None else dataclasses.replace(strategy, seed=sampler_seed))
    storage = open_storage(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    grid_hash = hashlib.sha1(json.dumps([p.params() for p in points]).encode()).hexdigest()[:8]
    with storage_lock(storage, url, name):
        _refuse_foreign_study(storage, name, url)
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            directions=[d for _, d in OBJECTIVES],
            load_if_exists=True,
            sampler=sampler,
        )
        theirs = study.user_attrs
        mine = strategy.fingerprint()
        if (theirs.get("grid_hash", grid_hash), theirs.get("config_hash", config.fingerprint()),
                theirs.get("strategy", mine)) != (grid_hash, config.fingerprint(), mine):
            raise BcParetoError(
                f"study {name!r} on {redact(url)} was started with another grid "
                f"({theirs.get('grid', '?')}, {theirs.get('grid_size', '?')} points), other "
                "training settings or another sampler, halving or limits; every worker of a study "
                "needs the same sheet, preset and search options (or pass another --study)"
            )
        study.set_metric_names([c for c, _ in OBJECTIVES])
        study.set_user_attr("config", config.to_dict())
        study.set_user_attr("grid", Path(grid_name).name)
        study.set_user_attr("grid_size", len(points))
        study.set_user_attr("grid_hash", grid_hash)
        study.set_user_attr("config_hash", config.fingerprint())
        units = units_per_point(config, repeats)
        study.set_user_attr("repeats", max(units, int(theirs.get("repeats", 1))))
        if "strategy" not in theirs:
            study.set_user_attr("strategy", strategy.fingerprint())
        if strategy.sampled:
            study.set_user_attr("sampler", strategy.sampler)
            if strategy.n_trials is not None:
                study.set_user_attr("n_trials", max(strategy.n_trials, int(theirs.get("n_trials", 0))))
        optuna.storages.fail_stale_trials(study)
        _queue(study, points, units=units, strategy=strategy, config=config, retry_failed=retry_failed)
    return StudyHandle(study=study, storage=storage, url=url)


def _refuse_foreign_study(storage: optuna.storages.BaseStorage, name: str, url: str) -> None:
    """A study of that name that bcpareto did not make (plain Optuna, another tool) is never
    adopted: its trials would mix with ours, and its objectives may not be ours."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return  # a new study
    attrs = storage.get_study_user_attrs(study_id)
    if "grid_hash" in attrs or "config_hash" in attrs:
        return
    directions = [d.name.lower() for d in storage.get_study_directions(study_id)]
    n_trials = len(storage.get_all_trials(study_id, deepcopy=False))
    raise BcParetoError(
        f"study {name!r} on {redact(url)} was not made by bcpareto ({n_trials} trial(s), "
        f"{'/'.join(directions) or 'no'} objective(s), none of bcpareto's settings); bcpareto will not "
        "mix its models into it: pass another --study (or leave --study out)")


def _queue(study: optuna.Study, points: list[GridPoint], *, units: int, strategy: Strategy,
           config: TrainConfig, retry_failed: bool = False) -> None:
    """sync_grid as this search queues: the sheet's points (each ``units`` times) unless a
    sampler draws without --warm-start; under the lock."""
    if not strategy.sampled or strategy.warm_start:
        sync_grid(study, points, repeats=units if not strategy.sampled else 1,
                  retry_failed=retry_failed, strategy=strategy, fold_major=config.validation == "cv")
    else:
        sync_grid(study, [], retry_failed=retry_failed, strategy=strategy)


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
    strategy: Strategy | None = None,
    worker_index: int = 0,
    tracking: Tracking | None = None,
    echo: Callable[[str], None] = print,
) -> SearchSummary:
    """Train models of the study until none is waiting or running; keep metrics_log.csv in step.

    The grid trains the sheet's points; a sampler (``strategy``) asks Optuna for the next model
    whenever nothing is queued, until ``n_trials`` models are in the study or this worker's
    ``budget_minutes`` are spent. A worker that finds nothing to claim while other workers'
    trials run does not leave: it polls (every heartbeat interval) until those finish, or go
    stale and come back to the queue, so a point whose worker was killed is still trained in
    this run. ``estimate``: measure and print the time estimate (off for the workers of
    ``--workers N``); ``worker_index`` varies the sampler's seed between workers. ``tracking``
    (``--track``): each completed model is also logged to MLflow / TensorBoard (tracking.py).
    """
    import optuna

    from .trial import train_and_evaluate

    strategy = strategy or Strategy()
    started = time.perf_counter()
    check_search_inputs(points, config=config, data_dir=data_dir, run_dir=run_dir,
                        storage_url=storage_url)  # a bad storage URL or data dir fails fast
    from .backends import describe_devices  # after the cheap checks: a typo costs no start-up

    # The header once: a worker of --workers N says none of it, its parent has (search_in_workers).
    header = echo if worker_index == 0 else (lambda line: None)
    counts = echo if worker_index <= 1 else header  # what is left to train: worker 1 says it
    header(f"Backend: {describe_devices()}")
    # before the study exists; one decoded copy per image size the sheet asks for (same files, same split)
    by_size = load_sizes(points, config=config, strategy=strategy, data_dir=data_dir, on_bad_image=on_bad_image,
                         echo=header)
    data = next(iter(by_size.values()))
    n_fit, n_val = model_shares(data)
    handle = open_study(
        points, config=config, run_dir=run_dir, grid_name=grid_name, storage_url=storage_url,
        study_name=study_name, retry_failed=retry_failed, repeats=repeats, strategy=strategy,
        sampler_seed=strategy.seed + 1000 * worker_index,
    )
    study, storage, url, name = handle.study, handle.storage, handle.url, handle.name

    summary = SearchSummary(study_name=name, storage=redact(url),
                            total=len(points) * int(study.user_attrs.get("repeats", 1)))
    if worker_index == 0:  # the parent of --workers N names the study it queued
        echo(f"Study {name!r} on {redact(url)}")
    if strategy != Strategy():
        header(f"  {strategy.describe()}")
    tracker = open_tracker(tracking, run_dir=run_dir, study=name, echo=echo, announce=worker_index == 0)

    by_id = {p.grid_id: p for p in points}
    todo = [(by_id[g], r) for g, r in _remaining(study) if g in by_id]
    running = _running(study)
    n_repeats = int(study.user_attrs.get("repeats", 1))
    total = len(points) * n_repeats
    if strategy.sampled:
        total = int(study.user_attrs.get("n_trials", 0)) or len(_units(study))
        counts(f"  {len(_units(study))} model(s) in the study ({len(completed_rows(study))} completed)"
             + (f", up to {total} sampled in all" if strategy.n_trials else "")
             + (f", {len(running)} running in other workers" if running else ""))
    else:
        noun = ("grid points" if n_repeats == 1 else f"models ({len(points)} grid points x {n_repeats} "
                + (f"folds and seeds, {data.n_folds}-fold CV)" if data.n_folds else "repeats)"))
        counts(f"  {len(completed_rows(study))} of {total} {noun} completed, {len(todo)} to train"
             + (f", {len(running)} running in other workers" if running else ""))
    progress = Progress(
        todo, config=config, n_train=n_fit, n_eval=n_val + len(data.test), echo=echo,
    )
    if todo and estimate and not strategy.sampled:
        step_seconds = calibrate(points=sorted({p for p, _ in todo}, key=lambda p: p.grid_id), config=config)
        if step_seconds is not None:
            progress.announce(step_seconds)

    artefacts = study_dir(run_dir, name)
    table = save_image_table(artefacts, data.image_table())  # what kept predictions refer to
    worker = f"{socket.gethostname()}:{os.getpid()}"
    deadline = started + strategy.budget_minutes * 60 if strategy.budget_minutes is not None else None
    first_sampled_id = max(by_id, default=-1) + 1  # sampled models' ids follow the sheet's
    pause_point("queued")
    waiting_for: list[tuple[int, int]] = []
    proposals = RepeatedProposals(seed=strategy.seed + 1000 * worker_index)  # after a repeat: random draws
    while True:
        interrupts.check()  # an interrupt swallowed by a finalizer stops here, before a claim
        if deadline is not None and time.perf_counter() >= deadline:
            echo(f"  budget of {strategy.budget_minutes:g} min spent: no new model started "
                 "(the same command with a larger --budget-minutes continues the study)")
            summary.budget_spent = True
            break
        # An interrupt is held back during the claim and, once a trial is claimed, marks it
        # failed ("interrupted", requeued) up to the try below that does the same: otherwise it
        # could leave the claimed trial RUNNING until its heartbeats went stale.
        claimed = None
        try:
            with interrupts.deferred(), storage_lock(storage, url, name):
                optuna.storages.fail_stale_trials(study)
                if not interrupts.received():  # none is claimed after Ctrl-C (raised below)
                    claimed = claim_next(study, storage)
                if (claimed is None and strategy.sampled and not interrupts.received()
                        and _may_sample(study, strategy)):
                    drawn = proposals.values(distributions(strategy.space),  # the new trial's number
                                             number=len(study.get_trials(deepcopy=False)))
                    sampled = "random draw after a repeat" if drawn else strategy.sampler
                    study.enqueue_trial(drawn, user_attrs={"repeat": 0, "sampled": sampled},
                                        skip_if_exists=False)
                    claimed = claim_next(study, storage)
                if claimed is not None:  # what this trial trains, fixed before the lock is let go
                    try:
                        point = _assign(claimed[0], by_id=by_id, strategy=strategy, config=config,
                                        first_sampled_id=first_sampled_id)
                    except Exception as exc:
                        reason = f"could not draw a model: {type(exc).__name__}: {exc}"
                        _tell_failed(study, claimed[0], reason[:1000])
                        summary.failed.append(f"trial {claimed[0].number}: {reason[:300]}")
                        echo(f"  FAILED trial {claimed[0].number}: {reason[:300]}")
                        continue
                    pause_point("claimed")
            interrupts.check()  # one that came during the claim (a claimed trial is requeued)
            if claimed is None:
                running = _running(study)
                if not running:
                    break
                if running != waiting_for:
                    echo(f"  nothing left to claim; waiting for "
                         f"{', '.join(unit_label(*u, folds=data.n_folds) for u in running)} running elsewhere (taken over if their "
                         "worker stops sending heartbeats)")
                    waiting_for = running
                time.sleep(storage.get_heartbeat_interval() or HEARTBEAT_SECONDS)
                continue
            waiting_for = []
            trial, trial_id = claimed
            trial.set_user_attr("worker", worker)
            repeat = int(trial.user_attrs.get("repeat", 0))
            label = unit_label(point.grid_id, repeat, folds=data.n_folds)
            same = _same_architecture(study, trial, point)
            if same is not None:  # a sampler proposed a model the study already has: no training
                told = ("being trained (this proposal is dropped)" if same.state.name == "RUNNING"
                        else "its result is told again")
                echo(f"  {label}: the same model as trial {same.number} ({point.describe()}); "
                     f"{told}, nothing trained; the next sampled model is a random draw")
                _tell_duplicate(study, trial, same)
                summary.duplicates += 1
                if proposals.count(repeated=True):
                    echo(f"  {MAX_REPEATED_PROPOSALS} proposals in a row (random draws included) were models "
                         "the study already has: little is left to find in this space; stopping")
                    break
                continue
            proposals.count(repeated=False)
        except KeyboardInterrupt:
            if claimed is not None:
                _tell_failed(study, claimed[0], "interrupted")
            raise
        try:  # every step of this point: whatever fails is this point's failure, with its reason
            retry_of = storage.get_trial(trial_id).system_attrs.get("failed_trial")
            if retry_of is not None:
                echo(f"  {label}: retrying trial {retry_of}, whose worker stopped")
            if strategy.sampled:
                echo(f"[{len(_units(study))}/{total or '?'}] {label} (trial {trial.number}, "
                     f"{trial.user_attrs.get('sampled', 'grid')}): "
                     f"{point.describe()} | elapsed {clock(time.perf_counter() - started)}"
                     + (f" | budget left {clock(deadline - time.perf_counter())}" if deadline else ""))
            elif estimate:
                progress.start(point, repeat)
            else:  # one of several workers: its own count would mislead, the study's does not
                rows = completed_rows(study)
                echo(f"{label}: {point.describe()} (trial {trial.number}; {len(rows)}/{total} completed in "
                     f"the study) | elapsed {clock(time.perf_counter() - started)} | "
                     + _study_eta(rows, todo, config=config))
            infeasible = None
            if strategy.limits.any():
                infeasible = check_limits(point, config=config, limits=strategy.limits,
                                          images=by_size[config.at(point).image_size].train.images, trial=trial)
            if infeasible is not None:
                _tell_pruned(study, storage, trial, trial_id, row=infeasible)
                summary.infeasible += 1
                echo(f"  {label}: infeasible, not trained ({infeasible['stop_reason']})")
                pause_point("csv")
                update_metrics_csv(study, run_dir, echo=echo)
                continue
            raced = (_race(study, artefacts, point, table=table, edge=config.edge_metrics)
                     if strategy.race and data.n_folds and repeat > 0 else None)  # every point trains fold 1
            if raced is not None:
                _tell_pruned(study, storage, trial, trial_id, row={
                    **point.params(), "repeat": repeat, "fold": repeat % data.n_folds, "n_folds": data.n_folds,
                    "image_size": config.at(point).image_size, "preset": config.name, "status": "raced out",
                    "stop_reason": raced, "train_seconds": 0.0})
                summary.stopped += 1
                echo(f"  {label}: not trained, {raced}")
                pause_point("csv")
                update_metrics_csv(study, run_dir, echo=echo)
                progress.finish(point, repeat, seconds=None)
                continue
            saved = _saved_result(artefacts, point, repeat, config=config)
            if saved is not None:  # trained before, its files complete, but never told (storage lost)
                if _tell_completed(study, storage, trial, trial_id, row=saved["row"], curve=saved.get("curve")):
                    echo(f"  {label}: its files in {artefacts} are complete from an earlier run whose result "
                         "never reached the study: told from them, not trained again")
                pause_point("csv")
                update_metrics_csv(study, run_dir, echo=echo)
                progress.finish(point, repeat, seconds=None)
                continue
            judge = make_judge(study, trial, strategy=strategy, epochs=config.epochs,
                               label=label, echo=echo) if strategy.halving else None
            with _Heartbeat(storage, trial_id):
                result = train_and_evaluate(
                    point, config=config, data=by_size[config.at(point).image_size], model_dir=artefacts,
                    repeat=repeat, judge=judge,
                )
        except KeyboardInterrupt:
            _tell_failed(study, trial, "interrupted")
            raise
        except MetricsLogError:
            raise  # the run directory's problem (a folder named metrics_log.csv), not this point's
        except Exception as exc:
            if interrupts.received():  # e.g. the KeyboardInterrupt turned into a TensorFlow error
                _tell_failed(study, trial, "interrupted")  # on its way through TF's C++: requeued
                raise KeyboardInterrupt from exc
            if isinstance(exc, BrokenPipeError):  # stdout closed (`| head`): not this point's fault
                stdout_gone(exc)
                _tell_failed(study, trial, "interrupted")
                with storage_lock(storage, url, name):  # queued again, for this run to train
                    _queue(study, points, units=int(study.user_attrs.get("repeats", 1)), strategy=strategy,
                           config=config)
                continue
            reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, TrialFailed) else str(exc)
            reason = redact(reason, url)
            if environment_fault(exc):  # not this point's fault: retried by a rerun, and the search stops
                _stop_for_environment(study, trial, exc, label=label, run_dir=run_dir, url=url, echo=echo)
            _tell_failed(study, trial, reason[:1000])
            summary.failed.append(f"{label}: {reason.splitlines()[0][:300]}")
            echo(f"  FAILED {label}: {reason.splitlines()[0][:300]}")
            progress.finish(point, repeat, seconds=None)
            continue
        if result.model_path is None and "stopped_at_epoch" in result.row:  # successive halving
            row = {**result.row, "status": "stopped"}
            if _tell_pruned(study, storage, trial, trial_id, row=row, curve=result.curve):
                summary.stopped += 1
                summary.trained_here += 1
                echo(f"  {label} stopped after epoch {row['stopped_at_epoch']} "
                     f"({row['train_seconds']:.0f} s of training): {row['stop_reason']}")
            pause_point("csv")
            update_metrics_csv(study, run_dir, echo=echo)
            progress.finish(point, repeat, seconds=result.row["wall_seconds"])
            continue
        try:
            if result.predictions is not None:
                save_predictions(artefacts, point.grid_id, repeat=repeat, table=table,
                                 predictions=result.predictions)
            save_record(artefacts, point.grid_id, repeat=repeat, record={
                "row": result.row, "confusion": result.confusion, "classes": list(CLASSES),
                "edge_protocol": result.edge_protocol, "config": config.at(point).to_dict(),
                "curve": result.curve,
            })
        except OSError as exc:
            if not environment_fault(exc):
                raise
            _stop_for_environment(study, trial, exc, label=label, run_dir=run_dir, url=url, echo=echo)
        pause_point("recorded")
        # The row reaches the CSV before the study is told, so a kill between the two leaves no
        # model missing from it (the rerun tells the study from the saved record: same row).
        update_metrics_csv(study, run_dir, echo=echo, pending=[{**result.row, "trial": trial.number}])
        # the constraints stay those measured before training (check_limits): Optuna keeps a
        # trial's first value of each, and the int8 file's size does not depend on the weights
        if not _tell_completed(study, storage, trial, trial_id, row=result.row, curve=result.curve):
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
        update_metrics_csv(study, run_dir, echo=echo)
        progress.finish(point, repeat, seconds=result.row["wall_seconds"], row=result.row)
        # after the CSV: a tracker that hangs or fails costs no row (it never raises)
        tracker.log_model(point.grid_id, repeat=repeat, point_params=point.params(), row=result.row,
                          curve=result.curve, tags={"trial": trial.number})

    update_metrics_csv(study, run_dir, echo=echo)  # also brings in what other workers and machines finished
    rows = completed_rows(study)  # the grid's own models: refined children have ids of their own
    summary.completed = len(rows if strategy.sampled else [r for r in rows if int(r["grid_id"]) in by_id])
    summary.wall_seconds = time.perf_counter() - started
    return summary


def load_sizes(points: list[GridPoint], *, config: TrainConfig, strategy: Strategy, data_dir: Path,
               on_bad_image: str, echo: Callable[[str], None]) -> dict[int, Any]:
    """The data at every image size the search may train (first: the preset's), and the header
    lines that say what it holds."""
    from .data import load_data_for

    echo(f"Data: {data_dir} (decoded once per size and colour mode, then cached)")
    sizes = image_sizes(points, config, strategy)
    by_size = {}
    for size in sizes:
        by_size[size] = load_data_for(data_dir, dataclasses.replace(config, image_size=size),
                                      on_bad_image=on_bad_image, progress=echo if not by_size else None)
    data = by_size[sizes[0]]
    if len(sizes) > 1:
        echo(f"  image sizes of this grid: {', '.join(f'{s} px' for s in sorted(sizes))}")
    n_fit, n_val = model_shares(data)
    if data.n_folds:
        echo(f"  TRAIN {len(data.train)} images in {data.n_folds} folds ({data.val_source}): each model "
             f"trains on ~{n_fit}, validates on the other ~{n_val}; "
             f"test {len(data.test)} ({data.test_source})")
    else:
        echo(f"  train {len(data.train)} images; validation {len(data.val)} ({data.val_source}); "
             f"test {len(data.test)} ({data.test_source})")
    if data.skipped:
        echo(f"  skipped {len(data.skipped)} unreadable file(s): " + ", ".join(data.skipped[:5]))
    return by_size


def model_shares(data: Any) -> tuple[int, int]:
    """(images one model trains on, images it validates on): under CV, fold 1's shares."""
    n_val = int((data.folds == 0).sum()) if data.folds is not None else len(data.val)
    return len(data.train) - (n_val if data.folds is not None else 0), n_val


def announce_estimate(points: list[GridPoint], study: optuna.Study, *, config: TrainConfig, data: Any,
                      echo: Callable[[str], None], workers: int = 1) -> None:
    """The whole grid's time estimate before the first model (a short calibration: TensorFlow
    times one training step of the cheapest and of the costliest point)."""
    by_id = {p.grid_id: p for p in points}
    todo = [(by_id[g], r) for g, r in _remaining(study) if g in by_id]
    if not todo:
        return
    n_fit, n_val = model_shares(data)
    step_seconds = calibrate(points=sorted({p for p, _ in todo}, key=lambda p: p.grid_id), config=config)
    if step_seconds is not None:
        Progress(todo, config=config, n_train=n_fit, n_eval=n_val + len(data.test), echo=echo).announce(
            step_seconds, workers=workers)


def image_sizes(points: list[GridPoint], config: TrainConfig, strategy: Strategy) -> list[int]:
    """Every input side the search may train (the sheet's, and the space's when a sampler draws),
    the preset's own first, then ascending: the order the search decodes them in."""
    sizes = {config.at(p).image_size for p in points} if not strategy.sampled or strategy.warm_start else set()
    if strategy.sampled and strategy.space is not None:
        spec = strategy.space.distributions().get("image_size")
        if spec is None:
            sizes.add(config.image_size)
        elif spec[0] == "categorical":
            sizes |= {int(v) for v in spec[1]}
        else:  # a fixed value (low == high): space.py refuses a range
            sizes.add(int(spec[1]))
    return sorted(sizes or {config.image_size}, key=lambda s: (s != config.image_size, s))


def _units(study: optuna.Study) -> set[tuple[int, int]]:
    """The study's models: (grid id, repeat) of every trial but the repeated proposals."""
    return {u for t in study.get_trials(deepcopy=False)
            if (u := unit_of(t)) is not None and "duplicate_of" not in t.user_attrs}


def _may_sample(study: optuna.Study, strategy: Strategy) -> bool:
    """Whether the study has room for one more sampled model (``n_trials`` counts every model:
    trained, stopped, infeasible, warm-start; a proposal of a model the study has is none)."""
    if strategy.n_trials is None:
        return True
    unassigned = [t for t in study.get_trials(deepcopy=False) if unit_of(t) is None]
    return len(_units(study)) + len(unassigned) < strategy.n_trials


def _assign(
    trial: optuna.Trial, *, by_id: dict[int, GridPoint], strategy: Strategy, config: TrainConfig,
    first_sampled_id: int,
) -> GridPoint:
    """The model this claimed trial trains: its queued grid point, or the sampler's draw."""
    stale = [k for k, v in trial.user_attrs.items() if k.startswith("rung_") and v is not None]
    for key in stale:  # a retry copies its failed trial's attrs: its rungs are judged afresh
        trial.set_user_attr(key, None)
    gid = trial.user_attrs.get("grid_id")
    if not strategy.sampled:
        point = by_id[int(trial.suggest_categorical("grid_id", list(by_id)))]
    elif gid is not None and int(gid) in by_id:  # the warm start's grid point
        point = by_id[int(gid)]
        if encode(strategy.space, point) is not None:  # queued with the space's values: record them
            for name, distribution in distributions(strategy.space).items():
                _suggest(trial, name, distribution)
    else:
        values = {name: _suggest(trial, name, distribution)
                  for name, distribution in distributions(strategy.space).items()}
        new_id = int(gid) if gid is not None else next_free_id(trial.study, first=first_sampled_id)
        point = strategy.space.point(values, grid_id=new_id)
    if gid is None:
        trial.set_user_attr("grid_id", point.grid_id)
        for key, value in point.params().items():
            trial.set_user_attr(key, value)
    trial.set_user_attr("architecture", architecture(point, default_size=config.image_size))
    return point


def next_free_id(study: optuna.Study, *, first: int = 0) -> int:
    """A grid id no model of the study has or has reserved (call under the study's lock)."""
    ids = [i for i in map(grid_id_of, study.get_trials(deepcopy=False)) if i is not None]
    ids += [int(i) for i in study.user_attrs.get("reserved_grid_ids", [])]
    return max([first - 1, *ids]) + 1


def reserve_id(study: optuna.Study, *, first: int = 0) -> int:
    """next_free_id, kept for a model whose trial is added later (refine); under the lock."""
    new_id = next_free_id(study, first=first)
    study.set_user_attr("reserved_grid_ids", [*study.user_attrs.get("reserved_grid_ids", []), new_id])
    return new_id


def _suggest(trial: optuna.Trial, name: str, distribution: Any) -> Any:
    """``trial.suggest_*`` for one Optuna distribution (a queued value is returned as queued)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, log=distribution.log)
    return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)


def _study_eta(rows: list[dict[str, Any]], todo: list[tuple[GridPoint, int]], *, config: TrainConfig) -> str:
    """'ETA h:mm:ss' for the study, from its finished models' wall seconds (progress.study_eta)."""
    done = {(int(r["grid_id"]), int(r.get("repeat") or 0)) for r in rows}
    finished = [(int(r["macs"]), float(r["wall_seconds"])) for r in rows
                if r.get("macs") not in (None, "") and r.get("wall_seconds") not in (None, "")]
    left = [cost(p, image_size=config.at(p).image_size, channels=config.channels, padding=config.padding).macs
            for p, repeat in todo if (p.grid_id, repeat) not in done]
    try:
        workers = int(os.environ.get(WORKER_COUNT_ENV, "1"))
    except ValueError:
        workers = 1
    eta = study_eta(finished, left, workers=workers)
    return "ETA after the first model" if eta is None else f"ETA {clock(eta)}"


def _same_architecture(
    study: optuna.Study, trial: optuna.Trial, point: GridPoint,
) -> optuna.trial.FrozenTrial | None:
    """A trial of the same model: a finished one (completed, stopped or infeasible), else one that
    an earlier claim is training now (another worker's; two proposals that differ only in values
    the model ignores, e.g. dense_units without dense layers, are one model).

    Only a running trial with a lower number counts, so of two claims of one model the later one
    gives way, whichever worker looks first.
    """
    from optuna.trial import TrialState

    mine = trial.user_attrs.get("architecture")
    repeat = trial.user_attrs.get("repeat", 0)
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    same = [other for other in study.get_trials(deepcopy=False, states=states)
            if other.number != trial.number and other.user_attrs.get("architecture") == mine
            and other.user_attrs.get("repeat", 0) == repeat and "duplicate_of" not in other.user_attrs
            and (other.state != TrialState.RUNNING or other.number < trial.number)]
    finished = [t for t in same if t.state != TrialState.RUNNING]
    return (finished or same or [None])[0]


def _tell_duplicate(study: optuna.Study, trial: optuna.Trial, same: optuna.trial.FrozenTrial) -> None:
    """Tell the sampler what the earlier trial of this model found (no row: the CSV has it once)."""
    from optuna.trial import TrialState

    trial.set_user_attr("duplicate_of", same.number)
    if same.state == TrialState.RUNNING:  # no result yet: the sampler ignores a failed trial
        trial.set_user_attr("fail_reason", f"the same model as trial {same.number}, in training")
        study.tell(trial, state=TrialState.FAIL)
        return
    for key, value in same.system_attrs.items():  # Optuna keeps constraints as 'constraints:<name>'
        if key.startswith("constraints:"):
            trial.set_constraint(key.removeprefix("constraints:"), value)
    if same.state == TrialState.COMPLETE:
        study.tell(trial, same.values)
    else:
        study.tell(trial, state=TrialState.PRUNED)


def _race(study: optuna.Study, artefacts: Path, point: GridPoint, *, table: str, edge: bool) -> str | None:
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


def _saved_result(artefacts: Path, point: GridPoint, repeat: int, *, config: TrainConfig) -> dict[str, Any] | None:
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


def _tell_failed(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    import optuna

    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


def _tell_pruned(
    study: optuna.Study, storage: optuna.storages.RDBStorage, trial: optuna.Trial, trial_id: int,
    *, row: dict[str, Any], curve: dict[str, list[float]] | None = None,
) -> bool:
    """Record a model stopped by halving or found infeasible: PRUNED, never retried, its row kept."""
    return _tell_result(study, storage, trial, trial_id, row=row, curve=curve, stopped=True)


def _tell_completed(
    study: optuna.Study, storage: optuna.storages.RDBStorage, trial: optuna.Trial, trial_id: int,
    *, row: dict[str, Any], curve: dict[str, list[float]] | None = None,
) -> bool:
    """Record the result; False if the trial was failed as stale meanwhile (its retry counts)."""
    return _tell_result(study, storage, trial, trial_id, row=row, curve=curve, stopped=False)


def _tell_result(
    study: optuna.Study, storage: optuna.storages.RDBStorage, trial: optuna.Trial, trial_id: int,
    *, row: dict[str, Any], curve: dict[str, list[float]] | None, stopped: bool,
) -> bool:
    """Store the row (and curve) and tell COMPLETE with the objectives, or PRUNED; False if the
    trial was failed as stale meanwhile."""
    import optuna
    from optuna.trial import TrialState

    if storage.get_trial(trial_id).state != TrialState.RUNNING:
        return False
    try:
        trial.set_user_attr("row", row)
        if stopped:
            trial.set_user_attr("stop_reason", row.get("stop_reason", ""))
        if curve is not None:
            trial.set_user_attr("curve", curve)
        if stopped:
            study.tell(trial, state=TrialState.PRUNED)
        else:
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
    check_metrics_csv(run_dir)  # a folder named metrics_log.csv: before anything is trained
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
