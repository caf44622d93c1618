"""Front figures people can read: log axes for wide ranges, a title that fits, labels apart.

Each test inspects the matplotlib Figure that plotting.front_figure returns, laid out as saved.
"""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from matplotlib.text import Text

from bcpareto import pareto, plotting
from bcpareto.plotting import FrontSeries, axis_scale, front_figure

LONG_TITLE = (
    "Pareto front: maximise held-out accuracy (test_accuracy, TEST minus 108 TRAIN duplicates) "
    "vs minimise model_size(MB), with a few more words so that no figure could hold it on one line"
)


def _series(name: str, values, directions=("min", "max")) -> FrontSeries:
    values = np.asarray(values, dtype=float)
    sign = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    front = pareto.nondominated_mask(values * sign)
    return FrontSeries(name=name, values=values, front=front,
                       labels=[str(i) for i in range(len(values))])


def _figure(series, *, columns=("size_mb", "test_accuracy"), directions=("min", "max"),
            ref=None, title="Pareto front"):
    if ref is None:
        everything = np.concatenate([s.values for s in series])
        ref = [everything[:, 0].max() * 1.1, everything[:, 1].min() * 0.9]
    figure = front_figure(series, columns=list(columns), directions=list(directions), ref=ref,
                          title=title)
    return figure  # laid out already: front_figure places the labels after the layout


def _label_boxes(figure):
    renderer = figure.canvas.get_renderer()
    return {
        ax: [(t.get_text(), Text.get_window_extent(t, renderer)) for t in ax.texts]
        for ax in figure.axes if ax.texts
    }


def _front_marker_centres(ax, series, columns=(0, 1)):
    i, j = columns
    points = np.concatenate([s.values[s.front][:, [i, j]] for s in series])
    return ax.transData.transform(points)


@pytest.mark.parametrize("low,high,expected", [
    (0.18, 3.6, "log"),  # the edge grid's sizes: 20x
    (0.04, 0.9, "log"),
    (4.4, 10.1, "linear"),  # the seed grid's sizes: 2.3x
    (1.0, 10.0, "linear"),  # exactly 10x is not more than 10x
    (-1.0, 50.0, "linear"),  # no log axis through zero or below
])
def test_axis_scale_is_log_only_when_the_values_span_more_than_ten_times(low, high, expected):
    assert axis_scale(np.array([low, (low + high) / 2, high, np.nan])) == expected


def test_wide_sizes_get_a_log_x_axis_and_narrow_accuracies_a_linear_y_axis():
    wide = _series("edge", [[0.18, 0.89], [0.33, 0.92], [0.5, 0.87], [3.6, 0.87]])
    figure = _figure([wide])
    (ax,) = figure.axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
    assert "log scale" in ax.get_xlabel() and "log scale" not in ax.get_ylabel()
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert "1" in ticks and all("10^" not in t and "$" not in t for t in ticks)  # plain numbers


def test_narrow_sizes_keep_a_linear_x_axis():
    narrow = _series("seed", [[4.4, 0.80], [5.0, 0.85], [10.1, 0.90]])
    (ax,) = _figure([narrow]).axes
    assert ax.get_xscale() == "linear" and "log scale" not in ax.get_xlabel()


def test_three_objectives_scale_each_panel_axis_on_its_own():
    values = [[0.18, 0.89, 0.2], [0.33, 0.92, 0.9], [3.6, 0.95, 30.0], [1.0, 0.80, 1.0]]
    figure = _figure([_series("a", values, ("min", "max", "min"))],
                     columns=("size_mb", "test_accuracy", "latency_ms"),
                     directions=("min", "max", "min"))
    panels = [ax for ax in figure.axes if ax.get_label() != "<colorbar>"][:3]
    scales = [(ax.get_xscale(), ax.get_yscale()) for ax in panels]
    # panels: (size, accuracy), (size, latency), (accuracy, latency)
    assert scales == [("log", "linear"), ("log", "log"), ("linear", "log")]


def test_a_long_title_is_wrapped_inside_the_figure():
    figure = _figure([_series("a", [[0.2, 0.8], [2.0, 0.9]])], title=LONG_TITLE)
    title = next(t for t in figure.texts if t.get_text().replace("\n", " ") == LONG_TITLE)
    box = title.get_window_extent(figure.canvas.get_renderer())
    assert "\n" in title.get_text()
    assert figure.bbox.x0 <= box.x0 and box.x1 <= figure.bbox.x1
    assert figure.bbox.y0 <= box.y0 and box.y1 <= figure.bbox.y1


@pytest.mark.parametrize("extra", [{}, {"z": "latency_ms:min"}], ids=["default", "latency"])
def test_the_edge_runs_figure_has_a_title_that_fits_and_labels_apart(tmp_path, monkeypatch, extra):
    """The figure `bcpareto plot` saves for docs/results/2026-11-26-edge/edge_metrics_log.csv
    and docs/results/2026-11-26-quick/quick_metrics_log.csv."""
    from bcpareto.report import plot_report

    from .conftest import ROOT

    figures = []
    build = plotting.front_figure
    monkeypatch.setattr(plotting, "front_figure", lambda *a, **k: figures.append(build(*a, **k))
                        or figures[-1])
    plot_report([ROOT / "docs" / "results" / "2026-11-26-edge" / "edge_metrics_log.csv",
                 ROOT / "docs" / "results" / "2026-11-26-quick" / "quick_metrics_log.csv"],
                out_dir=tmp_path, **extra)
    (figure,) = figures
    renderer = figure.canvas.get_renderer()
    title = next(t for t in figure.texts if t.get_text().startswith("Pareto front"))
    box = title.get_window_extent(renderer)
    assert figure.bbox.x0 <= box.x0 and box.x1 <= figure.bbox.x1, title.get_text()
    assert figure.axes[0].get_xscale() == "log"  # sizes of 28k to 914k-parameter models
    for panel in _label_boxes(figure).values():
        for (text_a, a), (text_b, b) in itertools.combinations(panel, 2):
            assert not a.overlaps(b), (text_a, text_b)


# Two runs of the same grid: grid 0 of both at the same size, and crowded small models.
EDGE = [[0.181, 0.889], [0.335, 0.922], [0.21, 0.857], [0.99, 0.887], [3.52, 0.862]]
QUICK = [[0.181, 0.719], [0.211, 0.820], [0.99, 0.839], [0.30, 0.73], [3.59, 0.828]]
CROWD = [[1.0 + 0.01 * i, 0.50 + 0.006 * i] for i in range(12)] + [[0.1, 0.2], [30.0, 0.95]]


@pytest.mark.parametrize("runs", [[EDGE, QUICK], [CROWD]], ids=["edge_and_quick", "crowded"])
def test_every_front_point_has_a_label_that_covers_no_other_label_or_front_point(runs):
    series = [_series(f"run{i}", values) for i, values in enumerate(runs)]
    figure = _figure(series)
    (ax,) = figure.axes
    (boxes,) = _label_boxes(figure).values()
    expected = sorted(str(row) for s in series for row in np.flatnonzero(s.front))
    assert sorted(text for text, _ in boxes) == expected
    for (text_a, a), (text_b, b) in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (text_a, text_b)
    radius = 3.9 * figure.dpi / 72  # marker half-width plus its edge, in pixels
    for text, box in boxes:
        assert ax.bbox.contains(box.x0, box.y0) and ax.bbox.contains(box.x1, box.y1), text
        for x, y in _front_marker_centres(ax, series):
            hit = box.x0 < x + radius and x - radius < box.x1 and box.y0 < y + radius \
                and y - radius < box.y1
            assert not hit, (text, x, y)


def test_labels_stay_apart_in_every_panel_of_a_three_objective_figure():
    values = [[0.18, 0.89, 0.39], [0.33, 0.92, 0.89], [0.52, 0.905, 0.51], [0.18, 0.72, 0.22],
              [0.21, 0.82, 0.26], [0.99, 0.84, 0.91], [1.68, 0.838, 0.57]]
    figure = _figure([_series("a", values, ("min", "max", "min"))],
                     columns=("size_mb", "test_accuracy", "latency_ms"),
                     directions=("min", "max", "min"))
    boxes = _label_boxes(figure)
    assert len(boxes) == 3  # every panel is labelled
    for panel in boxes.values():
        for (text_a, a), (text_b, b) in itertools.combinations(panel, 2):
            assert not a.overlaps(b), (text_a, text_b)


def test_more_front_points_than_max_labels_are_thinned_evenly():
    values = [[1.0 + i, 1.0 + i] for i in range(plotting.MAX_LABELS * 2)]
    figure = _figure([_series("a", values, ("min", "min"))], directions=("min", "min"),
                     ref=[100.0, 100.0])
    (boxes,) = _label_boxes(figure).values()
    assert len(boxes) == 1  # one point dominates all others on a min/min diagonal
    values = [[1.0 + i, 100.0 - i] for i in range(plotting.MAX_LABELS * 2)]
    figure = _figure([_series("a", values, ("min", "min"))], directions=("min", "min"),
                     ref=[100.0, 200.0])
    (boxes,) = _label_boxes(figure).values()
    assert len(boxes) == plotting.MAX_LABELS


@pytest.mark.parametrize("n", [16, 300])
def test_cv_figure_draws_intervals_front_probability_and_the_chosen_at_16_and_300_models(n: int) -> None:
    rng = np.random.default_rng(0)
    sizes = np.exp(rng.uniform(np.log(0.01), np.log(1.0), n))
    values = 0.8 + 0.05 * np.log10(sizes) + rng.normal(0, 0.02, n)
    p = rng.uniform(0, 1, n)
    figure = plotting.cv_figure(sizes=sizes, values=values, lo=values - 0.04, hi=values + 0.04, p_front=p,
                                labels=[str(i) for i in range(n)], chosen={3: "<= 0.02 MB", 7: "any size"},
                                x_label="tflite_int8_mb", y_label="cv_int8_accuracy", title="t")
    ax = figure.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert "grid 3 (<= 0.02 MB)" in texts and "grid 7 (any size)" in texts
    assert len(texts) <= 2 + 20  # front labels only for a readable number of models; none at 300
    if n == 300:
        assert len(texts) == 2
    assert ax.get_xscale() == "log" and len(ax.collections) >= n  # one error bar per model
    assert figure.axes[1].get_ylabel().startswith("P(on the front)")
    figure.savefig(io.BytesIO(), format="png")
