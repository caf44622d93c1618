"""The study: its objectives, the queue of units, claims, heartbeats, and telling results.

A unit is one model the study trains exactly once: (grid id, repeat), where a repeat is another
seed and, under cross-validation, another fold (unit r of a point trains fold r % K). Every unit
is enqueued once as a WAITING trial (under a lock, so concurrent workers do not enqueue twice).
A worker claims a unit by moving its trial WAITING -> RUNNING, which the storage does
atomically, so no two workers train the same unit. A running trial sends heartbeats; a trial
whose worker died goes stale and is re-enqueued by Optuna's retry callback. The loop that
drives all this is search.py; storage and locks are storage.py. Over 400 lines on purpose: the
queue, the claim and the tell share one bookkeeping of units and trial states, and change together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import TrainConfig
from .errors import BcParetoError
from .faults import ENVIRONMENT_FAULT
from .gridspec import GridPoint
from .storage import HEARTBEAT_SECONDS, default_storage_url, open_storage, redact, storage_lock
from .strategy import Strategy, encode, make_sampler

if TYPE_CHECKING:
    import optuna

# The study's objectives, in order (also the CSV columns they come from).
OBJECTIVES = (("val_accuracy", "maximize"), ("model_size(MB)", "minimize"))


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
        if not needs_queueing(trials, retry_failed=retry_failed):
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
            if unit[0] in sheet or not needs_queueing(trials, retry_failed=retry_failed):
                continue
            attrs = {k: v for k, v in last.user_attrs.items() if not k.startswith(_TRIAL_OWN_ATTRS)}
            study.enqueue_trial(last.params, user_attrs=attrs, skip_if_exists=False)
            enqueued += 1
    return {"enqueued": enqueued}


# user attrs a trial records for itself, not copied when its model is queued again
_TRIAL_OWN_ATTRS = ("rung_", "fail_reason", "worker", "row", "curve", "duplicate_of", "stop_reason")


def needs_queueing(trials: list[optuna.trial.FrozenTrial], *, retry_failed: bool) -> bool:
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


def claim_next(
    study: optuna.Study, storage: optuna.storages.RDBStorage, *, grid_id: int | None = None
) -> tuple[optuna.Trial, int] | None:
    """Take the lowest-numbered WAITING trial (of grid point ``grid_id`` when given: the further
    members of a packed group); the storage makes WAITING -> RUNNING atomic.

    The heartbeat is recorded before the state changes, so a worker killed at any instant leaves
    no RUNNING trial without a heartbeat (Optuna never takes such a trial as stale).
    """
    import optuna
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if grid_id is not None and grid_id_of(waiting) != grid_id:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, waiting.number)
        storage.record_heartbeat(trial_id)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, trial_id), trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker took it and already finished it
    return None


class Heartbeat:
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

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


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
        queue_units(study, points, units=units, strategy=strategy, config=config, retry_failed=retry_failed)
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


def queue_units(study: optuna.Study, points: list[GridPoint], *, units: int, strategy: Strategy,
           config: TrainConfig, retry_failed: bool = False) -> None:
    """sync_grid as this search queues: the sheet's points (each ``units`` times) unless a
    sampler draws without --warm-start; under the lock."""
    if not strategy.sampled or strategy.warm_start:
        sync_grid(study, points, repeats=units if not strategy.sampled else 1,
                  retry_failed=retry_failed, strategy=strategy, fold_major=config.validation == "cv")
    else:
        sync_grid(study, [], retry_failed=retry_failed, strategy=strategy)


def study_units(study: optuna.Study) -> set[tuple[int, int]]:
    """The study's models: (grid id, repeat) of every trial but the repeated proposals."""
    return {u for t in study.get_trials(deepcopy=False)
            if (u := unit_of(t)) is not None and "duplicate_of" not in t.user_attrs}


def remaining_units(study: optuna.Study) -> list[tuple[int, int]]:
    """(grid id, repeat) of the waiting trials, in grid order."""
    from optuna.trial import TrialState

    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return sorted({u for u in map(unit_of, waiting) if u is not None})


def running_units(study: optuna.Study) -> list[tuple[int, int]]:
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return sorted(u for u in map(unit_of, running) if u is not None)


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


def same_architecture(
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


def tell_duplicate(study: optuna.Study, trial: optuna.Trial, same: optuna.trial.FrozenTrial) -> None:
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


def tell_failed(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    import optuna

    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


def tell_pruned(
    study: optuna.Study, storage: optuna.storages.RDBStorage, trial: optuna.Trial, trial_id: int,
    *, row: dict[str, Any], curve: dict[str, list[float]] | None = None,
) -> bool:
    """Record a model stopped by halving or found infeasible: PRUNED, never retried, its row kept."""
    return _tell_result(study, storage, trial, trial_id, row=row, curve=curve, stopped=True)


def tell_completed(
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
