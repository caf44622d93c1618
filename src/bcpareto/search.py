"""The search loop: claim a unit of the study, train it with heartbeats, record it, tell the result.

``run_search(request)`` runs one worker's pass: it says the header, decodes the data once per
image size, opens the study (study.py queues what is left), then repeats three named steps until
nothing is waiting or running: ``claim`` (under the study's lock: the next waiting unit, or a
sampler's draw), ``train`` (or not: a device limit, racing or an earlier run's complete files
decide first, gates.py) and ``record`` (files, then the CSV row, then the study). A worker that
finds nothing to claim while other workers' units run does not leave: it polls until those
finish, or go stale and come back to the queue, so a unit whose worker was killed is still
trained in this run. Every message goes through the one ``echo`` it was given.
One module over 400 lines on purpose: the three steps share one worker's state (``_Search``) and
read top to bottom in the order they run; apart, each would take that whole state as arguments.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import interrupts
from .dataset import CLASSES
from .draws import assign, may_sample
from .errors import BcParetoError, TrialFailed
from .faults import ENVIRONMENT_FAULT, environment_fault
from .gates import check_limits, make_judge, race, saved_result
from .gridspec import GridPoint
from .metrics_log import MetricsLogError, completed_rows, update_metrics_csv
from .pausepoints import pause_point
from .progress import Progress, calibrate, clock, stdout_gone, study_eta_line, unit_label
from .request import SearchRequest, load_sizes, model_shares
from .runs import save_image_table, save_predictions, save_record, study_dir
from .storage import HEARTBEAT_SECONDS, redact, storage_lock
from .strategy import MAX_REPEATED_PROPOSALS, RepeatedProposals, Strategy, distributions
from .study import (
    Heartbeat,
    claim_next,
    open_study,
    queue_units,
    remaining_units,
    running_units,
    same_architecture,
    study_units,
    tell_completed,
    tell_duplicate,
    tell_failed,
    tell_pruned,
)
from .tracking import open_tracker

if TYPE_CHECKING:
    import optuna


# Four balanced classes: a model under this validation accuracy learned next to nothing (e.g.
# a 4-unit dense layer in the middle of the stack); the search reports such points.
CHANCE_LEVEL = 0.30


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
class _Claim:
    """A claimed trial and the unit it trains."""

    trial: optuna.Trial
    trial_id: int
    point: GridPoint
    repeat: int
    label: str


def run_search(request: SearchRequest, *, estimate: bool = True, worker_index: int = 0,
               echo: Callable[[str], None] = print) -> SearchSummary:
    """Train units of the study until none is waiting or running; keep metrics_log.csv in step.

    The grid trains the sheet's points; a sampler (``request.strategy``) asks Optuna for the
    next model whenever nothing is queued, until ``n_trials`` models are in the study or this
    worker's ``budget_minutes`` are spent. ``estimate``: measure and print the time estimate
    (off for the workers of ``--workers N``); ``worker_index`` (1.. for those workers) varies the
    sampler's seed between them and leaves the header to their parent. ``request.tracking``
    (``--track``): each completed model is also logged to MLflow / TensorBoard (tracking.py).
    """
    request.check()  # a bad storage URL or data dir fails fast, before the backend starts
    return _Search(request, estimate=estimate, worker_index=worker_index, echo=echo).run()


class _Search:
    """One worker's pass over the study; its steps share the state set up here."""

    def __init__(self, request: SearchRequest, *, estimate: bool, worker_index: int,
                 echo: Callable[[str], None]) -> None:
        from .backends import describe_devices  # after the cheap checks: a typo costs no start-up

        self.request, self.config, self.strategy = request, request.config, request.strategy
        self.estimate, self.echo = estimate, echo
        self.started = time.perf_counter()
        # The header once: a worker of --workers N says none of it, its parent has (search_in_workers).
        header = echo if worker_index == 0 else (lambda line: None)
        header(f"Backend: {describe_devices()}")
        # before the study exists; one decoded copy per image size the sheet asks for
        self.by_size = load_sizes(list(request.points), config=self.config, strategy=self.strategy,
                                  data_dir=request.data_dir, on_bad_image=request.on_bad_image, echo=header)
        self.data = next(iter(self.by_size.values()))
        self.folds = self.data.n_folds
        handle = open_study(
            list(request.points), config=self.config, run_dir=request.run_dir, grid_name=request.grid_name,
            storage_url=request.storage_url, study_name=request.study_name, retry_failed=request.retry_failed,
            repeats=request.repeats, strategy=self.strategy, sampler_seed=self.strategy.seed + 1000 * worker_index,
        )
        self.study, self.storage, self.url, self.name = handle.study, handle.storage, handle.url, handle.name
        if worker_index == 0:  # the parent of --workers N names the study it queued
            echo(f"Study {self.name!r} on {redact(self.url)}")
        if self.strategy != Strategy():
            header(f"  {self.strategy.describe()}")
        self.tracker = open_tracker(request.tracking, run_dir=request.run_dir, study=self.name, echo=echo,
                                    announce=worker_index == 0)
        self.by_id = {p.grid_id: p for p in request.points}
        self.todo = [(self.by_id[g], r) for g, r in remaining_units(self.study) if g in self.by_id]
        self.total = len(request.points) * int(self.study.user_attrs.get("repeats", 1))
        self.summary = SearchSummary(study_name=self.name, storage=redact(self.url), total=self.total)
        if self.strategy.sampled:
            self.total = int(self.study.user_attrs.get("n_trials", 0)) or len(study_units(self.study))
        (echo if worker_index <= 1 else header)(self._counts())  # what is left: worker 1 says it
        n_fit, n_val = model_shares(self.data)
        self.progress = Progress(self.todo, config=self.config, n_train=n_fit,
                                 n_eval=n_val + len(self.data.test), echo=echo)
        if self.todo and estimate and not self.strategy.sampled:
            step_seconds = calibrate(points=sorted({p for p, _ in self.todo}, key=lambda p: p.grid_id),
                                     config=self.config)
            if step_seconds is not None:
                self.progress.announce(step_seconds)
        self.artefacts = study_dir(request.run_dir, self.name)
        self.table = save_image_table(self.artefacts, self.data.image_table())  # what predictions refer to
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        budget = self.strategy.budget_minutes
        self.deadline = self.started + budget * 60 if budget is not None else None
        self.first_sampled_id = max(self.by_id, default=-1) + 1  # sampled models' ids follow the sheet's
        self.waiting_for: list[tuple[int, int]] = []
        self.proposals = RepeatedProposals(seed=self.strategy.seed + 1000 * worker_index)
        self.stop = False
        self.pack_warned: set[int] = set()

    def _counts(self) -> str:
        running = running_units(self.study)
        others = f", {len(running)} running in other workers" if running else ""
        if self.strategy.sampled:
            return (f"  {len(study_units(self.study))} model(s) in the study "
                    f"({len(completed_rows(self.study))} completed)"
                    + (f", up to {self.total} sampled in all" if self.strategy.n_trials else "") + others)
        n_repeats = int(self.study.user_attrs.get("repeats", 1))
        noun = ("grid points" if n_repeats == 1 else f"models ({len(self.by_id)} grid points x {n_repeats} "
                + (f"folds and seeds, {self.folds}-fold CV)" if self.folds else "repeats)"))
        return f"  {len(completed_rows(self.study))} of {self.total} {noun} completed, {len(self.todo)} to train" + others

    def run(self) -> SearchSummary:
        pause_point("queued")
        while not self.stop:
            interrupts.check()  # an interrupt swallowed by a finalizer stops here, before a claim
            if self.deadline is not None and time.perf_counter() >= self.deadline:
                self.echo(f"  budget of {self.strategy.budget_minutes:g} min spent: no new model started "
                          "(the same command with a larger --budget-minutes continues the study)")
                self.summary.budget_spent = True
                break
            claims = self.claim()
            for claim, result in self.train(claims):
                self.record(claim, result)
        update_metrics_csv(self.study, self.request.run_dir, echo=self.echo)  # also what others finished
        rows = completed_rows(self.study)  # the grid's own models: refined children have ids of their own
        self.summary.completed = len(rows if self.strategy.sampled
                                     else [r for r in rows if int(r["grid_id"]) in self.by_id])
        self.summary.wall_seconds = time.perf_counter() - self.started
        return self.summary

    # -- step 1: claim ---------------------------------------------------------------------------

    def claim(self) -> list[_Claim]:
        """The next unit to train, with up to ``request.pack - 1`` more waiting units of the same
        grid point to train packed with it; none when nothing is claimable now (``self.stop``
        once all is done).

        An interrupt is held back during the claim and, once a trial is claimed, marks it failed
        ("interrupted", requeued): otherwise it could leave the claimed trial RUNNING until its
        heartbeats went stale."""
        import optuna

        claimed, point, more = None, None, []
        try:
            with interrupts.deferred(), storage_lock(self.storage, self.url, self.name):
                optuna.storages.fail_stale_trials(self.study)
                if not interrupts.received():  # none is claimed after Ctrl-C (raised below)
                    claimed = claim_next(self.study, self.storage)
                if (claimed is None and self.strategy.sampled and not interrupts.received()
                        and may_sample(self.study, self.strategy)):
                    drawn = self.proposals.values(distributions(self.strategy.space),  # the new trial's number
                                                  number=len(self.study.get_trials(deepcopy=False)))
                    sampled = "random draw after a repeat" if drawn else self.strategy.sampler
                    self.study.enqueue_trial(drawn, user_attrs={"repeat": 0, "sampled": sampled},
                                             skip_if_exists=False)
                    claimed = claim_next(self.study, self.storage)
                if claimed is not None:  # what this trial trains, fixed before the lock is let go
                    try:
                        point = assign(claimed[0], by_id=self.by_id, strategy=self.strategy, config=self.config,
                                       first_sampled_id=self.first_sampled_id)
                    except Exception as exc:
                        reason = f"could not draw a model: {type(exc).__name__}: {exc}"
                        tell_failed(self.study, claimed[0], reason[:1000])
                        self.summary.failed.append(f"trial {claimed[0].number}: {reason[:300]}")
                        self.echo(f"  FAILED trial {claimed[0].number}: {reason[:300]}")
                        return []
                    for _ in range(self._pack_for(point) - 1):  # the point's other waiting units
                        extra = claim_next(self.study, self.storage, grid_id=point.grid_id)
                        if extra is None:
                            break
                        more.append(extra)
                    pause_point("claimed")
            interrupts.check()  # one that came during the claim (a claimed trial is requeued)
            if claimed is None:
                self._wait_for_others()
                return []
            self.waiting_for = []
            claims = []
            for trial, trial_id in [claimed, *more]:
                trial.set_user_attr("worker", self.worker)
                repeat = int(trial.user_attrs.get("repeat", 0))
                claims.append(_Claim(trial, trial_id, point, repeat,
                                     unit_label(point.grid_id, repeat, folds=self.folds)))
            if self._duplicate(claims[0]):  # a sampled draw: never packed
                return []
            self.proposals.count(repeated=False)
            return claims
        except KeyboardInterrupt:
            for trial, _ in [claimed, *more] if claimed is not None else []:
                tell_failed(self.study, trial, "interrupted")
            raise

    def _pack_for(self, point: GridPoint) -> int:
        """How many units of ``point`` to train together: ``--pack``, fewer when memory says so."""
        if self.request.pack <= 1 or point.prune:  # a pruned point trains its parent, then prunes: alone
            return 1
        from .packed import pack_size

        n, reason = pack_size(point, config=self.config, wanted=self.request.pack)
        if reason is not None and point.grid_id not in self.pack_warned:
            self.pack_warned.add(point.grid_id)
            self.echo(f"  {reason}")
        return n

    def _wait_for_others(self) -> None:
        """Nothing waiting: done if nothing runs either, else poll for units that may come back."""
        running = running_units(self.study)
        if not running:
            self.stop = True
            return
        if running != self.waiting_for:
            self.echo(f"  nothing left to claim; waiting for "
                      f"{', '.join(unit_label(*u, folds=self.folds) for u in running)} running elsewhere "
                      "(taken over if their worker stops sending heartbeats)")
            self.waiting_for = running
        time.sleep(self.storage.get_heartbeat_interval() or HEARTBEAT_SECONDS)

    def _duplicate(self, claim: _Claim) -> bool:
        """A sampler proposed a model the study already has: tell it that result, train nothing."""
        same = same_architecture(self.study, claim.trial, claim.point)
        if same is None:
            return False
        told = ("being trained (this proposal is dropped)" if same.state.name == "RUNNING"
                else "its result is told again")
        self.echo(f"  {claim.label}: the same model as trial {same.number} ({claim.point.describe()}); "
                  f"{told}, nothing trained; the next sampled model is a random draw")
        tell_duplicate(self.study, claim.trial, same)
        self.summary.duplicates += 1
        if self.proposals.count(repeated=True):
            self.echo(f"  {MAX_REPEATED_PROPOSALS} proposals in a row (random draws included) were models "
                      "the study already has: little is left to find in this space; stopping")
            self.stop = True
        return True

    # -- step 2: train (unless a gate decides first) --------------------------------------------

    def train(self, claims: list[_Claim]) -> list[tuple[_Claim, Any]]:
        """(claim, TrialResult) of each claimed unit that trained: one alone, or several of one
        grid point packed into one model (packed.py). A unit decided without training (a gate)
        or failed is told to the study here and left out."""
        if not claims:
            return []
        if len(claims) == 1:
            result = self._train_one(claims[0])
            return [(claims[0], result)] if result is not None else []
        return self._train_packed(claims)

    def _train_packed(self, claims: list[_Claim]) -> list[tuple[_Claim, Any]]:
        """Train the claimed units of one grid point as one packed model. If the packed training
        fails (not an interrupt, not the machine), each unit is trained alone instead, so that a
        member's own failure (a NaN loss, memory) stays that member's."""
        from .packed import members_for, train_packed

        point = claims[0].point
        try:
            self._announce(claims[0], packed_with=claims[1:])
            claims = [c for c in claims if not self._decided_without_training(c)]
            if len(claims) <= 1:
                return [(c, r) for c in claims if (r := self._train_one(c, announce=False)) is not None]
            data = self.by_size[self.config.at(point).image_size]
            members = members_for(point, config=self.config, data=data, repeats=[c.repeat for c in claims])
            with contextlib.ExitStack() as beats:
                for claim in claims:
                    beats.enter_context(Heartbeat(self.storage, claim.trial_id))
                results = train_packed(point, members, config=self.config, data=data, model_dir=self.artefacts)
            return [(c, r.result) for c, r in zip(claims, results, strict=True)]
        except KeyboardInterrupt:
            self._requeue(claims)
            raise
        except MetricsLogError:
            raise
        except Exception as exc:
            if interrupts.received():  # e.g. the KeyboardInterrupt turned into a TensorFlow error
                self._requeue(claims)
                raise KeyboardInterrupt from exc
            if environment_fault(exc):
                for claim in claims[1:]:
                    tell_failed(self.study, claim.trial, f"{ENVIRONMENT_FAULT}(packed with {claims[0].label})")
                self._stop_for_environment(claims[0], exc)
            reason = redact(str(exc) if isinstance(exc, TrialFailed) else f"{type(exc).__name__}: {exc}", self.url)
            self.echo(f"  packed training of {len(claims)} models of grid point {point.grid_id} failed "
                      f"({reason.splitlines()[0][:200]}): training them one at a time")
            return [(c, r) for c in claims if (r := self._train_one(c)) is not None]

    def _requeue(self, claims: list[_Claim]) -> None:
        """Interrupted: every member of the pack goes back to the queue."""
        for claim in claims:
            tell_failed(self.study, claim.trial, "interrupted")

    def _train_one(self, claim: _Claim, *, announce: bool = True) -> Any | None:
        """The unit's TrialResult, or None when it was decided without training or failed
        (told to the study here). Whatever fails in these steps is this unit's failure."""
        from .trial import train_and_evaluate

        point, repeat, label = claim.point, claim.repeat, claim.label
        try:
            if announce:
                self._announce(claim)
                if self._decided_without_training(claim):
                    return None
            judge = make_judge(self.study, claim.trial, strategy=self.strategy, epochs=self.config.epochs,
                               label=label, echo=self.echo) if self.strategy.halving else None
            with Heartbeat(self.storage, claim.trial_id):
                return train_and_evaluate(
                    point, config=self.config, data=self.by_size[self.config.at(point).image_size],
                    model_dir=self.artefacts, repeat=repeat, judge=judge,
                )
        except KeyboardInterrupt:
            tell_failed(self.study, claim.trial, "interrupted")
            raise
        except MetricsLogError:
            raise  # the run directory's problem (a folder named metrics_log.csv), not this point's
        except Exception as exc:
            self._failed(claim, exc)
            return None

    def _announce(self, claim: _Claim, *, packed_with: Sequence[_Claim] = ()) -> None:
        for unit in (claim, *packed_with):
            retry_of = self.storage.get_trial(unit.trial_id).system_attrs.get("failed_trial")
            if retry_of is not None:
                self.echo(f"  {unit.label}: retrying trial {retry_of}, whose worker stopped")
        elapsed = clock(time.perf_counter() - self.started)
        if self.strategy.sampled:
            self.echo(f"[{len(study_units(self.study))}/{self.total or '?'}] {claim.label} (trial "
                      f"{claim.trial.number}, {claim.trial.user_attrs.get('sampled', 'grid')}): "
                      f"{claim.point.describe()} | elapsed {elapsed}"
                      + (f" | budget left {clock(self.deadline - time.perf_counter())}" if self.deadline else ""))
        elif self.estimate:
            self.progress.start(claim.point, claim.repeat)
        else:  # one of several workers: its own count would mislead, the study's does not
            rows = completed_rows(self.study)
            self.echo(f"{claim.label}: {claim.point.describe()} (trial {claim.trial.number}; {len(rows)}/"
                      f"{self.total} completed in the study) | elapsed {elapsed} | "
                      + study_eta_line(rows, self.todo, config=self.config))
        if packed_with:
            self.echo(f"  packed with {', '.join(c.label.removeprefix(f'grid point {claim.point.grid_id} ') for c in packed_with)}"
                      f" (--pack {self.request.pack}): {1 + len(packed_with)} models trained as one")

    def _decided_without_training(self, claim: _Claim) -> bool:
        """A device limit broken, raced out, or complete files of an earlier run: told, not trained."""
        point, repeat, label, config = claim.point, claim.repeat, claim.label, self.config
        if self.strategy.limits.any():
            row = check_limits(point, config=config, limits=self.strategy.limits,
                               images=self.by_size[config.at(point).image_size].train.images, trial=claim.trial)
            if row is not None:
                tell_pruned(self.study, self.storage, claim.trial, claim.trial_id, row=row)
                self.summary.infeasible += 1
                self.echo(f"  {label}: infeasible, not trained ({row['stop_reason']})")
                self._csv()
                return True
        if self.strategy.race and self.folds and repeat > 0:  # every point trains fold 1
            raced = race(self.study, self.artefacts, point, table=self.table, edge=config.edge_metrics)
            if raced is not None:
                tell_pruned(self.study, self.storage, claim.trial, claim.trial_id, row={
                    **point.params(), "repeat": repeat, "fold": repeat % self.folds, "n_folds": self.folds,
                    "image_size": config.at(point).image_size, "preset": config.name, "status": "raced out",
                    "stop_reason": raced, "train_seconds": 0.0})
                self.summary.stopped += 1
                self.echo(f"  {label}: not trained, {raced}")
                self._csv()
                self.progress.finish(point, repeat, seconds=None)
                return True
        saved = saved_result(self.artefacts, point, repeat, config=config)
        if saved is not None:  # trained before, its files complete, but never told (storage lost)
            if tell_completed(self.study, self.storage, claim.trial, claim.trial_id, row=saved["row"],
                              curve=saved.get("curve")):
                self.echo(f"  {label}: its files in {self.artefacts} are complete from an earlier run whose "
                          "result never reached the study: told from them, not trained again")
            self._csv()
            self.progress.finish(point, repeat, seconds=None)
            return True
        return False

    def _failed(self, claim: _Claim, exc: Exception) -> None:
        """Tell the unit's failure: interrupted and a closed stdout are requeued, the machine's
        fault stops the search (retried by a rerun), the model's own stays failed."""
        if interrupts.received():  # e.g. the KeyboardInterrupt turned into a TensorFlow error
            tell_failed(self.study, claim.trial, "interrupted")  # on its way through TF's C++: requeued
            raise KeyboardInterrupt from exc
        if isinstance(exc, BrokenPipeError):  # stdout closed (`| head`): not this point's fault
            stdout_gone(exc)
            tell_failed(self.study, claim.trial, "interrupted")
            with storage_lock(self.storage, self.url, self.name):  # queued again, for this run to train
                queue_units(self.study, list(self.request.points), units=int(self.study.user_attrs.get("repeats", 1)),
                            strategy=self.strategy, config=self.config)
            return
        reason = redact(str(exc) if isinstance(exc, TrialFailed) else f"{type(exc).__name__}: {exc}", self.url)
        if environment_fault(exc):  # not this point's fault: retried by a rerun, and the search stops
            self._stop_for_environment(claim, exc)
        tell_failed(self.study, claim.trial, reason[:1000])
        self.summary.failed.append(f"{claim.label}: {reason.splitlines()[0][:300]}")
        self.echo(f"  FAILED {claim.label}: {reason.splitlines()[0][:300]}")
        self.progress.finish(claim.point, claim.repeat, seconds=None)

    def _stop_for_environment(self, claim: _Claim, exc: BaseException) -> None:
        """The machine failed this model (environment_fault): record it for a rerun, stop the search."""
        reason = redact(f"{type(exc).__name__}: {exc}", self.url).splitlines()[0][:300]
        tell_failed(self.study, claim.trial, f"{ENVIRONMENT_FAULT}{reason}")
        with contextlib.suppress(Exception):  # the CSV may not be writable either
            update_metrics_csv(self.study, self.request.run_dir, echo=self.echo)
        raise BcParetoError(
            f"{claim.label}: {reason}. The machine, not the model, failed (a full disk, a read-only or failing "
            "file system): the search stops here. Free the space or fix the folder, then run the same "
            "command again: this model and the ones left are trained then (finished models are kept)")

    # -- step 3: record ------------------------------------------------------------------------

    def record(self, claim: _Claim, result: Any) -> None:
        """Files first (predictions, the record with its files' digests), then the CSV row, then
        the study: a kill between any two leaves nothing torn and nothing trained twice."""
        point, repeat, label = claim.point, claim.repeat, claim.label
        if result.model_path is None and "stopped_at_epoch" in result.row:  # successive halving
            row = {**result.row, "status": "stopped"}
            if tell_pruned(self.study, self.storage, claim.trial, claim.trial_id, row=row, curve=result.curve):
                self.summary.stopped += 1
                self.summary.trained_here += 1
                self.echo(f"  {label} stopped after epoch {row['stopped_at_epoch']} "
                          f"({row['train_seconds']:.0f} s of training): {row['stop_reason']}")
            self._csv()
            self.progress.finish(point, repeat, seconds=result.row["wall_seconds"])
            return
        try:
            if result.predictions is not None:
                save_predictions(self.artefacts, point.grid_id, repeat=repeat, table=self.table,
                                 predictions=result.predictions)
            save_record(self.artefacts, point.grid_id, repeat=repeat, record={
                "row": result.row, "confusion": result.confusion, "classes": list(CLASSES),
                "edge_protocol": result.edge_protocol, "config": self.config.at(point).to_dict(),
                "curve": result.curve,
            })
        except OSError as exc:
            if not environment_fault(exc):
                raise
            self._stop_for_environment(claim, exc)
        pause_point("recorded")
        # The row reaches the CSV before the study is told, so a kill between the two leaves no
        # model missing from it (the rerun tells the study from the saved record: same row).
        update_metrics_csv(self.study, self.request.run_dir, echo=self.echo,
                           pending=[{**result.row, "trial": claim.trial.number}])
        # the constraints stay those measured before training (check_limits): Optuna keeps a
        # trial's first value of each, and the int8 file's size does not depend on the weights
        if not tell_completed(self.study, self.storage, claim.trial, claim.trial_id, row=result.row,
                              curve=result.curve):
            self.echo(f"  {label}: trial {claim.trial.number} was taken as dead meanwhile "
                      "(heartbeats late) and queued again; this result is not counted")
            return
        self.summary.trained_here += 1
        if result.row["val_accuracy"] < CHANCE_LEVEL:
            self.summary.at_chance.append(
                f"{label}: val_accuracy {result.row['val_accuracy']:.3f}; "
                + (f"narrowest dense layer {min(point.neurons)} units, " if point.neurons else "")
                + f"narrowest conv block {min(point.filters)} filters"
            )
            self.echo(f"  warning: {label} stayed at chance level ({self.summary.at_chance[-1]})")
        self._csv()
        self.progress.finish(point, repeat, seconds=result.row["wall_seconds"], row=result.row)
        # after the CSV: a tracker that hangs or fails costs no row (it never raises)
        self.tracker.log_model(point.grid_id, repeat=repeat, point_params=point.params(), row=result.row,
                               curve=result.curve, tags={"trial": claim.trial.number})

    def _csv(self) -> None:
        pause_point("csv")
        update_metrics_csv(self.study, self.request.run_dir, echo=self.echo)
