"""Statistics by resampling source smears: accuracy intervals, paired differences, the chance of
being on the front, the front's hypervolume, and the one-standard-error choice. Pure numpy.

The images of one source smear are augmented copies of one original, so they are not
independent: every resample draws whole smears (groups) with replacement, within each class
(stratified), and every model of one resample sees the same drawn smears, so the difference of
two models is taken on the same images (paired). Inputs are per-image correctness arrays
(1 right, 0 wrong, a share when a model has several predictions of an image, NaN where it has
none); a model's accuracy on a resample is its correct count over its image count there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import pareto

LEVEL = 0.90  # two-sided: 5% and 95% percentiles of the resamples
N_RESAMPLES = 2000  # the SE of a 5% percentile from 2000 resamples is ~0.5% of the spread


@dataclass(frozen=True)
class Estimate:
    """A statistic, its standard error and its LEVEL interval (percentiles of the resamples)."""

    value: float
    se: float
    lo: float
    hi: float

    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0


@dataclass(frozen=True)
class Difference:
    """A minus B on the same resampled images; ``p_better``: share of resamples with A > B."""

    estimate: Estimate
    p_better: float
    n_images: int  # images both models were scored on

    def verdict(self, a: str = "A", b: str = "B") -> str:
        """Words that follow the numbers: "better" only when the interval excludes zero."""
        if not self.estimate.excludes_zero():
            return f"{a} better than {b}: not shown (the {LEVEL:.0%} interval includes zero)"
        winner, loser = (a, b) if self.estimate.value > 0 else (b, a)
        return f"{winner} is better than {loser} (the {LEVEL:.0%} interval excludes zero)"


class GroupBootstrap:
    """Resampling weights over source groups: ``weights[b, g]`` is how often group g is drawn in
    resample b. Groups are stratified by class (a group's class: its images' majority label),
    so every resample has each class's number of groups."""

    def __init__(self, groups: Sequence[str] | np.ndarray, labels: Sequence[int] | np.ndarray, *,
                 n_resamples: int = N_RESAMPLES, seed: int = 0) -> None:
        labels = np.asarray(labels)
        names, self.group_index = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
        self.n_groups = len(names)
        if len(labels) != len(self.group_index):
            raise ValueError(f"{len(labels)} labels for {len(self.group_index)} images")
        majority = np.zeros(self.n_groups, dtype=int)
        for g in range(self.n_groups):
            majority[g] = np.bincount(labels[self.group_index == g]).argmax()
        rng = np.random.default_rng(seed)
        self.weights = np.zeros((n_resamples, self.n_groups))
        for label in np.unique(majority):
            members = np.flatnonzero(majority == label)
            draws = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=n_resamples)
            self.weights[:, members] = draws

    def accuracies(self, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``correct``: (models, images). Returns (accuracy (models,), resampled (resamples, models));
        a model with no image at all is NaN."""
        correct = np.atleast_2d(np.asarray(correct, dtype=float))
        seen = np.isfinite(correct)
        by_group = np.zeros((len(correct), self.n_groups))
        counts = np.zeros((len(correct), self.n_groups))
        for m in range(len(correct)):
            by_group[m] = np.bincount(self.group_index, weights=np.where(seen[m], correct[m], 0.0),
                                      minlength=self.n_groups)
            counts[m] = np.bincount(self.group_index, weights=seen[m].astype(float), minlength=self.n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = by_group.sum(axis=1) / counts.sum(axis=1)
            resampled = (self.weights @ by_group.T) / (self.weights @ counts.T)
        return value, resampled

    def estimate(self, correct: np.ndarray) -> Estimate:
        """One model's accuracy with its SE and interval."""
        value, resampled = self.accuracies(correct)
        return summarise(float(value[0]), resampled[:, 0])

    def difference(self, a: np.ndarray, b: np.ndarray) -> Difference:
        """A's accuracy minus B's, on the images both were scored on, resampled together."""
        both = np.isfinite(a) & np.isfinite(b)
        value, resampled = self.accuracies(np.vstack([np.where(both, a, np.nan), np.where(both, b, np.nan)]))
        diff = resampled[:, 0] - resampled[:, 1]
        return Difference(summarise(float(value[0] - value[1]), diff),
                          p_better=float(np.mean(diff[np.isfinite(diff)] > 0)), n_images=int(both.sum()))


def summarise(value: float, resampled: np.ndarray) -> Estimate:
    """The estimate, the SD of its resamples and their LEVEL percentile interval."""
    finite = resampled[np.isfinite(resampled)]
    if not np.isfinite(value) or len(finite) < 2:
        return Estimate(value, float("nan"), float("nan"), float("nan"))
    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return Estimate(float(value), float(finite.std(ddof=1)), float(lo), float(hi))


def front_probability(resampled: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Per model, the share of resamples in which it is non-dominated (accuracy up, size down).
    ``resampled``: (resamples, models) accuracies; ``sizes``: (models,). NaN models: 0."""
    sizes = np.asarray(sizes, dtype=float)
    on_front = np.zeros(resampled.shape[1])
    for row in resampled:
        costs = np.column_stack([-row, sizes])
        on_front += pareto.nondominated_mask(costs)
    return on_front / len(resampled)


def hypervolume_interval(value: np.ndarray, resampled: np.ndarray, sizes: np.ndarray,
                         *, ref: np.ndarray) -> Estimate:
    """The front's hypervolume (accuracy up, size down) with its resampled SE and interval;
    ``ref`` in costs (-accuracy, size), as pareto.hypervolume takes it."""
    sizes = np.asarray(sizes, dtype=float)

    def volume(accuracy: np.ndarray) -> float:
        return pareto.hypervolume(np.column_stack([-accuracy, sizes]), ref=ref)

    return summarise(volume(value), np.array([volume(row) for row in resampled]))


def one_se_choice(value: np.ndarray, resampled: np.ndarray, sizes: np.ndarray, *, budget: float,
                  rule: str = "one-se") -> int | None:
    """Within ``sizes <= budget``: ``best``: the most accurate model; ``one-se`` (Breiman et al.):
    the smallest model whose shortfall from that best is at most the standard error of their
    paired difference. Returns the model's index, or None when none fits the budget."""
    value = np.asarray(value, dtype=float)
    sizes = np.asarray(sizes, dtype=float)
    fits = np.flatnonzero((sizes <= budget) & np.isfinite(value) & np.isfinite(sizes))
    if not len(fits):
        return None
    best = int(fits[np.argmax(value[fits])])
    if rule == "best":
        return best
    if rule != "one-se":
        raise ValueError(f"unknown rule {rule!r}; expected one-se or best")
    for m in fits[np.lexsort((-value[fits], sizes[fits]))]:  # smallest first, ties: more accurate
        diff = resampled[:, best] - resampled[:, m]
        se = np.nanstd(diff, ddof=1) if m != best else 0.0
        if value[best] - value[m] <= se:
            return int(m)
    return best


SCORES = ("cv", "cv_int8", "test", "test_int8")  # out-of-fold and TEST, float model and int8 file


@dataclass(frozen=True)
class ModelScores:
    """Per model (grid id), per image of the table, the share of its kept predictions that were
    right: ``correct[score]`` is (models, images), NaN where the model has no prediction."""

    grid_ids: np.ndarray  # (models,)
    n_units: np.ndarray  # (models,) fold models (x seeds) behind each model's figures
    correct: dict[str, np.ndarray]
    labels: np.ndarray  # (images,)
    groups: np.ndarray  # (images,)
    is_test: np.ndarray  # (images,) bool: a TEST image (else TRAIN: validation / out-of-fold)


def collect(table: dict[str, np.ndarray], predictions: dict[tuple[int, int], dict[str, np.ndarray]]) -> ModelScores:
    """Per-model correctness from kept predictions (runs.load_predictions) on one image table.
    A model's out-of-fold score of an image averages its seeds; its TEST score averages its fold
    models (so its TEST accuracy is the mean of its fold models' TEST accuracies)."""
    labels = np.asarray(table["label"], dtype=int)
    n = len(labels)
    grid_ids = sorted({gid for gid, _ in predictions})
    correct = {score: np.full((len(grid_ids), n), np.nan) for score in SCORES}
    n_units = np.zeros(len(grid_ids), dtype=int)
    for m, gid in enumerate(grid_ids):
        units = [arrays for (g, _), arrays in predictions.items() if g == gid]
        n_units[m] = len(units)
        for score in SCORES:
            split, int8 = score.split("_", 1)[0], score.endswith("int8")
            split = "val" if split == "cv" else "test"
            key = f"{split}_prob" + ("_int8" if int8 else "")
            hits, counts = np.zeros(n), np.zeros(n)
            for arrays in units:
                if key not in arrays or not len(arrays[key]):
                    continue
                index = arrays[f"{split}_index"]
                hits[index] += np.asarray(arrays[key], dtype=float).argmax(axis=1) == labels[index]
                counts[index] += 1
            with np.errstate(invalid="ignore"):
                correct[score][m] = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    return ModelScores(np.array(grid_ids, dtype=int), n_units, correct, labels,
                       np.asarray(table["group"], dtype=str), np.asarray(table["fold"]) == -2)
