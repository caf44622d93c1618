"""Pareto math on plain float arrays: non-dominated masks, ranks, hypervolume.

Pure numpy: nothing here knows about CSV files, columns, Keras or plotting.

Conventions (as in optuna's ``study/_multi_objective.py``):

- Every objective is turned into "minimise" first (:func:`to_costs` multiplies the "max"
  columns by -1); every other function takes such a ``costs`` array of shape ``(n, k)``.
- Point ``a`` dominates ``b`` when ``a <= b`` in every objective and ``a < b`` in at least one.
  Equal points therefore never dominate each other: duplicates of a non-dominated point are
  *all* non-dominated, and when every point is equal, every point is on the front.
- Rows with NaN (or +-inf) in any objective are invalid: they are never on the front, get rank
  -1 and add no hypervolume. :func:`valid_mask` tells which rows those are, so callers can count
  them.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from .errors import ConfigError

DIRECTIONS = ("min", "max")
DEFAULT_MARGIN = 0.1  # reference point = worst valid value + 10% of the valid range

# k >= 3 filtering compares a block of points with the front found so far; these bound the
# size of the boolean temporaries (block x front x objectives) to a few MB.
_BLOCK_MIN, _BLOCK_MAX, _BLOCK_CELLS = 64, 1024, 2_000_000


def to_costs(values: ArrayLike, *, directions: Sequence[str]) -> np.ndarray:
    """Turn an ``(n, k)`` array of objective values into costs to minimise.

    ``directions`` has one entry per column, ``"min"`` or ``"max"`` (any case); "max"
    columns are multiplied by -1. Returns a new float64 array.
    """
    costs = _as_matrix(values).copy()
    if len(directions) != costs.shape[1]:
        raise ValueError(f"{costs.shape[1]} objective columns but {len(directions)} directions")
    for column, direction in enumerate(directions):
        if str(direction).lower() not in DIRECTIONS:
            raise ConfigError(
                f"unknown direction {direction!r} for objective {column}; expected one of "
                + ", ".join(DIRECTIONS)
            )
        if str(direction).lower() == "max":
            costs[:, column] *= -1.0
    return costs


def valid_mask(costs: ArrayLike) -> np.ndarray:
    """Rows whose objectives are all finite (no NaN, no +-inf): the rows that take part."""
    return np.isfinite(_as_matrix(costs)).all(axis=1)


def nondominated_mask(costs: ArrayLike) -> np.ndarray:
    """Boolean mask of the rows that no other row dominates (invalid rows are False).

    Exact with ties and duplicates (equal points are all non-dominated). After one
    lexicographic sort: a running minimum for two objectives, a sweep over a 2-D staircase for
    three (both O(n log n)), and block-wise vectorised filtering against the front found so
    far for four or more (O(n * front size)).
    """
    costs = _as_matrix(costs)
    mask = np.zeros(len(costs), dtype=bool)
    rows = np.flatnonzero(valid_mask(costs))
    if rows.size:
        unique, inverse = _unique_sorted(costs[rows])
        mask[rows] = _front_of_sorted_unique(unique)[inverse]
    return mask


def nondominated_ranks(costs: ArrayLike) -> np.ndarray:
    """Non-dominated sorting: rank 0 is the front, rank 1 the front of the rest, and so on.

    Equal points share a rank; invalid rows get -1. O(n log n) for up to two objectives,
    repeated front peeling for three or more.
    """
    costs = _as_matrix(costs)
    ranks = np.full(len(costs), -1, dtype=np.int64)
    rows = np.flatnonzero(valid_mask(costs))
    if rows.size == 0:
        return ranks
    unique, inverse = _unique_sorted(costs[rows])
    if unique.shape[1] == 1:
        unique_ranks = np.arange(len(unique))
    elif unique.shape[1] == 2:
        unique_ranks = _ranks_2d(unique)
    else:
        unique_ranks = np.full(len(unique), -1, dtype=np.int64)
        remaining = np.arange(len(unique))
        rank = 0
        while remaining.size:
            front = _front_of_sorted_unique(unique[remaining])  # subsets stay sorted
            unique_ranks[remaining[front]] = rank
            remaining = remaining[~front]
            rank += 1
    ranks[rows] = unique_ranks[inverse]
    return ranks


def default_reference(costs: ArrayLike, *, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """Default hypervolume reference point, in cost space.

    For each objective: the worst (largest) cost among the valid rows plus ``margin`` times
    the range of the valid rows, so that every front point, the extreme ones included, adds
    volume. Where all valid rows share one value, the offset is ``margin * |value|`` (or
    ``margin`` itself when the value is 0).
    """
    costs = _as_matrix(costs)
    valid = costs[valid_mask(costs)]
    if valid.size == 0:
        raise ValueError("no valid rows (every row has NaN or inf): no reference point")
    worst, best = valid.max(axis=0), valid.min(axis=0)
    span = worst - best
    offset = np.where(span > 0, span, np.where(worst != 0, np.abs(worst), 1.0)) * margin
    ref = worst + offset
    return np.where(ref > worst, ref, np.nextafter(worst, np.inf))  # offset lost to rounding


def hypervolume(costs: ArrayLike, *, ref: ArrayLike) -> float:
    """Volume of cost space dominated by the valid rows and bounded by ``ref``.

    Exact for any number of objectives: a sweep in 2-D, an incremental sweep along the third
    objective over a maintained 2-D staircase in 3-D (O(n log n) comparisons), and slicing
    along the last objective down to 3-D beyond that (fine for fronts of a few hundred
    points). Rows with NaN/inf and rows not strictly better than ``ref`` in every objective add
    nothing.
    """
    costs = _as_matrix(costs)
    ref = np.asarray(ref, dtype=float).reshape(-1)
    if ref.shape != (costs.shape[1],):
        raise ValueError(f"reference point has {ref.size} values for {costs.shape[1]} objectives")
    if not np.isfinite(ref).all():
        raise ValueError(f"reference point must be finite, got {ref.tolist()}")
    points = costs[valid_mask(costs)]
    points = points[(points < ref).all(axis=1)]
    if len(points) == 0:
        return 0.0
    unique, _ = _unique_sorted(points)
    front = unique[_front_of_sorted_unique(unique)]
    return float(_hypervolume_of_front(front, ref))


# --- helpers -------------------------------------------------------------------------------


def _as_matrix(values: ArrayLike) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 2 or array.shape[1] < 1:
        raise ValueError(f"expected an (n, k) array with k >= 1 objectives, not {array.shape}")
    return array


def _unique_sorted(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lexicographically sorted unique rows, and for each input row the index of its copy."""
    order = np.lexsort(points.T[::-1])  # first column is the primary key
    ordered = points[order]
    starts = np.ones(len(ordered), dtype=bool)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    group = np.cumsum(starts) - 1
    inverse = np.empty(len(points), dtype=np.int64)
    inverse[order] = group
    return ordered[starts], inverse


def _front_of_sorted_unique(points: np.ndarray) -> np.ndarray:
    """Front mask of lexicographically sorted, unique rows.

    In that order a dominator always comes first, and for distinct rows "earlier and no worse
    in objectives 2..k" is the same as "dominates", so only the trailing objectives are compared.
    """
    n, k = points.shape
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    if k == 1:
        keep[0] = True
        return keep
    if k == 2:
        best_before = np.minimum.accumulate(points[:, 1])
        keep[0] = True
        keep[1:] = best_before[:-1] > points[1:, 1]
        return keep
    if k == 3:
        return _front_3d(points)
    rest = points[:, 1:]
    front = np.empty((0, k - 1))
    start = 0
    while start < n:
        size = int(np.clip(_BLOCK_CELLS // max(len(front), 1), _BLOCK_MIN, _BLOCK_MAX))
        block = rest[start : start + size]
        dominated = np.zeros(len(block), dtype=bool)
        if len(front):
            dominated = (front[None, :, :] <= block[:, None, :]).all(axis=2).any(axis=1)
        # A point dominated by an earlier point of the block is dominated by an earlier
        # candidate too (follow the chain of dominators), so compare candidates only.
        candidates = np.flatnonzero(~dominated)
        inner = block[candidates]
        beaten = np.tril((inner[None, :, :] <= inner[:, None, :]).all(axis=2), k=-1).any(axis=1)
        dominated[candidates[beaten]] = True
        keep[start : start + len(block)] = ~dominated
        front = np.concatenate([front, block[~dominated]])
        start += len(block)
    return keep


def _front_3d(points: np.ndarray) -> np.ndarray:
    """Front mask of sorted unique 3-D rows: a sweep keeping the (y, z) staircase seen so far.

    A row is dominated exactly when an earlier row is no worse in (y, z), i.e. when the
    staircase entry with the largest y <= this y has z <= this z. O(n log n) comparisons.
    """
    keep = np.zeros(len(points), dtype=bool)
    ys: list[float] = []
    zs: list[float] = []
    for index, (y, z) in enumerate(points[:, 1:].tolist()):
        left = bisect_right(ys, y) - 1
        if left >= 0 and zs[left] <= z:
            continue
        keep[index] = True
        start = bisect_left(ys, y)
        stop = start
        while stop < len(ys) and zs[stop] >= z:
            stop += 1
        ys[start:stop] = [y]
        zs[start:stop] = [z]
    return keep


def _ranks_2d(points: np.ndarray) -> np.ndarray:
    """Ranks of sorted unique 2-D points: rank = number of ranks with a point no worse in y.

    ``tails[r]`` is the smallest second cost seen so far in rank ``r``; it is non-decreasing
    in ``r``, so a binary search finds the first rank with no dominator.
    """
    tails: list[float] = []
    ranks = np.empty(len(points), dtype=np.int64)
    for index, y in enumerate(points[:, 1].tolist()):
        rank = bisect_right(tails, y)
        if rank == len(tails):
            tails.append(y)
        else:
            tails[rank] = y
        ranks[index] = rank
    return ranks


def _hypervolume_of_front(front: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of mutually non-dominated points, all strictly better than ``ref``."""
    k = front.shape[1]
    if k == 1:
        return float(ref[0] - front[:, 0].min())
    if k == 2:
        order = np.argsort(front[:, 0], kind="stable")
        x, y = front[order, 0], front[order, 1]
        widths = np.append(x[1:], ref[0]) - x
        return float(np.sum(widths * (ref[1] - y)))
    if k == 3:
        return _hypervolume_3d(front, ref)
    order = np.argsort(front[:, -1], kind="stable")
    ordered = front[order]
    levels = np.append(ordered[1:, -1], ref[-1])
    volume = 0.0
    for index in range(len(ordered)):
        thickness = levels[index] - ordered[index, -1]
        if thickness > 0:
            head = ordered[: index + 1, :-1]
            unique, _ = _unique_sorted(head)
            slab_front = unique[_front_of_sorted_unique(unique)]
            volume += _hypervolume_of_front(slab_front, ref[:-1]) * thickness
    return volume


def _hypervolume_3d(points: np.ndarray, ref: np.ndarray) -> float:
    """Sweep along the third cost; keep the 2-D staircase of the points seen and its area.

    The staircase is two Python lists sorted by x (y strictly decreasing); each point is
    inserted once and removed at most once, and the area is updated by the strip it adds.
    """
    order = np.argsort(points[:, 2], kind="stable")
    xs: list[float] = []
    ys: list[float] = []
    area = 0.0
    volume = 0.0
    previous_z = None
    rx, ry = float(ref[0]), float(ref[1])
    for x, y, z in points[order].tolist():
        if previous_z is not None:
            volume += area * (z - previous_z)
        previous_z = z
        left = bisect_right(xs, x) - 1
        if left >= 0 and ys[left] <= y:
            continue  # dominated in (x, y) by a point already swept
        start = bisect_left(xs, x)
        stop = start
        while stop < len(xs) and ys[stop] >= y:
            stop += 1  # points the new one dominates in (x, y)
        right_x = xs[stop] if stop < len(xs) else rx
        # Height of the old staircase over [x, right_x): the left neighbour's, then each
        # removed point's from its own x on. The new height there is ry - y.
        gained = 0.0
        segment_start = x
        height = (ry - ys[left]) if left >= 0 else 0.0
        for removed in range(start, stop):
            gained += (xs[removed] - segment_start) * ((ry - y) - height)
            segment_start = xs[removed]
            height = ry - ys[removed]
        gained += (right_x - segment_start) * ((ry - y) - height)
        area += gained
        xs[start:stop] = [x]
        ys[start:stop] = [y]
    if previous_z is not None:
        volume += area * (float(ref[2]) - previous_z)
    return volume
