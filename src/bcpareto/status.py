"""`bcpareto status`: where each study in a storage stands, per grid point. Reads, never writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import BcParetoError
from .progress import clock, unit_label
from .study import STALE_REASON, unit_of
from .storage import open_storage, redact

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class StudyStatus:
    """Where one study stands, per model: a grid point, or with --repeats each (point, repeat),
    counts once, by its best trial."""

    name: str
    grid: str  # the sheet's file name, "" when unknown
    grid_size: int  # models the study trains: grid points x repeats
    completed: int
    waiting: int
    running: list[str]  # "grid point 2 (trial 5) on host:pid for 0:00:12"
    failed: list[str]  # "grid point 3 (trial 7): reason"
    retried: int  # failed attempts that were queued again (worker killed, Ctrl-C)
    stopped: list[str] = ()  # "grid point 4 (trial 6) at epoch 1: rank 3 of 3 ..." (successive halving)
    infeasible: list[str] = ()  # "grid point 5 (trial 7): int8 0.120 MB > --max-int8-mb 0.1"
    sampler: str = "grid"
    duplicates: int = 0  # sampled again after the study had them: told the same result, not trained

    @property
    def remaining(self) -> int:
        """Models a search would still train: not completed, stopped, infeasible or failed."""
        done = self.completed + len(self.failed) + len(self.stopped) + len(self.infeasible) + self.duplicates
        return max(0, self.grid_size - done)


def study_status(url: str, *, study_name: str | None = None) -> list[StudyStatus]:
    """Completed, running, waiting and failed grid points of every study (or one) in the storage."""
    from datetime import datetime

    from optuna.trial import TrialState

    storage = open_storage(url, read_only=True)
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
        by_point: dict[tuple[int, int], list[optuna.trial.FrozenTrial]] = {}
        for trial in storage.get_all_trials(frozen._study_id, deepcopy=False):
            unit = unit_of(trial)
            if unit is not None:
                by_point.setdefault(unit, []).append(trial)
        completed = waiting = n_failed = duplicates = 0
        running: list[str] = []
        failed: list[str] = []
        stopped: list[str] = []
        infeasible: list[str] = []
        for (gid, repeat), trials in sorted(by_point.items()):
            what = unit_label(gid, repeat)
            states = [t.state for t in trials]
            if all("duplicate_of" in t.user_attrs for t in trials):
                duplicates += 1
                continue
            n_failed += states.count(TrialState.FAIL)
            if TrialState.COMPLETE in states:
                completed += 1
            elif TrialState.PRUNED in states:
                t = next(t for t in trials if t.state == TrialState.PRUNED)
                row = t.user_attrs.get("row") or {}
                reason = str(t.user_attrs.get("stop_reason") or row.get("stop_reason") or "")
                if row.get("status") == "infeasible":
                    infeasible.append(f"{what} (trial {t.number}): {reason}")
                else:
                    at = row.get("stopped_at_epoch", "?")
                    stopped.append(f"{what} (trial {t.number}) at epoch {at}: {reason}")
            elif TrialState.RUNNING in states:
                t = next(t for t in trials if t.state == TrialState.RUNNING)
                age = clock((now - t.datetime_start).total_seconds()) if t.datetime_start else "?"
                running.append(f"{what} (trial {t.number}) on "
                               f"{t.user_attrs.get('worker', '?')} for {age}")
            elif TrialState.WAITING in states:
                waiting += 1
            elif TrialState.FAIL in states:
                t = max((t for t in trials if t.state == TrialState.FAIL), key=lambda t: t.number)
                reason = t.user_attrs.get("fail_reason") or STALE_REASON
                failed.append(f"{what} (trial {t.number}): {reason.splitlines()[0][:200]}")
        sampler = str(frozen.user_attrs.get("sampler", "grid"))
        size = (int(frozen.user_attrs.get("grid_size", len(by_point))) * int(frozen.user_attrs.get("repeats", 1))
                if sampler == "grid" else int(frozen.user_attrs.get("n_trials") or len(by_point)))
        result.append(StudyStatus(
            name=frozen.study_name,
            grid=str(frozen.user_attrs.get("grid", "")),
            grid_size=size,
            completed=completed, waiting=waiting, running=running, failed=failed,
            retried=n_failed - len(failed), stopped=stopped, infeasible=infeasible, sampler=sampler,
            duplicates=duplicates,
        ))
    return result
