"""cvstats.py: the group bootstrap, paired differences, P(on the front) and the one-SE rule,
on synthetic cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from bcpareto import cvstats


def _images(groups_per_class: int, per_group: int, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(groups, labels) of equal-sized groups, each of one class."""
    groups = np.repeat([f"c{c}-g{g}" for c in range(classes) for g in range(groups_per_class)], per_group)
    labels = np.repeat(np.arange(classes), groups_per_class * per_group)
    return groups, labels


def test_bootstrap_se_matches_the_binomial_se_over_groups_not_images() -> None:
    # 4 classes x 50 groups x 20 images; in each class 30 groups are all right, 20 all wrong:
    # the images are not independent, so the SE is that of 200 groups (p 0.6), not 4,000 images.
    groups, labels = _images(50, 20)
    right = np.tile(np.repeat(np.r_[np.ones(30), np.zeros(20)], 20), 4)
    boot = cvstats.GroupBootstrap(groups, labels, n_resamples=4000, seed=1)
    estimate = boot.estimate(right)
    assert estimate.value == pytest.approx(0.6)
    # stratified: each class's share varies as a binomial of its 50 groups; 4 classes average
    expected = np.sqrt(0.6 * 0.4 / 50) / 2
    assert estimate.se == pytest.approx(expected, rel=0.1)
    assert estimate.se > 3 * np.sqrt(0.6 * 0.4 / len(right))  # far above the images' naive SE
    assert estimate.lo < 0.6 < estimate.hi
    assert estimate.hi - estimate.lo == pytest.approx(2 * 1.645 * expected, rel=0.15)


def test_stratified_resamples_keep_each_class_group_count() -> None:
    groups, labels = _images(7, 3)
    boot = cvstats.GroupBootstrap(groups, labels, n_resamples=50, seed=0)
    assert boot.weights.shape == (50, 28)
    majority = np.repeat(np.arange(4), 7)
    for c in range(4):
        assert (boot.weights[:, majority == c].sum(axis=1) == 7).all()


def test_paired_difference_excludes_zero_when_one_model_is_right_on_more_groups() -> None:
    groups, labels = _images(30, 10)
    rng = np.random.default_rng(0)
    base = np.repeat(rng.random(120) < 0.7, 10).astype(float)
    better = base.copy()
    wrong_groups = np.flatnonzero(base[::10] == 0)[:12]  # B is right on 12 more groups
    for g in wrong_groups:
        better[g * 10:(g + 1) * 10] = 1.0
    boot = cvstats.GroupBootstrap(groups, labels, seed=0)
    diff = boot.difference(better, base)
    assert diff.estimate.value == pytest.approx(12 / 120)
    assert diff.estimate.excludes_zero() and diff.estimate.lo > 0
    assert diff.p_better == 1.0
    assert "is better than" in diff.verdict("B", "A")
    # the unpaired intervals overlap although the paired one excludes zero
    a, b = boot.estimate(better), boot.estimate(base)
    assert a.lo < b.hi


def test_paired_difference_of_a_model_with_itself_is_zero_and_not_shown() -> None:
    groups, labels = _images(10, 5)
    right = (np.random.default_rng(3).random(200) < 0.5).astype(float)
    diff = cvstats.GroupBootstrap(groups, labels, seed=0).difference(right, right)
    assert diff.estimate.value == 0 and diff.estimate.se == 0
    assert "not shown" in diff.verdict()


def test_noise_differences_are_not_shown() -> None:
    groups, labels = _images(20, 10)
    rng = np.random.default_rng(5)
    a = (rng.random(800) < 0.8).astype(float)
    b = (rng.random(800) < 0.8).astype(float)
    diff = cvstats.GroupBootstrap(groups, labels, seed=0).difference(a, b)
    assert diff.estimate.lo < diff.estimate.value < diff.estimate.hi
    assert not diff.estimate.excludes_zero(), diff
    assert "not shown" in diff.verdict()


def test_paired_difference_uses_only_images_both_models_were_scored_on() -> None:
    groups, labels = _images(5, 4)
    a = np.ones(80)
    b = np.zeros(80)
    b[:40] = np.nan  # B has no prediction of the first 40 images
    diff = cvstats.GroupBootstrap(groups, labels, seed=0).difference(a, b)
    assert diff.n_images == 40 and diff.estimate.value == 1.0


def test_accuracy_of_a_model_without_images_is_nan() -> None:
    groups, labels = _images(3, 2)
    value, resampled = cvstats.GroupBootstrap(groups, labels, n_resamples=10).accuracies(np.full((1, 24), np.nan))
    assert np.isnan(value[0]) and np.isnan(resampled).all()


def test_front_probability_is_one_for_a_sure_member_and_zero_for_a_sure_loser() -> None:
    rng = np.random.default_rng(0)
    resampled = np.column_stack([0.9 + rng.normal(0, 0.01, 500),  # small and best: always on it
                                 0.5 + rng.normal(0, 0.01, 500),  # larger and worse: never
                                 0.9 + rng.normal(0, 0.01, 500)])  # larger, as good: a coin flip
    p = cvstats.front_probability(resampled, np.array([1.0, 2.0, 2.0]))
    assert p[0] == 1.0 and p[1] == 0.0
    assert 0.3 < p[2] < 0.7


def test_one_se_rule_picks_the_smallest_model_within_one_se_of_the_best() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.02, (2000, 1))  # shared by all models: paired differences cancel it
    own = rng.normal(0, 0.01, (2000, 4))
    value = np.array([0.70, 0.893, 0.90, 0.88])
    resampled = value + noise + own
    sizes = np.array([1.0, 2.0, 3.0, 0.5])
    # the best fitting 3 MB is model 2 (0.90); model 1 is 0.007 below, within the paired SE
    # (~0.014); model 3 (0.02 below) and model 0 (0.20 below) are not
    assert cvstats.one_se_choice(value, resampled, sizes, budget=3.0) == 1
    assert cvstats.one_se_choice(value, resampled, sizes, budget=3.0, rule="best") == 2
    assert cvstats.one_se_choice(value, resampled, sizes, budget=1.5) == 3  # 0.5 MB model is then the best
    assert cvstats.one_se_choice(value, resampled, sizes, budget=0.1) is None
    with pytest.raises(ValueError, match="unknown rule"):
        cvstats.one_se_choice(value, resampled, sizes, budget=3.0, rule="two-se")


def test_hypervolume_interval_brackets_the_point_estimate() -> None:
    rng = np.random.default_rng(0)
    value = np.array([0.8, 0.9])
    resampled = value + rng.normal(0, 0.02, (300, 2))
    h = cvstats.hypervolume_interval(value, resampled, np.array([1.0, 2.0]), ref=np.array([0.0, 3.0]))
    assert h.value == pytest.approx(0.8 * 1 + 0.9 * 1)  # (3-1)*0.8 + (3-2)*(0.9-0.8)
    assert h.lo < h.value < h.hi and h.se > 0


def test_collect_averages_seeds_out_of_fold_and_fold_models_on_test() -> None:
    table = {"label": np.array([0, 1, 2, 3, 0, 1]), "group": np.array(list("abcdef")),
             "fold": np.array([0, 0, 1, 1, -2, -2])}
    onehot = np.eye(4, dtype=np.float16)
    wrong = np.roll(np.eye(4, dtype=np.float16), 1, axis=1)
    predictions = {  # grid 7, fold 0 right on its two images, fold 1 wrong on one of its two
        (7, 0): {"table": np.array("t"), "val_index": np.array([0, 1]), "val_prob": onehot[[0, 1]],
                 "test_index": np.array([4, 5]), "test_prob": onehot[[0, 1]]},
        (7, 1): {"table": np.array("t"), "val_index": np.array([2, 3]), "val_prob": np.stack([onehot[2], wrong[3]]),
                 "test_index": np.array([4, 5]), "test_prob": np.stack([wrong[0], onehot[1]])},
    }
    scores = cvstats.collect(table, predictions)
    assert list(scores.grid_ids) == [7] and list(scores.n_units) == [2]
    np.testing.assert_array_equal(scores.correct["cv"][0], [1, 1, 1, 0, np.nan, np.nan])
    np.testing.assert_array_equal(scores.correct["test"][0], [np.nan] * 4 + [0.5, 1.0])
    assert np.isnan(scores.correct["cv_int8"]).all()  # no int8 file measured
    assert list(scores.is_test) == [False] * 4 + [True] * 2


def _race_case(rng: np.random.Generator, accuracy: dict[int, float], folds_done: dict[int, int]):
    """A table of 4 classes x 40 smears x 5 images in 5 folds, and kept predictions of points
    right on each smear with the given probability (whole smears right or wrong)."""
    groups = np.repeat([f"{c}-{g}" for c in range(4) for g in range(40)], 5)
    labels = np.repeat(np.arange(4), 200)
    fold = np.repeat(np.tile(np.arange(5), 32), 5)
    table = {"label": labels, "group": groups, "fold": fold}
    predictions = {}
    for gid, p in accuracy.items():
        right = np.repeat(rng.random(160) < p, 5)
        guess = np.where(right, labels, (labels + 1) % 4)
        for k in range(folds_done[gid]):
            index = np.flatnonzero(fold == k)
            predictions[gid, k] = {"table": np.array("t"), "val_index": index,
                                   "val_prob": np.eye(4)[guess[index]], "test_index": np.zeros(0, int),
                                   "test_prob": np.zeros((0, 4))}
    return table, predictions


def test_racing_drops_a_point_a_smaller_one_beats_with_confidence() -> None:
    from bcpareto.racing import raced_out

    table, predictions = _race_case(np.random.default_rng(0), {0: 0.95, 1: 0.4, 2: 0.95}, {0: 2, 1: 2, 2: 1})
    sizes = {0: 0.01, 1: 0.05, 2: 0.02}
    reason = raced_out(1, table=table, predictions=predictions, sizes=sizes)
    assert reason is not None and reason.startswith("dominated with confidence by grid point 0")
    assert raced_out(0, table=table, predictions=predictions, sizes=sizes) is None  # the smallest: no rival
    # as accurate as the smaller point: not dominated with confidence
    assert raced_out(2, table=table, predictions=predictions, sizes=sizes) is None
    # a larger, better point never drops a smaller one
    assert raced_out(1, table=table, predictions=predictions, sizes={0: 0.09, 1: 0.05, 2: 0.09}) is None
    # a point with nothing finished yet is not judged
    assert raced_out(3, table=table, predictions=predictions, sizes={**sizes, 3: 0.5}) is None


def test_the_committed_cv_run_replays_from_its_kept_predictions() -> None:
    """docs/results/2026-12-07-cv-quick/seed0: 16 points x 5 folds, judged from a clone."""
    from bcpareto.cvreport import cv_report

    from .conftest import ROOT

    report = cv_report(ROOT / "docs" / "results" / "2026-12-07-cv-quick" / "seed0" / "metrics_log.csv",
                       n_resamples=300)
    t = report.table
    assert len(t) == 16 and (t["n_fold_models"] == 5).all()
    assert report.n_groups == (263, 63)
    assert ((t["cv_int8_accuracy_lo"] <= t["cv_int8_accuracy"]) & (t["cv_int8_accuracy"] <= t["cv_int8_accuracy_hi"])).all()
    by_budget = {c.budget: c for c in report.choices}
    assert by_budget[0.02].chosen is None  # no model of this grid is that small
    chosen = t.set_index("grid_id").loc[by_budget[0.1].chosen]
    assert chosen["tflite_int8_mb"] <= 0.1
