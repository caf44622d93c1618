"""Successive halving at a rung: rungs, hypervolume contributions, the order, stop/continue."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest

from bcpareto.halving import (
    RungResult,
    decide,
    hypervolume_contributions,
    rank_rung,
    rungs,
)
from bcpareto.pareto import hypervolume, nondominated_mask, nondominated_ranks

# --- rungs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("min_epochs", "max_epochs", "eta", "expected"),
    [(1, 9, 3, [1, 3]), (1, 10, 2, [1, 2, 4, 8]), (2, 20, 3, [2, 6, 18]), (4, 4, 2, []), (3, 4, 5, [3])],
)
def test_rungs_are_min_epochs_times_powers_of_eta_below_max(
    min_epochs: int, max_epochs: int, eta: int, expected: list[int]
) -> None:
    assert rungs(min_epochs, max_epochs, eta) == expected


@pytest.mark.parametrize(
    ("args", "option"),
    [
        ((1, 9, 1), "--eta"),
        ((1, 9, 0), "--eta"),
        ((1, 9, 2.5), "--eta"),
        ((1, 9, True), "--eta"),
        ((0, 9, 3), "--min-epochs"),
        ((-2, 9, 3), "--min-epochs"),
        ((10, 9, 3), "--min-epochs"),
        ((1.5, 9, 3), "--min-epochs"),
    ],
)
def test_bad_rung_arguments_raise_naming_the_option(args: tuple, option: str) -> None:
    with pytest.raises(ValueError, match=option):
        rungs(*args)


# --- hypervolume contributions -------------------------------------------------------------


def test_contributions_of_a_hand_drawn_staircase() -> None:
    # Front (1,3), (2,1.5), (3,1) under ref (4,4): each point alone dominates the rectangle
    # from its x to the next point's x, and from its y up to the previous point's y (or ref).
    costs = [[1, 3], [2, 1.5], [3, 1], [3, 3], [2, 1.5], [np.nan, 0], [0.5, 5]]
    got = hypervolume_contributions(costs, [4, 4])
    # (3, 3) is dominated, (2, 1.5) is there twice, NaN is invalid, (0.5, 5) lies beyond ref
    assert got.tolist() == pytest.approx([1 * 1, 0, 1 * 0.5, 0, 0, 0, 0])
    unique = hypervolume_contributions(costs[:3], [4, 4])
    assert unique.tolist() == pytest.approx([(2 - 1) * (4 - 3), (3 - 2) * (3 - 1.5), (4 - 3) * (1.5 - 1)])


@pytest.mark.parametrize(("k", "n"), [(2, 60), (3, 40), (4, 14)])
def test_contributions_match_brute_force_removal(k: int, n: int) -> None:
    rng = np.random.default_rng(14 + k)
    for _ in range(6):
        # Coarse integer values make ties and duplicates common; a few rows fall beyond ref.
        costs = rng.integers(0, 8, size=(n, k)).astype(float)
        costs[rng.random(n) < 0.05, 0] = np.nan
        ref = np.full(k, 7.5)
        total = hypervolume(costs, ref=ref)
        brute = np.array([total - hypervolume(np.delete(costs, i, axis=0), ref=ref) for i in range(n)])
        got = hypervolume_contributions(costs, ref)
        np.testing.assert_allclose(got, brute, rtol=1e-9, atol=1e-9 * total)
        assert (got[~nondominated_mask(costs)] == 0).all()
    # and on continuous values, where every front point contributes something
    costs = rng.random((n, k))
    ref = costs.max(axis=0) + 0.1
    total = hypervolume(costs, ref=ref)
    brute = np.array([total - hypervolume(np.delete(costs, i, axis=0), ref=ref) for i in range(n)])
    np.testing.assert_allclose(hypervolume_contributions(costs, ref), brute, rtol=1e-9, atol=1e-12)
    assert (brute[nondominated_mask(costs)] > 0).all()


# --- the order at a rung -------------------------------------------------------------------


def _random_rung(rng: np.random.Generator, n: int) -> list[RungResult]:
    accuracy = np.round(rng.uniform(0.3, 0.95, n), 2)  # rounding makes ties
    size = np.round(rng.lognormal(11, 1, n), -3)
    return [RungResult(int(key), float(a), float(s)) for key, a, s in zip(rng.permutation(n), accuracy, size)]


def test_order_is_by_front_rank_then_contribution_whatever_the_input_order_or_size_unit() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        results = _random_rung(rng, int(rng.integers(1, 30)))
        standings = rank_rung(results)
        by_key = {r.key: r for r in results}
        costs = np.array([[-by_key[s.key].val_accuracy, by_key[s.key].size] for s in standings])
        ranks = nondominated_ranks(costs)
        assert [s.front_rank for s in standings] == ranks.tolist()
        assert [s.position for s in standings] == list(range(1, len(results) + 1))
        assert sorted(s.key for s in standings) == sorted(by_key)
        for before, after in pairwise(standings):
            assert before.front_rank <= after.front_rank
            if before.front_rank == after.front_rank:
                assert before.contribution >= after.contribution
                if before.contribution == after.contribution:
                    assert before.key < after.key
        shuffled = [results[i] for i in rng.permutation(len(results))]
        assert rank_rung(shuffled) == standings
        in_bytes = [RungResult(r.key, r.val_accuracy, r.size * 1e6) for r in results]
        assert [s.key for s in rank_rung(in_bytes)] == [s.key for s in standings]


def test_equal_results_are_ordered_by_key() -> None:
    results = [("b", 0.9, 10.0), ("z", 0.7, 30.0), ("a", 0.7, 30.0), ("m", 0.8, 5.0)]
    order = [s.key for s in rank_rung(results)]
    assert order[2:] == ["a", "z"]  # same point twice: no contribution, so the key decides
    assert rank_rung(results)[3].contribution == 0


def test_nan_results_come_last_and_stop() -> None:
    results = [(0, 0.9, 10.0), (1, float("nan"), 1.0), (2, 0.5, 20.0), (3, 0.8, None)]
    standings = rank_rung(results)
    assert [s.key for s in standings] == [0, 2, 1, 3]
    assert [s.front_rank for s in standings] == [0, 1, -1, -1]
    decision = decide(results, 3, eta=2)
    assert not decision.proceed and "NaN" in decision.reason


# --- decisions -----------------------------------------------------------------------------


# Eight trials at epoch 3: four on the front, four behind it (7 is dominated by everything).
FRONT = [(10, 0.95, 400.0), (11, 0.90, 200.0), (12, 0.85, 100.0), (13, 0.70, 50.0)]
BEHIND = [(14, 0.88, 390.0), (15, 0.80, 180.0), (16, 0.60, 90.0), (7, 0.50, 500.0)]


def test_front_members_continue_even_outside_the_top_share() -> None:
    results = FRONT + BEHIND
    top = math.ceil(len(results) / 4)
    decisions = {key: decide(results, key, eta=4, epoch=3) for key, _, _ in results}
    front_keys = {key for key, _, _ in FRONT}
    assert {key for key, d in decisions.items() if d.proceed} == front_keys
    outside = [d for key, d in decisions.items() if key in front_keys and d.rank > top]
    assert len(outside) == len(FRONT) - top  # the case really puts front members outside
    for d in outside:
        assert d.front_rank == 0 and d.action == "continue"
        assert "on the front" in d.reason and f"outside the top {top}" in d.reason


def test_a_dominated_trial_at_the_bottom_stops_naming_its_rank() -> None:
    results = FRONT + BEHIND
    decision = decide(results, 7, eta=4, epoch=3)
    assert decision.action == "stop" and not decision.proceed
    assert (decision.rank, decision.of, decision.epoch) == (8, 8, 3)
    assert decision.reason == "rank 8 of 8 at epoch 3, outside the top 2 and not on the front"


def test_a_dominated_trial_within_the_top_share_continues() -> None:
    # Front: 10 and 13; 14 and 15 are one step behind; top ceil(5 / 2) = 3 takes one of them.
    results = [FRONT[0], FRONT[3], (14, 0.88, 410.0), (15, 0.65, 60.0), (7, 0.50, 500.0)]
    decisions = [decide(results, key, eta=2) for key, _, _ in results]
    kept = sorted((d for d in decisions if d.proceed), key=lambda d: d.rank)
    assert [(d.rank, d.front_rank) for d in kept] == [(1, 0), (2, 0), (3, 1)]
    assert kept[2].reason == "rank 3 of 5, within the top 3"


@pytest.mark.parametrize("a_size", [12.0, 19.0])
def test_a_rank_tie_is_broken_by_hypervolume_contribution_not_key(a_size: float) -> None:
    # Front: F1, F2. Rank 1: A (dominated by F1) and B (dominated by F2), neither dominating the
    # other. C is behind everything. Top ceil(5 / 2) = 3: the front, then one of A and B.
    a, b = (3, 0.85, a_size), (2, 0.70, 6.0)
    results = [(0, 0.90, 10.0), (1, 0.80, 5.0), a, b, (4, 0.60, 20.0)]
    ranks = {s.key: s.front_rank for s in rank_rung(results)}
    assert ranks == {0: 0, 1: 0, 2: 1, 3: 1, 4: 2}
    # Which of A and B adds more volume to their own front, measured independently:
    ref = [-0.6 + 0.1 * 0.3, 20 + 0.1 * 15]  # worst cost + 10% of the range
    pair = np.array([[-a[1], a[2]], [-b[1], b[2]]])
    gain_a = hypervolume(pair, ref=ref) - hypervolume(pair[1:], ref=ref)
    gain_b = hypervolume(pair, ref=ref) - hypervolume(pair[:1], ref=ref)
    winner, loser = (a, b) if gain_a > gain_b else (b, a)
    assert gain_a != pytest.approx(gain_b)
    # a_size=12: A wins (more accurate, larger key); a_size=19: B wins (less accurate, smaller
    # key), so neither accuracy, size nor key alone explains both outcomes.
    assert winner == (a if a_size == 12.0 else b)
    kept = decide(results, winner[0], eta=2, epoch=1)
    stopped = decide(results, loser[0], eta=2, epoch=1)
    assert kept.proceed and kept.rank == 3 and "within the top 3" in kept.reason
    assert not stopped.proceed and stopped.reason == "rank 4 of 5 at epoch 1, outside the top 3 and not on the front"


def test_survivors_are_the_top_share_plus_the_front() -> None:
    rng = np.random.default_rng(11)
    for eta in (2, 3, 4):
        results = _random_rung(rng, 25)
        standings = rank_rung(results)
        top = math.ceil(len(results) / eta)
        expected = {s.key for s in standings if s.position <= top or s.front_rank == 0}
        kept = {r.key for r in results if decide(results, r.key, eta=eta).proceed}
        assert kept == expected
        assert len(kept) >= top


def test_no_trial_stops_before_enough_results_are_in() -> None:
    best, worst, middle = (0, 0.9, 10.0), (1, 0.5, 50.0), (2, 0.7, 30.0)
    assert decide([worst], 1, eta=3, min_results=1).proceed  # never on the first result
    early = decide([best, worst], 1, eta=3, epoch=2)  # 2 results, 3 needed by default
    assert early.proceed and "fewer than the 3 needed" in early.reason
    assert not decide([best, worst], 1, eta=3, min_results=2).proceed
    assert not decide([best, worst, middle], 1, eta=3).proceed


def test_bad_decide_arguments() -> None:
    results = [(0, 0.9, 10.0), (1, 0.5, 50.0)]
    with pytest.raises(ValueError, match="no result"):
        decide(results, 9, eta=2)
    with pytest.raises(ValueError, match="more than one result"):
        decide(results + [(1, 0.6, 40.0)], 1, eta=2)
    with pytest.raises(ValueError, match="--eta"):
        decide(results, 1, eta=1)
