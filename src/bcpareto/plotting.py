"""Matplotlib figures of Pareto fronts; the caller saves them.

Figures are built with ``matplotlib.figure.Figure`` directly (Agg rendering, no pyplot, no
display, no global backend switch), so importing this module never changes a user's
matplotlib state. Values arrive in the objectives' own units; "max" objectives stay as they
are on the axes. An axis whose values span more than LOG_SPAN times is drawn on a log scale;
the title is wrapped to the figure's width; point labels are placed once the layout is known,
so that none covers another label or a front point.

One module, though over 400 lines: every figure here shares those scales, unit labels, title
fitting and label placement, and the no-pyplot discipline; the numbers they draw are computed
by their callers (report.py, cvreport.py) and pareto.py.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from . import pareto

MAX_LABELS = 20  # front points labelled per series (evenly spread); more overprint
LARGE = 5_000  # above this many points: tiny markers, rasterised in the SVG
LOG_SPAN = 10.0  # an axis whose positive values span more than this ratio gets a log scale
TITLE_SIZE = 11
LABEL_SIZE = 7
# Where a label may go, in points from its point, tried in this order: close first, then
# further out (with a leader line); the first that covers no other label or front point wins.
_LABEL_DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
_LABEL_DISTANCES = (5.0, 12.0, 20.0, 30.0)
_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
_MARKERS = ("o", "s", "^", "D", "v", "P")

# Unit hints by column name; the seed's `model_size(MB)` is MiB of the float32 Keras .h5 file.
_UNITS_EXACT = {
    "model_size(MB)": "MiB, float32 Keras .h5",
    "macs": "multiply-adds per image",
    "n_params": "parameters",
    "epochs": "epochs",
    "image_size": "px",
}
_UNITS_SUFFIX = (
    ("_mb", "MB"),
    ("(mb)", "MB"),
    ("_ms", "ms"),
    ("_seconds", "s"),
    ("_macs", "multiply-adds per image"),
)


@dataclass(frozen=True)
class FrontSeries:
    """One source CSV, ready to draw.

    ``values`` is ``(n, k)`` in the objectives' own units (k = 2 or 3); ``front`` marks the
    rows on this series' front; ``labels`` gives the text next to each front point ("" for
    none); ``note`` is appended to the legend entry.
    """

    name: str
    values: np.ndarray
    front: np.ndarray
    labels: Sequence[str] = field(default_factory=tuple)
    note: str = ""
    spread: np.ndarray | None = None  # (n, k) min and max over repeats: (n, k, 2); None: one run each


def axis_label(column: str, *, direction: str, log: bool = False) -> str:
    """``column (unit; lower is better)``, with the unit guessed from the column name."""
    better = "lower is better" if direction == "min" else "higher is better"
    if log:
        better += "; log scale"
    unit = _unit(column)
    return f"{column} ({unit}; {better})" if unit else f"{column} ({better})"


def axis_scale(values: np.ndarray) -> str:
    """``"log"`` when the finite values are all positive and span more than LOG_SPAN times."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size < 2 or finite.min() <= 0:
        return "linear"
    return "log" if finite.max() / finite.min() > LOG_SPAN else "linear"


def staircase(front: np.ndarray, *, directions: Sequence[str], ref: Sequence[float]) -> np.ndarray:
    """Corner points of the region that a 2-D front dominates, bounded by ``ref``.

    Returns an ``(m, 2)`` path from the reference line through every non-dominated point of
    ``front`` (in order of the first objective, best first) back to the reference line; drawn
    as a line it is the staircase, closed through ``ref`` it is the hypervolume region. Points
    that another point of ``front`` dominates in these two objectives are skipped.
    """
    sign = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    ref_cost = np.asarray(ref, dtype=float) * sign
    costs = np.minimum(np.asarray(front, dtype=float)[:, :2] * sign, ref_cost)
    costs = costs[pareto.nondominated_mask(costs)]
    if len(costs) == 0:
        return np.empty((0, 2))
    costs = costs[np.lexsort((costs[:, 1], costs[:, 0]))]
    path = [(costs[0, 0], ref_cost[1])]
    for index, (x, y) in enumerate(costs):
        if index:
            path.append((x, costs[index - 1, 1]))
        path.append((x, y))
    path.append((ref_cost[0], costs[-1, 1]))
    return np.array(path) * sign


def front_figure(
    series: Sequence[FrontSeries],
    *,
    columns: Sequence[str],
    directions: Sequence[str],
    ref: Sequence[float],
    title: str,
    footnote: str = "",
) -> Figure:
    """Figure of all points and the front(s): one panel for 2 objectives, three for 3.

    The layout is computed and then fixed here (the title wrapped to fit, labels placed clear
    of each other once the axes have their final size), so the figure is ready to save and
    saving it runs no second layout pass.
    """
    if len(columns) == 2:
        figure, labels = _figure_2d(series, columns=columns, directions=directions, ref=ref,
                                    footnote=footnote)
    elif len(columns) == 3:
        figure, labels = _figure_3d(series, columns=columns, directions=directions,
                                    footnote=footnote)
    else:
        raise ValueError(f"can draw 2 or 3 objectives, got {len(columns)}")
    _fitted_title(figure, title)
    figure.draw_without_rendering()  # the final layout: data -> pixel transforms are known
    _place_labels(figure, labels)
    figure.set_layout_engine("none")  # labels sit where the layout put the axes: keep it
    return figure


# --- helpers -------------------------------------------------------------------------------


def _unit(column: str) -> str:
    if column in _UNITS_EXACT:
        return _UNITS_EXACT[column]
    lowered = column.lower()
    for suffix, unit in _UNITS_SUFFIX:
        if lowered.endswith(suffix):
            return unit
    if "accuracy" in lowered:
        return "fraction correct"
    if "loss" in lowered:
        return "cross-entropy"
    return ""


def _figure_2d(
    series: Sequence[FrontSeries],
    *,
    columns: Sequence[str],
    directions: Sequence[str],
    ref: Sequence[float],
    footnote: str,
) -> tuple[Figure, list[_Label]]:
    figure = _new_figure(figsize=(9, 6.5))
    ax = figure.add_subplot()
    labels: list[_Label] = []
    for index, item in enumerate(series):
        colour, marker = _COLOURS[index % len(_COLOURS)], _MARKERS[index % len(_MARKERS)]
        values, front = np.asarray(item.values, dtype=float), np.asarray(item.front, dtype=bool)
        _draw_others(ax, values[~front, 0], values[~front, 1], colour=colour, marker=marker)
        path = staircase(values[front], directions=directions, ref=ref)
        if len(path):
            ax.fill(
                np.append(path[:, 0], ref[0]),
                np.append(path[:, 1], ref[1]),
                color=colour,
                alpha=0.08,
                linewidth=0,
            )
            ax.plot(path[:, 0], path[:, 1], color=colour, linewidth=1.6, zorder=3)
        ax.plot(
            values[front, 0],
            values[front, 1],
            linestyle="none",
            marker=marker,
            markersize=7,
            markerfacecolor=colour,
            markeredgecolor="black",
            markeredgewidth=0.8,
            zorder=4,
            label=_legend_text(item, n_front=int(front.sum())),
        )
        if item.spread is not None:  # --repeats: each point is a mean; the bars span min..max
            _error_bars(ax, values, np.asarray(item.spread, dtype=float), colour=colour)
        labels += _labels_for(ax, values, front, item.labels, colour=colour, marker_pt=7)
    ax.plot([ref[0]], [ref[1]], marker="x", color="0.3", linestyle="none", zorder=4,
            label=f"reference point ({_fmt(ref[0])}, {_fmt(ref[1])}); shaded: dominated region")
    everything = np.concatenate([np.asarray(s.values, dtype=float)[:, :2] for s in series])
    for axis in (0, 1):
        _set_scale(ax, axis, np.append(everything[:, axis], ref[axis]))
    ax.set_xlabel(axis_label(columns[0], direction=directions[0],
                             log=ax.get_xscale() == "log"))
    ax.set_ylabel(axis_label(columns[1], direction=directions[1],
                             log=ax.get_yscale() == "log"))
    ax.grid(True, linewidth=0.5, alpha=0.5)
    figure.legend(loc="outside lower center", fontsize=8, frameon=False, title=footnote or None,
                  title_fontsize=7)
    return figure, labels


def _figure_3d(
    series: Sequence[FrontSeries], *, columns: Sequence[str], directions: Sequence[str],
    footnote: str,
) -> tuple[Figure, list[_Label]]:
    """Three pairwise panels; colour is the third objective everywhere."""
    figure = _new_figure(figsize=(17, 6))
    axes = figure.subplots(1, 3)
    labels: list[_Label] = []
    pairs = ((0, 1), (0, 2), (1, 2))
    everything = np.concatenate([np.asarray(s.values, dtype=float) for s in series])
    finite = everything[np.isfinite(everything[:, 2]), 2]
    norm = Normalize(vmin=finite.min(), vmax=finite.max()) if finite.size else Normalize(0, 1)
    cmap = "viridis_r" if directions[2] == "max" else "viridis"  # dark = better
    mappable = None
    for index, item in enumerate(series):
        marker = _MARKERS[index % len(_MARKERS)]
        values, front = np.asarray(item.values, dtype=float), np.asarray(item.front, dtype=bool)
        large = len(values) > LARGE
        for ax, (i, j) in zip(axes, pairs):
            others = values[~front]
            if large:
                _draw_binned_colours(ax, others[:, i], others[:, j], others[:, 2], cmap=cmap,
                                     norm=norm)
            else:
                ax.scatter(others[:, i], others[:, j], c=others[:, 2], cmap=cmap, norm=norm,
                           marker=marker, s=14, alpha=0.35, linewidths=0)
            mappable = ax.scatter(
                values[front, i], values[front, j], c=values[front, 2], cmap=cmap, norm=norm,
                marker=marker, s=46, edgecolors="black", linewidths=0.8, zorder=4,
            )
            path = staircase(
                values[front][:, [i, j]],
                directions=[directions[i], directions[j]],
                ref=_worst_corner(values[:, [i, j]], [directions[i], directions[j]]),
            )
            if len(path):
                ax.plot(path[1:-1, 0], path[1:-1, 1], color="0.4", linewidth=0.9,
                        linestyle="--", zorder=3)
        for ax, (i, j) in zip(axes, pairs):
            labels += _labels_for(ax, values[:, [i, j]], front, item.labels, colour="black",
                                  marker_pt=7)
    for ax, (i, j) in zip(axes, pairs):
        _set_scale(ax, 0, everything[:, i])
        _set_scale(ax, 1, everything[:, j])
        ax.set_xlabel(axis_label(columns[i], direction=directions[i],
                                 log=ax.get_xscale() == "log"), fontsize=9)
        ax.set_ylabel(axis_label(columns[j], direction=directions[j],
                                 log=ax.get_yscale() == "log"), fontsize=9)
        ax.grid(True, linewidth=0.5, alpha=0.5)
    handles = [
        Line2D([], [], linestyle="none", marker=_MARKERS[index % len(_MARKERS)], color="0.5",
               markeredgecolor="black", label=_legend_text(item, n_front=int(np.sum(item.front))))
        for index, item in enumerate(series)
    ]
    handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="white",
                          markeredgecolor="black", label="black edge: on the 3-objective front"))
    handles.append(Line2D([], [], color="0.4", linestyle="--",
                          label="dashed: front points that are best for this pair"))
    figure.legend(handles=handles, loc="outside lower center", fontsize=8, frameon=False,
                  ncols=min(len(handles), 2), title=footnote or None, title_fontsize=7)
    if mappable is not None:
        colourbar = figure.colorbar(mappable, ax=list(axes), shrink=0.9, pad=0.01)
        colourbar.set_label(axis_label(columns[2], direction=directions[2]), fontsize=9)
    return figure, labels


def _error_bars(ax, values: np.ndarray, spread: np.ndarray, *, colour: str) -> None:
    """Bars from the lowest to the highest repeat of every point, on each axis that varies."""
    low = np.clip(values[:, :2] - spread[:, :2, 0], 0, None)
    high = np.clip(spread[:, :2, 1] - values[:, :2], 0, None)
    xerr = np.vstack([low[:, 0], high[:, 0]]) if (low[:, 0] + high[:, 0]).any() else None
    yerr = np.vstack([low[:, 1], high[:, 1]]) if (low[:, 1] + high[:, 1]).any() else None
    ax.errorbar(values[:, 0], values[:, 1], xerr=xerr, yerr=yerr, fmt="none", ecolor=colour,
                elinewidth=0.9, capsize=2.5, alpha=0.7, zorder=3)


def _draw_others(ax, x: np.ndarray, y: np.ndarray, *, colour: str, marker: str) -> None:
    """Dominated points: small and light; tiny and rasterised when there are many."""
    if len(x) > LARGE:
        ax.plot(x, y, linestyle="none", marker=".", markersize=1.5, color=colour, alpha=0.3,
                markeredgewidth=0, rasterized=True, zorder=1)
    else:
        ax.plot(x, y, linestyle="none", marker=marker, markersize=5, color=colour, alpha=0.45,
                markeredgewidth=0, zorder=2)


def _draw_binned_colours(ax, x: np.ndarray, y: np.ndarray, colour_values: np.ndarray, *,
                         cmap: str, norm: Normalize, levels: int = 32) -> None:
    """Many points coloured by a value: one marker line per colour level (a collection with
    one colour per point takes seconds to render at 100,000 points; this takes a fraction)."""
    import matplotlib

    colours = matplotlib.colormaps[cmap]
    scaled = np.clip(norm(colour_values), 0.0, 1.0)
    level = np.minimum((np.nan_to_num(scaled, nan=0.0) * levels).astype(int), levels - 1)
    level[~np.isfinite(colour_values)] = -1  # rows excluded for a missing value: not drawn
    for index in range(levels):
        chosen = level == index
        if chosen.any():
            ax.plot(x[chosen], y[chosen], linestyle="none", marker=".", markersize=1.5,
                    markeredgewidth=0, alpha=0.4, color=colours((index + 0.5) / levels),
                    rasterized=True, zorder=1)


@dataclass(frozen=True)
class _Label:
    """A front point's label, to be placed once the figure's layout is known."""

    ax: object  # matplotlib Axes
    x: float
    y: float
    text: str
    colour: str
    marker_pt: float  # marker diameter in points: the label must not cover it


def _labels_for(ax, values: np.ndarray, front: np.ndarray, labels: Sequence[str], *,
                colour: str, marker_pt: float) -> list[_Label]:
    """Labels of a series' front points (at most MAX_LABELS, evenly spread along x)."""
    if not len(labels):
        return []
    rows = np.flatnonzero(front & np.isfinite(values[:, :2]).all(axis=1))
    rows = rows[np.argsort(values[rows, 0], kind="stable")]
    if len(rows) > MAX_LABELS:
        rows = rows[np.unique(np.linspace(0, len(rows) - 1, MAX_LABELS).round().astype(int))]
    return [_Label(ax, float(values[row, 0]), float(values[row, 1]), labels[row], colour,
                   marker_pt) for row in rows if labels[row]]


def _new_figure(*, figsize: tuple[float, float]) -> Figure:
    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)  # a renderer to measure text with, before anything is saved
    return figure


def _set_scale(ax, axis: int, values: np.ndarray) -> None:
    """Log scale (ticks at 1, 2, 5 per decade, plain numbers) when the values span > LOG_SPAN."""
    if axis_scale(values) != "log":
        return
    target = ax.xaxis if axis == 0 else ax.yaxis
    (ax.set_xscale if axis == 0 else ax.set_yscale)("log")
    target.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(ticker.NullFormatter())


def _fitted_title(figure: Figure, title: str) -> None:
    """The title, wrapped at word boundaries until every line fits inside the figure."""
    renderer = figure.canvas.get_renderer()
    width = figure.bbox.width * 0.96
    text = figure.suptitle(title, fontsize=TITLE_SIZE)
    chars = max(len(line) for line in title.splitlines())
    while text.get_window_extent(renderer).width > width and chars > 20:
        chars = int(chars * min(0.95, width / text.get_window_extent(renderer).width))
        wrapped = [textwrap.fill(line, chars, break_on_hyphens=False) for line in title.splitlines()]
        text.set_text("\n".join(wrapped))


def _place_labels(figure: Figure, labels: Sequence[_Label]) -> None:
    """Greedy placement: each label takes the first spot near its point that covers no label
    placed so far and no front point, inside the axes; failing that, the least-bad spot."""
    if not labels:
        return
    renderer = figure.canvas.get_renderer()
    px_per_pt = figure.dpi / 72
    markers: dict[object, list[Bbox]] = {}
    for label in labels:
        x, y = label.ax.transData.transform((label.x, label.y))
        half = label.marker_pt / 2 * px_per_pt
        markers.setdefault(label.ax, []).append(Bbox([[x - half, y - half], [x + half, y + half]]))
    placed: dict[object, list[Bbox]] = {}
    for label in sorted(labels, key=lambda item: (id(item.ax), item.x, item.y)):
        best = None
        for rank, (distance, (dx, dy)) in enumerate(
            (d, direction) for d in _LABEL_DISTANCES for direction in _LABEL_DIRECTIONS
        ):
            annotation = _annotate(label, dx, dy, distance)
            annotation.update_positions(renderer)
            box = Text.get_window_extent(annotation, renderer).padded(px_per_pt)  # no leader
            cost = _overlap(box, placed.get(label.ax, [])) * 1e6
            cost += _overlap(box, markers[label.ax]) * 1e6
            cost += _outside(box, label.ax.bbox) * 1e3 + rank
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, annotation, box)
            else:
                annotation.remove()
            if cost < 1e3:  # clear of every label and point, inside the axes
                break
        placed.setdefault(label.ax, []).append(best[2])


def _annotate(label: _Label, dx: int, dy: int, distance: float):
    """The label at ``distance`` points from its point in direction (dx, dy); beyond the
    closest ring a thin leader line shows which point it belongs to."""
    leader = dict(arrowstyle="-", color=label.colour, linewidth=0.5, shrinkA=0, shrinkB=3)
    annotation = label.ax.annotate(
        label.text, (label.x, label.y), xytext=(dx * distance, dy * distance),
        textcoords="offset points", fontsize=LABEL_SIZE, color=label.colour, zorder=5,
        ha={1: "left", 0: "center", -1: "right"}[dx],
        va={1: "bottom", 0: "center", -1: "top"}[dy],
        bbox=dict(boxstyle="square,pad=0.1", facecolor="white", edgecolor="none", alpha=0.75),
        arrowprops=leader if distance > _LABEL_DISTANCES[0] else None,
    )
    annotation.set_in_layout(False)  # placed after the layout; must not move it
    return annotation


def _overlap(box: Bbox, others: Sequence[Bbox]) -> float:
    """Total area (pixels) that ``box`` shares with ``others``."""
    total = 0.0
    for other in others:
        width = min(box.x1, other.x1) - max(box.x0, other.x0)
        height = min(box.y1, other.y1) - max(box.y0, other.y0)
        if width > 0 and height > 0:
            total += width * height
    return total


def _outside(box: Bbox, frame: Bbox) -> float:
    """Area (pixels) of ``box`` outside ``frame``."""
    inside = _overlap(box, [frame])
    return box.width * box.height - inside


def _legend_text(item: FrontSeries, *, n_front: int) -> str:
    text = f"{item.name}: {len(item.values):,} rows, {n_front:,} on the front"
    return f"{text}; {item.note}" if item.note else text


def _worst_corner(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    finite = values[np.isfinite(values).all(axis=1)]
    if finite.size == 0:
        return np.zeros(2)
    return np.array([finite[:, d].min() if directions[d] == "max" else finite[:, d].max()
                     for d in range(2)])


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def cv_figure(
    *, sizes: np.ndarray, values: np.ndarray, lo: np.ndarray, hi: np.ndarray, p_front: np.ndarray,
    labels: Sequence[str], chosen: dict[int, str], x_label: str, y_label: str, title: str,
) -> Figure:
    """Accuracy against size with each model's interval as an error bar, coloured (and made
    more opaque) by its probability of being on the front; the chosen models ringed and named.
    Readable from a handful of models to several hundred (thin bars, small markers)."""
    sizes, values = np.asarray(sizes, float), np.asarray(values, float)
    p = np.nan_to_num(np.asarray(p_front, float))
    figure = _new_figure(figsize=(8.0, 5.5))
    ax = figure.add_subplot()
    many = len(values) > 60
    norm = Normalize(0.0, 1.0)
    cmap = _colormap("viridis_r")
    order = np.argsort(p)  # likely front members drawn last, on top
    for i in order:
        colour = cmap(norm(p[i]))
        ax.errorbar(sizes[i], values[i], yerr=[[values[i] - lo[i]], [hi[i] - values[i]]], fmt="none",
                    ecolor=colour, alpha=0.25 + 0.75 * p[i], elinewidth=0.6 if many else 1.0, capsize=0 if many else 2)
    points = ax.scatter(sizes[order], values[order], c=p[order], cmap=cmap, norm=norm,
                        s=10 if many else 28, alpha=None, edgecolors="none", zorder=3)
    colourbar = figure.colorbar(points, ax=ax, pad=0.01)
    colourbar.set_label("P(on the front): share of smear resamples in which it is non-dominated")
    front = pareto.nondominated_mask(np.column_stack([-values, sizes]))
    xs = np.argsort(sizes[front])
    ax.step(sizes[front][xs], values[front][xs], where="post", color="0.4", linewidth=0.8,
            linestyle="--", label="front of the point estimates", zorder=2)
    for i, budget in chosen.items():
        ax.scatter([sizes[i]], [values[i]], s=170, facecolors="none", edgecolors="tab:red", linewidths=1.6, zorder=4)
        ax.annotate(f"grid {labels[i]} ({budget})", (sizes[i], values[i]), xytext=(8, -14),
                    textcoords="offset points", fontsize=LABEL_SIZE + 1, color="tab:red")
    if not many:
        for i in np.flatnonzero(front & ~np.isin(np.arange(len(values)), list(chosen))):
            ax.annotate(labels[i], (sizes[i], values[i]), xytext=(4, 4), textcoords="offset points",
                        fontsize=LABEL_SIZE, color="0.3")
    ax.scatter([], [], s=170, facecolors="none", edgecolors="tab:red", linewidths=1.6, label="chosen (size budget)")
    ax.set_xlabel(axis_label(x_label, direction="min", log=axis_scale(sizes) == "log"))
    ax.set_ylabel(y_label)
    _set_scale(ax, 0, sizes)
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.legend(loc="lower right", fontsize=LABEL_SIZE + 1)
    _fitted_title(figure, title)
    return figure


def _colormap(name: str):
    from matplotlib import colormaps

    return colormaps[name]
