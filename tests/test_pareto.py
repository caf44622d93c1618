"""bcpareto.pareto against brute-force references, property-based and on edge cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bcpareto import pareto
from bcpareto.errors import ConfigError

SETTINGS = settings(max_examples=200, deadline=None)


# --- brute-force references ------------------------------------------------------------------


def brute_dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a <= b) and np.any(a < b))


def brute_mask(costs: np.ndarray) -> np.ndarray:
    """O(n^2), straight from the definition: a valid row is on the front when no valid row
    is <= it everywhere and < it somewhere (all pairs at once by broadcasting)."""
    valid = np.isfinite(costs).all(axis=1)
    a, b = costs[:, None, :], costs[None, :, :]  # a[j] vs b[i]
    dominates = (a <= b).all(axis=2) & (a < b).any(axis=2) & valid[:, None]
    return valid & ~dominates.any(axis=0)


def brute_ranks(costs: np.ndarray) -> np.ndarray:
    """Peel fronts with the brute-force mask."""
    ranks = np.full(len(costs), -1)
    remaining = np.flatnonzero(np.isfinite(costs).all(axis=1))
    rank = 0
    while remaining.size:
        front = brute_mask(costs[remaining])
        ranks[remaining[front]] = rank
        remaining = remaining[~front]
        rank += 1
    return ranks


def grid_hypervolume(costs: np.ndarray, ref: np.ndarray) -> float:
    """Exact by coordinate compression: add every grid cell whose low corner is dominated."""
    points = costs[np.isfinite(costs).all(axis=1)]
    points = points[(points < ref).all(axis=1)]
    if len(points) == 0:
        return 0.0
    axes = [np.unique(np.append(points[:, d], ref[d])) for d in range(points.shape[1])]
    volume = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        low = np.array([axes[d][i] for d, i in enumerate(cell)])
        if (points <= low).all(axis=1).any():
            high = np.array([axes[d][i + 1] for d, i in enumerate(cell)])
            volume += float(np.prod(high - low))
    return volume


def inclusion_exclusion_hypervolume(costs: np.ndarray, ref: np.ndarray) -> float:
    """Union of boxes [p, ref] by inclusion-exclusion (small n only)."""
    points = costs[np.isfinite(costs).all(axis=1)]
    points = points[(points < ref).all(axis=1)]
    volume = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(range(len(points)), size):
            corner = points[list(subset)].max(axis=0)
            volume += (-1) ** (size + 1) * float(np.prod(ref - corner))
    return volume


# --- strategies --------------------------------------------------------------------------------


@st.composite
def cost_arrays(draw, max_rows: int = 30, max_objectives: int = 4, nan: bool = True):
    """Small integer grids (many ties and duplicates) or floats, with some NaN/inf rows."""
    n = draw(st.integers(0, max_rows))
    k = draw(st.integers(1, max_objectives))
    if draw(st.booleans()):
        elements = st.integers(-3, 3).map(float)
    else:
        elements = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
    costs = draw(arrays(np.float64, (n, k), elements=elements))
    if nan and n and draw(st.booleans()):
        rows = draw(st.lists(st.integers(0, n - 1), max_size=3))
        for row in rows:
            bad = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
            costs[row, draw(st.integers(0, k - 1))] = bad
    return costs


# --- properties ------------------------------------------------------------------------------


@SETTINGS
@given(cost_arrays())
def test_mask_matches_brute_force(costs):
    np.testing.assert_array_equal(pareto.nondominated_mask(costs), brute_mask(costs))


@pytest.mark.slow  # up to 400 rows per example: ~10 s
@SETTINGS
@given(cost_arrays(max_rows=400, max_objectives=4, nan=False))
def test_mask_matches_brute_force_on_larger_inputs(costs):
    np.testing.assert_array_equal(pareto.nondominated_mask(costs), brute_mask(costs))


@settings(max_examples=100, deadline=None)
@given(cost_arrays(max_rows=60, max_objectives=5))
def test_mask_matches_brute_force_across_many_blocks(costs):
    # tiny blocks make the k >= 4 filter cross many block boundaries
    saved = pareto._BLOCK_MIN, pareto._BLOCK_MAX
    pareto._BLOCK_MIN, pareto._BLOCK_MAX = 3, 5
    try:
        np.testing.assert_array_equal(pareto.nondominated_mask(costs), brute_mask(costs))
    finally:
        pareto._BLOCK_MIN, pareto._BLOCK_MAX = saved


@SETTINGS
@given(cost_arrays(max_rows=20))
def test_ranks_match_peeling(costs):
    np.testing.assert_array_equal(pareto.nondominated_ranks(costs), brute_ranks(costs))


@SETTINGS
@given(cost_arrays(max_rows=12, max_objectives=4), st.floats(0.0, 5.0))
def test_hypervolume_matches_grid_reference(costs, slack):
    k = costs.shape[1]
    ref = np.full(k, 3.0 + slack)  # some float rows lie beyond it: they must add nothing
    expected = grid_hypervolume(costs, ref)
    assert pareto.hypervolume(costs, ref=ref) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@SETTINGS
@given(cost_arrays(max_rows=8, max_objectives=3))
def test_hypervolume_matches_inclusion_exclusion(costs):
    ref = np.full(costs.shape[1], 4.0)
    expected = inclusion_exclusion_hypervolume(costs, ref)
    assert pareto.hypervolume(costs, ref=ref) == pytest.approx(expected, rel=1e-9, abs=1e-6)


@SETTINGS
@given(cost_arrays(max_rows=40, max_objectives=3, nan=False))
def test_hypervolume_depends_on_the_front_only(costs):
    if len(costs) == 0:
        return
    ref = pareto.default_reference(costs)
    front = costs[pareto.nondominated_mask(costs)]
    assert pareto.hypervolume(costs, ref=ref) == pytest.approx(
        pareto.hypervolume(front, ref=ref), rel=1e-12
    )
    assert (ref > costs).all()  # the default reference lies beyond every row


@SETTINGS
@given(cost_arrays(max_rows=30, max_objectives=3), st.data())
def test_max_direction_is_negated_min(costs, data):
    directions = [data.draw(st.sampled_from(["min", "max", "MAX"])) for _ in range(costs.shape[1])]
    turned = pareto.to_costs(costs, directions=directions)
    sign = np.array([-1.0 if d.lower() == "max" else 1.0 for d in directions])
    np.testing.assert_array_equal(turned, costs * sign)
    np.testing.assert_array_equal(pareto.nondominated_mask(turned), brute_mask(costs * sign))


@SETTINGS
@given(cost_arrays(max_rows=30, max_objectives=4))
def test_row_order_does_not_matter(costs):
    order = np.random.default_rng(len(costs)).permutation(len(costs))
    np.testing.assert_array_equal(
        pareto.nondominated_mask(costs)[order], pareto.nondominated_mask(costs[order])
    )


# --- edge cases ------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_empty_input(k):
    costs = np.empty((0, k))
    assert pareto.nondominated_mask(costs).shape == (0,)
    assert pareto.nondominated_ranks(costs).shape == (0,)
    assert pareto.hypervolume(costs, ref=np.zeros(k)) == 0.0


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_one_point(k):
    point = np.arange(1.0, k + 1)[None, :]
    assert pareto.nondominated_mask(point).tolist() == [True]
    assert pareto.nondominated_ranks(point).tolist() == [0]
    ref = point[0] + 2.0
    assert pareto.hypervolume(point, ref=ref) == pytest.approx(2.0**k)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_all_points_equal_are_all_on_the_front(k):
    costs = np.ones((5, k))
    assert pareto.nondominated_mask(costs).all()
    assert (pareto.nondominated_ranks(costs) == 0).all()
    ref = pareto.default_reference(costs)
    assert (ref > 1.0).all()  # zero range: offset 10% of |value|
    assert pareto.hypervolume(costs, ref=ref) == pytest.approx(0.1**k)


def test_duplicates_of_front_points_are_all_kept_and_ties_do_not_dominate():
    costs = np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 1.0], [1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    # [1,3] and [2,2] are dominated; [3,1] is dominated by [2,1] (tie in y, worse x)
    assert pareto.nondominated_mask(costs).tolist() == [True, True, True, False, False, False]
    assert pareto.nondominated_ranks(costs).tolist() == [0, 0, 0, 1, 1, 1]


def test_nan_rows_are_excluded_and_counted():
    costs = np.array([[np.nan, 0.0], [1.0, 1.0], [0.0, np.nan], [2.0, 0.5], [np.inf, -1.0]])
    mask = pareto.nondominated_mask(costs)
    assert mask.tolist() == [False, True, False, True, False]
    assert int((~pareto.valid_mask(costs)).sum()) == 3
    assert pareto.nondominated_ranks(costs).tolist() == [-1, 0, -1, 0, -1]
    assert pareto.hypervolume(costs, ref=np.array([3.0, 2.0])) == pytest.approx(
        grid_hypervolume(costs, np.array([3.0, 2.0]))
    )


def test_default_reference_is_worst_plus_ten_percent_of_range():
    costs = np.array([[0.0, 10.0], [4.0, 0.0], [np.nan, 100.0]])
    np.testing.assert_allclose(pareto.default_reference(costs), [4.4, 11.0])


def test_default_reference_needs_a_valid_row():
    with pytest.raises(ValueError):
        pareto.default_reference(np.array([[np.nan, 1.0]]))


def test_unknown_direction_is_a_config_error():
    with pytest.raises(ConfigError, match="up"):
        pareto.to_costs(np.zeros((2, 2)), directions=["min", "up"])


def test_reference_point_must_match_the_objectives():
    with pytest.raises(ValueError):
        pareto.hypervolume(np.zeros((2, 2)), ref=np.zeros(3))


def test_three_objectives_all_on_a_plane_are_all_on_the_front():
    rng = np.random.default_rng(0)
    costs = rng.random((3000, 3))
    costs /= costs.sum(axis=1, keepdims=True)
    assert pareto.nondominated_mask(costs).all()
    assert (pareto.nondominated_ranks(costs[:300]) == 0).all()


def test_two_objective_staircase_hypervolume_by_hand():
    # points (1,3), (2,2), (3,1) against (4,4): strips of width 1 and heights 1, 2, 3
    costs = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert pareto.hypervolume(costs, ref=np.array([4.0, 4.0])) == pytest.approx(6.0)
