"""Multi-objective successive halving over epochs: which trials keep training at a rung.

Pure numpy on top of pareto.py: nothing here knows about Keras, Optuna or the storage.

A trial is trained for ``min_epochs``, then judged; the survivors train up to ``min_epochs *
eta``, are judged again, and so on until ``max_epochs`` (:func:`rungs`). Judging is
asynchronous, as in ASHA (Li et al. 2020, "A system for massively parallel hyperparameter
tuning"): a trial that reaches a rung is compared with every result recorded at that rung so
far and either continues or stops at once, without waiting for the rest of its cohort.

With two objectives (validation accuracy up, size down) "the top 1/eta" needs an order. As in
NSGA-II and SMS-EMOA, :func:`rank_rung` orders by non-dominated sorting rank, and within a rank
by hypervolume contribution (the volume only that trial dominates: large for a trial that
opens up an empty stretch of the trade-off, zero for a duplicate). :func:`decide` keeps a
trial that is in the top ``ceil(n / eta)`` of that order *or* on the current front, so no
trade-off a rung has found is ever thrown away for lack of places.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from .pareto import (
    default_reference,
    hypervolume,
    nondominated_mask,
    nondominated_ranks,
    to_costs,
)

DIRECTIONS = ("max", "min")  # (val_accuracy, size), the column order of a rung's cost matrix


class RungResult(NamedTuple):
    """One trial's result at a rung; a plain ``(key, val_accuracy, size)`` tuple works too.

    ``key`` identifies the trial (an Optuna trial number, a grid id); keys of one rung must be
    unique and sortable against each other (all ints, or all strings): the last tie-break.
    ``size`` is any size measure, in any unit: the order does not depend on the unit.
    """

    key: Hashable
    val_accuracy: float
    size: float


@dataclass(frozen=True)
class Standing:
    """A trial's place in :func:`rank_rung`'s order.

    ``position`` counts from 1 (best). ``front_rank`` is the non-dominated sorting rank (0: on
    the rung's front; -1: NaN or infinite accuracy or size, ordered last). ``contribution`` is
    its hypervolume contribution within its own rank, in (accuracy x size) cost units.
    """

    key: Hashable
    position: int
    front_rank: int
    contribution: float


@dataclass(frozen=True)
class Decision:
    """Whether one trial trains on past a rung, and why, in words a log line can carry."""

    key: Hashable
    proceed: bool  # True: train on to the next rung; False: stop (prune) the trial here
    reason: str
    rank: int  # position in rank_rung's order, from 1
    of: int  # results recorded at the rung, this trial's included
    front_rank: int  # 0: on the rung's front
    epoch: int | None = None  # the rung, where the caller passed it

    @property
    def action(self) -> str:
        return "continue" if self.proceed else "stop"


def rungs(min_epochs: int, max_epochs: int, eta: int) -> list[int]:
    """Epochs at which trials are judged: ``min_epochs * eta**k`` below ``max_epochs``.

    ``max_epochs`` is the last stop and judges nothing (a trial that reaches it is finished),
    so ``rungs(1, 9, 3) == [1, 3]`` and ``rungs(4, 4, 2) == []`` (no halving at all).
    """
    _check_eta(eta)
    for value, option in ((min_epochs, "--min-epochs"), (max_epochs, "--epochs")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{option} must be a whole number of epochs, at least 1, not {value!r}")
    if min_epochs > max_epochs:
        raise ValueError(
            f"--min-epochs ({min_epochs}) is more than the epochs per model (--epochs "
            f"{max_epochs}); expected at most {max_epochs}"
        )
    epochs, found = min_epochs, []
    while epochs < max_epochs:
        found.append(epochs)
        epochs *= eta
    return found


def hypervolume_contributions(costs: ArrayLike, ref: ArrayLike) -> np.ndarray:
    """For each row of an ``(n, k)`` cost matrix, the hypervolume lost if it were removed.

    Equal to ``hypervolume(costs) - hypervolume(costs without row i)``, so 0 for dominated
    rows, invalid rows (NaN/inf), rows not strictly better than ``ref`` in every cost, and
    for each copy of a duplicated point. Computed as the point's own box minus the volume the
    others already cover inside it (its "exclusive" volume), which cancels far less than the
    difference of two totals: one hypervolume call on n points per front row.
    """
    costs = np.asarray(costs, dtype=float)
    ref = np.asarray(ref, dtype=float).reshape(-1)
    total = hypervolume(costs, ref=ref)  # validates shapes and ref as pareto.py does
    contributions = np.zeros(len(costs))
    if total == 0.0:
        return contributions
    # Only front rows can lose volume: a dominated row's dominator stays behind.
    for index in np.flatnonzero(nondominated_mask(costs) & (costs < ref).all(axis=1)):
        point = costs[index]
        others = np.delete(costs, index, axis=0)
        if (others == point).all(axis=1).any():
            continue  # a duplicate: its copy keeps the volume
        # What the others cover of this point's box: their boxes clipped to it. Every other
        # row counts, dominated ones too: they fill in part of the box once the point is gone.
        covered = hypervolume(np.maximum(others, point), ref=ref) if len(others) else 0.0
        contributions[index] = max(float(np.prod(ref - point)) - covered, 0.0)
    return contributions


def rank_rung(
    results: Sequence[RungResult | tuple[Hashable, float, float]], *, ref: ArrayLike | None = None
) -> list[Standing]:
    """Order a rung's results best first: front rank, then hypervolume contribution, then key.

    Contributions are computed within each rank's own front (a rank-1 trial is measured
    against the other rank-1 trials, as if rank 0 were gone), all against one reference
    point ``ref`` in cost space ``(-val_accuracy, size)``. The default is
    :func:`pareto.default_reference` of the rung's valid results: 10% of their range past the
    worst, so the extreme trials of every rank contribute too, and the order is the same
    whatever the unit of ``size``. Rows with NaN/inf come last, by key.
    """
    keys, costs = _unpack(results)
    if not keys:
        return []
    ranks = nondominated_ranks(costs)
    contributions = np.zeros(len(keys))
    if (ranks >= 0).any():
        reference = default_reference(costs) if ref is None else np.asarray(ref, dtype=float)
        for rank in np.unique(ranks[ranks >= 0]):
            rows = np.flatnonzero(ranks == rank)
            contributions[rows] = hypervolume_contributions(costs[rows], reference)
    last = int(ranks.max()) + 1  # invalid rows (rank -1) after every valid rank
    order = sorted(
        range(len(keys)),
        key=lambda i: (ranks[i] if ranks[i] >= 0 else last, -contributions[i], keys[i]),
    )
    return [
        Standing(keys[i], position, int(ranks[i]), float(contributions[i]))
        for position, i in enumerate(order, start=1)
    ]


def decide(
    results_at_rung: Sequence[RungResult | tuple[Hashable, float, float]],
    trial_key: Hashable,
    *,
    eta: int,
    epoch: int | None = None,
    min_results: int | None = None,
    ref: ArrayLike | None = None,
) -> Decision:
    """Does the trial that just reached this rung continue? Judged against every result so far.

    It continues when it is on the front of the rung's results, or when its position in
    :func:`rank_rung`'s order is within the top ``ceil(n / eta)``; otherwise it stops. Until
    ``min_results`` results are in (default ``eta``; never fewer than 2) every trial
    continues: below ``eta`` results the top ``ceil(n / eta)`` is a single place, and one early
    leader would stop every other trial of its rung before there is anything to halve.
    ``results_at_rung`` includes the trial's own result; ``epoch`` only goes into the reason.
    """
    _check_eta(eta)
    if min_results is not None and (isinstance(min_results, bool) or not isinstance(min_results, int)):
        raise ValueError(f"min_results must be a whole number, not {min_results!r}")
    needed = max(eta if min_results is None else min_results, 2)
    standings = rank_rung(results_at_rung, ref=ref)
    mine = next((s for s in standings if s.key == trial_key), None)
    if mine is None:
        raise ValueError(f"trial {trial_key!r} has no result at this rung")
    n = len(standings)
    at = "" if epoch is None else f" at epoch {epoch}"
    where = f"rank {mine.position} of {n}{at}"
    top = math.ceil(n / eta)
    if n < needed:
        proceed, why = True, f"only {n} result(s){at}, fewer than the {needed} needed to judge"
    elif mine.front_rank == 0:
        inside = "within" if mine.position <= top else "outside"
        proceed, why = True, f"{where}, on the front ({inside} the top {top})"
    elif mine.position <= top:
        proceed, why = True, f"{where}, within the top {top}"
    else:
        invalid = " (NaN or infinite accuracy or size)" if mine.front_rank < 0 else ""
        proceed, why = False, f"{where}, outside the top {top} and not on the front{invalid}"
    return Decision(mine.key, proceed, why, mine.position, n, mine.front_rank, epoch)


# --- helpers -------------------------------------------------------------------------------


def _check_eta(eta: int) -> None:
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise ValueError(
            f"--eta must be a whole number of at least 2 (keep 1 trial in eta), not {eta!r}"
        )


def _unpack(
    results: Sequence[RungResult | tuple[Hashable, float, float]],
) -> tuple[list[Hashable], np.ndarray]:
    keys: list[Hashable] = []
    values = np.empty((len(results), 2))
    for row, record in enumerate(results):
        key, val_accuracy, size = record
        keys.append(key)
        values[row] = (val_accuracy, size)
    if len(set(keys)) != len(keys):
        repeated = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"trial {repeated!r} has more than one result at this rung")
    return keys, to_costs(values.reshape(-1, 2), directions=DIRECTIONS)
