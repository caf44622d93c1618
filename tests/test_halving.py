"""Successive halving: rungs, hypervolume contributions, the order, stop/continue; a rung's
decision in the study storage, and a halving search killed and resumed."""

from __future__ import annotations

import math
import os
import signal
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bcpareto.halving import (
    RungResult,
    decide,
    hypervolume_contributions,
    rank_rung,
    rungs,
)
from bcpareto.gridspec import GridPoint
from bcpareto.pareto import hypervolume, nondominated_mask, nondominated_ranks
from bcpareto.strategy import Strategy

from .conftest import BLOOD_CELLS, TINY_GRID, needs_data
from .searches import FAST, _rows

train = pytest.mark.train

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


# --- successive halving's bookkeeping in the storage (search.make_judge, a stopped model) -------


def _running_trial(study: Any, earlier: list[tuple[float, float, str]]) -> Any:
    """Earlier trials that reached epoch 1 with these (val, size, final state); then a running one."""
    from optuna.trial import TrialState

    for val, size, state in earlier:
        trial = study.ask()
        trial.set_user_attr("rung_1", [val, size])
        if state == "COMPLETE":
            study.tell(trial, [val, size])
        elif state == "PRUNED":
            study.tell(trial, state=TrialState.PRUNED)
        elif state == "FAIL":
            study.tell(trial, state=TrialState.FAIL)
    return study.ask()


def _judge(study: Any, trial: Any, eta: int = 2) -> Any:
    from bcpareto.gates import make_judge

    lines: list[str] = []
    judge = make_judge(study, trial, strategy=Strategy(eta=eta), epochs=4, label="grid point 9", echo=lines.append)
    return judge, lines


def test_halving_judges_at_rungs_against_every_trial_at_that_epoch() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    # epoch-1 results so far: two good small models, one stopped, one failed (its result does not count)
    trial = _running_trial(study, [(0.80, 0.05, "COMPLETE"), (0.85, 0.06, "COMPLETE"),
                                   (0.30, 0.20, "PRUNED"), (0.99, 0.01, "FAIL")])
    judge, lines = _judge(study, trial)
    assert judge(3, 0.10, 0.5) is None and not lines  # epoch 3 is no rung at eta 2 (rungs 1, 2)
    # dominated by both complete models (it dominates the stopped one): 4 results, top 2
    reason = judge(1, 0.50, 0.10)
    assert reason == "rank 3 of 4 at epoch 1, outside the top 2 and not on the front", lines
    assert study.trials[trial.number].user_attrs["rung_1"] == [0.50, 0.10]
    assert "stop" in study.trials[trial.number].user_attrs["rung_1_decision"]

    again = study.ask()
    judge, _ = _judge(study, again)
    assert judge(1, 0.70, 0.01) is None  # the smallest model: on the front, goes on
    assert "on the front" in study.trials[again.number].user_attrs["rung_1_decision"]


def test_a_stopped_model_is_done_for_the_queue_and_off_the_front(tmp_path: Path) -> None:
    import optuna

    from bcpareto.metrics_log import update_metrics_csv
    from bcpareto.report import plot_report
    from bcpareto.study import sync_grid, tell_pruned as _tell_pruned

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    study = optuna.create_study(directions=["maximize", "minimize"], storage=storage)
    points = [GridPoint(i, (4, 8), (3, 3), ()) for i in range(3)]
    assert sync_grid(study, points) == {"enqueued": 3}
    base = {"model_size(MB)": 0.05, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.0}
    for point, val in zip(points, (0.8, 0.7)):
        trial = optuna.Trial(study, storage.get_trial_id_from_study_id_trial_number(study._study_id, point.grid_id))
        storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.RUNNING)
        trial.set_user_attr("row", {**base, **point.params(), "val_accuracy": val, "test_accuracy": val})
        study.tell(trial, [val, 0.05])
    stopped = optuna.Trial(study, storage.get_trial_id_from_study_id_trial_number(study._study_id, 2))
    storage.set_trial_state_values(stopped._trial_id, state=optuna.trial.TrialState.RUNNING)
    row = {**base, **points[2].params(), "val_accuracy": 0.99, "model_size(MB)": 0.01,
           "stopped_at_epoch": 1, "stop_reason": "rank 3 of 3", "status": "stopped"}
    assert _tell_pruned(study, storage, stopped, stopped._trial_id, row=row)
    assert sync_grid(study, points) == {"enqueued": 0}  # stopped is done: never retried
    assert sync_grid(study, points, retry_failed=True) == {"enqueued": 0}
    update_metrics_csv(study, tmp_path)
    rows = _rows(tmp_path)
    assert [(r["grid_id"], r["status"], r["stopped_at_epoch"]) for r in rows] == [
        ("0", "", ""), ("1", "", ""), ("2", "stopped", "1")]
    # its epoch-1 figures (0.99 at 0.01 MB) would dominate everything: the front leaves it out
    report = plot_report([tmp_path / "metrics_log.csv"], x="model_size(MB)", y="val_accuracy",
                         out_dir=tmp_path / "out")
    assert report.sources[0].values[:, 0].tolist() == [0.05, 0.05]
    assert any("1 stopped by successive halving left out of the front" in n for n in report.notes), report.notes



# --- a real search with halving, killed and resumed ----------------------------------------------


@needs_data
@train
def test_halving_after_sigkill_resumes_and_never_retrains_a_stopped_model(tmp_path: Path) -> None:
    from .procs import _finish, _setup, _sqlite, _start, _trials, _wait_for

    grid = [TINY_GRID[0], ["[0]", "[[]]", "[[4], [8], [4, 8], [8, 8]]", "[3, 3]"]]
    _setup(tmp_path, grid)
    (tmp_path / "fast.toml").write_text(FAST.replace("epochs = 1", "epochs = 2"))
    url = _sqlite(tmp_path / "run")
    args = ("--run-dir", "run", "--data-dir", str(BLOOD_CELLS), "--limit-per-class", "3",
            "--fidelity", "epochs", "--eta", "2")
    proc = _start(tmp_path, *args)
    # kill once two models are judged (completed or stopped) and a third is training
    trials = _wait_for(url, lambda ts: sum(t.state.name in ("COMPLETE", "PRUNED") for t in ts) >= 2
                       and any(t.state.name == "RUNNING" for t in ts), proc=proc, timeout=180)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = next(t for t in trials if t.state.name == "RUNNING")
    out = _finish(_start(tmp_path, *args))
    assert f"retrying trial {killed.number}" in out, out
    trials = _trials(url)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert sorted(t.user_attrs["grid_id"] for t in finished) == [0, 1, 2, 3]  # each exactly once
    for t in finished:
        assert t.user_attrs["rung_1"] is not None  # every model was judged at epoch 1
        if t.state.name == "PRUNED":
            assert t.user_attrs["row"]["stopped_at_epoch"] == 1 and t.user_attrs["stop_reason"]
        else:
            assert t.user_attrs["row"]["epochs"] == 2
    rows = _rows(tmp_path / "run")
    assert len(rows) == 4
    assert {r["grid_id"] for r in rows if r["stopped_at_epoch"]} == {
        str(t.user_attrs["grid_id"]) for t in finished if t.state.name == "PRUNED"}
    rerun = _finish(_start(tmp_path, *args))
    assert "(0 trained now" in rerun, rerun  # stopped models are not retried as if they had crashed

