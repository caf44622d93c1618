"""Hypervolume against cumulative training seconds: how soon a search finds its front.

Pure numpy on top of pareto.py (matplotlib only inside :func:`plot_hv_seconds`); nothing here
knows about Keras, Optuna or the storage. Rows are plain dicts, such as the rows of
metrics_log.csv, in the order their trials finished (the caller sorts). Every row adds its
``train_seconds``; a completed row with both objectives also adds its point to the front. A row
with a ``stopped_at_epoch`` (successive halving stopped it) or a blank/NaN objective adds
seconds only.

Volumes of different runs are comparable only against one reference point: take it from
:func:`reference_point` over every run being compared, and keep it fixed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .errors import ColumnError
from .pareto import default_reference, hypervolume, nondominated_mask, to_costs

X, Y = "model_size(MB)", "val_accuracy"  # the seed's CSV column names: size down, accuracy up
SECONDS = "train_seconds"  # the compute a trial spent; wall_seconds adds evaluation and TFLite
DIRECTIONS = ("min", "max")  # (x, y)
SHARES = (0.95, 0.98)  # shares of the best volume whose arrival times are reported
PNG_DPI = 150
_TOLERANCE = 1e-12  # relative: the same front summed in another order may differ in the last bit


class Trace(NamedTuple):
    """After each row (trial): cumulative training seconds, and the hypervolume of the
    completed rows so far (in the cost space ``(x, -y)``, against the trace's reference)."""

    seconds: np.ndarray
    hypervolume: np.ndarray


def reference_point(
    runs: Sequence[Sequence[Mapping[str, Any]]], *, x: str = X, y: str = Y
) -> np.ndarray:
    """One reference point, in cost space ``(x, -y)``, for every run compared.

    :func:`pareto.default_reference` of the completed rows of all runs together: the worst
    ``x`` and ``y`` among them plus 10% of their range, so each run's extreme points add volume
    and every run is measured against the same box.
    """
    points = [_point(row, x, y, index) for rows in runs for index, row in enumerate(rows)]
    valid = [p for p in points if p is not None]
    if not valid:
        raise ColumnError(
            f"no completed row with both {x} and {y} in any run; expected at least one finished "
            "trial (a blank stopped_at_epoch and numbers in both columns)"
        )
    return default_reference(to_costs(np.array(valid), directions=DIRECTIONS))


def hypervolume_trace(
    rows: Sequence[Mapping[str, Any]], *, x: str = X, y: str = Y, ref: Sequence[float] | np.ndarray,
    seconds: str = SECONDS,
) -> Trace:
    """Cumulative ``seconds`` (a column: ``train_seconds`` by default) and the hypervolume after
    each row, in row order.

    ``ref`` is in cost space ``(x, -y)``, as :func:`reference_point` returns it. Stopped rows
    and rows whose ``x`` or ``y`` is blank or NaN add seconds only.
    """
    ref = np.asarray(ref, dtype=float)
    cumulative = np.empty(len(rows))
    volumes = np.empty(len(rows))
    front = np.empty((0, 2))
    volume = 0.0
    total = 0.0
    for index, row in enumerate(rows):
        spent = _number(row.get(seconds), seconds, index)
        if math.isnan(spent) or spent < 0:
            raise ColumnError(
                f"row {index + 1}: {seconds} is {row.get(seconds)!r}; expected the "
                "seconds the trial spent (0 or more)"
            )
        total += spent
        point = _point(row, x, y, index)
        if point is not None:
            cost = to_costs(np.array([point]), directions=DIRECTIONS)
            candidates = np.concatenate([front, cost])
            front = candidates[nondominated_mask(candidates)]
            volume = hypervolume(front, ref=ref)
        cumulative[index], volumes[index] = total, volume
    return Trace(cumulative, volumes)


def best_volume(traces: Mapping[str, Trace]) -> float:
    """The largest final hypervolume among the traces (0 when every trace is empty)."""
    finals = [float(t.hypervolume[-1]) for t in traces.values() if len(t.hypervolume)]
    return max(finals, default=0.0)


def volume_at(trace: Trace, seconds: Sequence[float] | np.ndarray) -> np.ndarray:
    """The trace's hypervolume once ``seconds`` of training are spent (0 before its first row):
    the volume of the last row whose cumulative seconds are at most each value."""
    index = np.searchsorted(trace.seconds, np.asarray(seconds, dtype=float), side="right")
    padded = np.concatenate([[0.0], trace.hypervolume])
    return padded[index]


def seconds_to_reach(trace: Trace, share: float, best: float) -> float | None:
    """The first cumulative seconds at which the volume is at least ``share * best``; None if
    never. ``best`` is the volume to measure against (:func:`best_volume`, or a reference front's
    volume); it must be positive."""
    if not best > 0:
        raise ValueError(f"best volume must be positive, not {best!r}")
    target = share * best * (1 - _TOLERANCE)
    reached = np.flatnonzero(trace.hypervolume >= target)
    return float(trace.seconds[reached[0]]) if reached.size else None


def reach_lines(
    traces: Mapping[str, Trace], *, best: float | None = None, shares: Sequence[float] = SHARES
) -> list[str]:
    """One line per trace: the minutes (and seconds) it needed to reach each share of ``best``
    (default :func:`best_volume`), and its final share and training time."""
    best = best_volume(traces) if best is None else best
    width = max((len(label) for label in traces), default=0)
    lines = []
    for label, trace in traces.items():
        parts = []
        for share in shares:
            reached = seconds_to_reach(trace, share, best) if best > 0 else None
            at = "not reached" if reached is None else f"{reached / 60:6.1f} min ({reached:,.0f} s)"
            parts.append(f"{share:.0%}: {at}")
        final = float(trace.hypervolume[-1]) / best if len(trace.hypervolume) and best > 0 else 0.0
        spent = float(trace.seconds[-1]) if len(trace.seconds) else 0.0
        lines.append(f"{label:<{width}}  " + "   ".join(parts)
                     + f"   (final {final:.1%} after {spent / 60:.1f} min, {len(trace.seconds)} trials)")
    return lines


def plot_hv_seconds(
    traces: Mapping[str, Trace],
    path: Path | str,
    *,
    shares: Sequence[float] = SHARES,
    title: str = "Hypervolume against training time",
    best: float | None = None,
    xlabel: str = "cumulative training time (min)",
) -> Path:
    """Write a PNG: each trace's volume as a share of ``best`` (default :func:`best_volume`) in %
    against cumulative training minutes, as overlaid step lines; the legend says when each run
    reached each share. Matplotlib's Agg canvas: no display, no global backend switch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .runs import write_atomic

    best = best_volume(traces) if best is None else best
    figure = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, trace in traces.items():
        minutes = np.concatenate([[0.0], trace.seconds / 60])
        percent = np.concatenate([[0.0], trace.hypervolume / best * 100 if best > 0 else trace.hypervolume])
        (line,) = axes.step(minutes, percent, where="post", linewidth=1.6)
        reached = []
        for share in shares:
            at = seconds_to_reach(trace, share, best) if best > 0 else None
            reached.append(f"{share:.0%} {'-' if at is None else f'{at / 60:.1f} min'}")
            if at is not None:
                axes.plot(at / 60, share * 100, "o", color=line.get_color(), markersize=4)
        line.set_label(f"{label}  ({', '.join(reached)})")
    for share in shares:
        axes.axhline(share * 100, color="0.6", linestyle=":", linewidth=0.8)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("hypervolume (% of the best final volume)")
    top = max((float(t.hypervolume.max()) / best * 100 for t in traces.values() if len(t.hypervolume) and best > 0),
              default=100.0)
    axes.set_ylim(0, max(102.0, top + 2))
    axes.set_xlim(left=0)
    axes.grid(alpha=0.3)
    axes.set_title(title, fontsize=11)
    axes.legend(title="run  (time to reach each share)", fontsize=8, title_fontsize=8, loc="best")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PNG_DPI)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buffer.getvalue())
    return path


def runs_from_csvs(paths: Sequence[Path | str], *, seconds: str = SECONDS) -> dict[str, list[dict[str, Any]]]:
    """The rows of each search (CSV file x study) in the order its trials were numbered, which
    is the order a single worker trained them; label "file" or "file: study" when a file holds several."""
    import csv

    runs: dict[str, list[dict[str, Any]]] = {}
    for path in map(Path, paths):
        with open(path, newline="", errors="replace") as handle:
            rows = list(csv.DictReader(handle))
        if rows and seconds not in rows[0]:
            raise ColumnError(
                f"{path}: no {seconds} column; hypervolume against training time needs the seconds "
                "every trial spent (train_seconds: logged since the samplers came in; older logs have "
                "wall_seconds: pass --seconds-column wall_seconds)"
            )
        by_study: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_study.setdefault(row.get("study") or "", []).append(row)
        for study, study_rows in by_study.items():
            label = path.name if len(by_study) == 1 else f"{path.name}: {study}"
            runs[label] = sorted(study_rows, key=lambda r: float(r.get("trial") or 0))
    return runs


def hv_seconds_report(
    paths: Sequence[Path | str], *, out: Path | str, x: str = X, y: str = Y,
    shares: Sequence[float] = SHARES, seconds: str = SECONDS,
) -> tuple[Path, list[str]]:
    """Hypervolume against cumulative seconds (``seconds`` column) of every search in the CSVs,
    against one shared reference point: the figure written to ``out`` and the reach lines to print."""
    runs = runs_from_csvs(paths, seconds=seconds)
    ref = reference_point(list(runs.values()), x=x, y=y)
    traces = {label: hypervolume_trace(rows, x=x, y=y, ref=ref, seconds=seconds) for label, rows in runs.items()}
    label = "training time" if seconds == SECONDS else seconds
    figure = plot_hv_seconds(traces, out, shares=shares, xlabel=f"cumulative {label} (min)",
                             title=f"Hypervolume of ({y} up, {x} down) against {label}")
    return figure, reach_lines(traces, shares=shares)


# --- helpers -------------------------------------------------------------------------------


def _number(value: Any, column: str, index: int) -> float:
    """A cell as a float: blank, None and NaN are NaN; text that is no number is an error."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ColumnError(f"row {index + 1}: {column} is {value!r}; expected a number or a blank") from None


def _point(row: Mapping[str, Any], x: str, y: str, index: int) -> tuple[float, float] | None:
    """The row's ``(x, y)`` when it completed and both are finite; None when it adds no volume."""
    if not math.isnan(_number(row.get("stopped_at_epoch"), "stopped_at_epoch", index)):
        return None
    point = (_number(row.get(x), x, index), _number(row.get(y), y, index))
    return point if all(math.isfinite(v) for v in point) else None
