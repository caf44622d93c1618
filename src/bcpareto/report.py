"""`bcpareto plot`: metrics CSVs -> front, hypervolume, figure and front CSV.

Reads the seed's logs as they are and ours. Everything is validated before anything is
written; the three outputs are written to temporary files in the output folder and renamed
into place only once all three exist, so a failure leaves no partial output.

One module, though over 400 lines: `bcpareto plot` reads top to bottom as one pipeline (read and
validate the CSVs, compute the fronts and hypervolume, name the axes and title, write the three
outputs), each step on the same objectives and tables; the drawing is plotting.py's and the
math pareto.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd

from . import pareto, plotting
from .errors import BcParetoError, ColumnError, ConfigError

# Column names kept from the seed's metrics_log.csv for compatibility (not snake_case units).
SIZE_COLUMN = "model_size(MB)"
SEED_COLUMNS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", SIZE_COLUMN)
# The default y: choose on validation (bcpareto's protocol), or TEST where a CSV has no validation.
HELD_OUT_ACCURACY = ("val_accuracy", "test_accuracy")
REPORTED_ON_TEST = ("test_accuracy", "int8_test_accuracy")  # shown beside a front chosen on validation
PROTOCOL = "chosen on validation, reported on TEST"
REPEAT_KEY = ("study", "grid_id")  # rows of one model trained with several seeds (--repeats)
ID_COLUMN = "grid_id"
DEFAULT_OUT = "pareto_outputs"  # where `bcpareto plot` writes unless --out says
OUTPUT_NAMES = ("pareto_front.png", "pareto_front.svg", "pareto_front.csv")
PNG_DPI = 150
MAX_PRINTED = 100  # front rows printed; pareto_front.csv has them all


@dataclass(frozen=True)
class Objective:
    """One objective: a CSV column and whether to minimise or maximise it."""

    column: str
    direction: str  # "min" or "max"

    def __str__(self) -> str:
        return f"{self.column}:{self.direction}"


@dataclass(frozen=True)
class SourceResult:
    """One input CSV: its table, objective values and its own front."""

    path: Path
    name: str
    table: pd.DataFrame
    values: np.ndarray  # (n, k), objective values in their own units
    front: np.ndarray  # (n,) bool: non-dominated within this CSV
    n_excluded: int  # rows with a missing (NaN) objective value
    hypervolume: float
    spread: np.ndarray | None = None  # (n, k, 2): min and max over repeats; None: one run per row


@dataclass(frozen=True)
class PlotReport:
    """What `bcpareto plot` computed and wrote."""

    objectives: tuple[Objective, ...]
    ref: np.ndarray  # reference point in the objectives' own units
    ref_is_default: bool
    sources: tuple[SourceResult, ...]
    notes: tuple[str, ...]  # what the reader must know: protocol, members within each other's spread
    overall_front: np.ndarray | None  # per row of the pooled sources; None for one CSV
    overall_hypervolume: float | None
    front_table: pd.DataFrame  # the rows written to pareto_front.csv
    outputs: tuple[Path, ...]


def plot_report(
    csv_paths: Sequence[Path | str],
    *,
    x: str | None = None,
    y: str | None = None,
    z: str | None = None,
    ref: Sequence[float] | None = None,
    out_dir: Path | str = DEFAULT_OUT,
) -> PlotReport:
    """Load metrics CSVs, find the Pareto front(s), write PNG, SVG and front CSV to ``out_dir``.

    ``x``/``y``/``z`` are ``COLUMN[:min|max]``; without a direction, columns whose name
    contains "accuracy" are maximised and all others minimised. Defaults: ``x`` minimises
    ``model_size(MB)``, ``y`` maximises ``val_accuracy`` if every CSV has it (models are
    chosen on validation; the front carries their TEST columns), else ``test_accuracy``; ``z``
    is off. ``ref`` is the hypervolume reference point in the
    objectives' own units (default: :func:`bcpareto.pareto.default_reference` over all rows of
    all CSVs, so hypervolumes of several CSVs are comparable).
    """
    paths = [Path(p) for p in csv_paths]
    if not paths:
        raise ConfigError("no metrics CSV given")
    raw_tables, unfinished = zip(*(_finished_rows(_read_metrics(path)) for path in paths))
    raw_tables = list(raw_tables)
    repeats = [_repeat_groups(table) for table in raw_tables]
    tables = [_mean_of_repeats(t, g) if g else t for t, g in zip(raw_tables, repeats)]
    objectives = _resolve_objectives(paths, tables, x=x, y=y, z=z)
    columns = [o.column for o in objectives]
    directions = [o.direction for o in objectives]
    values = [_objective_values(path, table, columns) for path, table in zip(paths, tables)]
    spreads = [_spread(_objective_values(p, t, columns), g) if g else None
               for p, t, g in zip(paths, raw_tables, repeats)]
    costs = [pareto.to_costs(v, directions=directions) for v in values]
    pooled = np.concatenate(costs)
    sign = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    if ref is None:
        ref_cost = pareto.default_reference(pooled)
    else:
        ref_cost = _checked_reference(ref, objectives) * sign

    names = _source_names(paths)
    sources = tuple(
        SourceResult(
            path=path,
            name=name,
            table=table,
            values=v,
            front=pareto.nondominated_mask(c),
            n_excluded=int((~pareto.valid_mask(c)).sum()),
            hypervolume=pareto.hypervolume(c, ref=ref_cost),
            spread=spread,
        )
        for path, name, table, v, c, spread in zip(paths, names, tables, values, costs, spreads)
    )
    overall_front = overall_hv = None
    if len(sources) > 1:
        overall_front = pareto.nondominated_mask(pooled)
        overall_hv = pareto.hypervolume(pooled, ref=ref_cost)
    front_table = _front_table(sources, objectives, overall_front)
    notes = _protocol_notes(objectives, tables) + _spread_notes(sources, objectives)
    notes += [f"{name}: {text}" for name, text in zip(names, unfinished) if text]
    if _chosen_on_validation(objectives, tables):
        front_table.insert(2, "protocol", PROTOCOL)
    figure = plotting.front_figure(
        [_series(s, with_hypervolume=len(objectives) == 2) for s in sources],
        columns=columns,
        directions=directions,
        ref=ref_cost * sign,
        title=_title(objectives, tables),
        footnote=_footnote(sources),
    )
    outputs = _write_outputs(Path(out_dir), figure=figure, front_table=front_table)
    return PlotReport(
        objectives=tuple(objectives),
        ref=ref_cost * sign,
        ref_is_default=ref is None,
        sources=sources,
        notes=tuple(notes),
        overall_front=overall_front,
        overall_hypervolume=overall_hv,
        front_table=front_table,
        outputs=outputs,
    )


def format_report(report: PlotReport) -> str:
    """The front as a table, then the hypervolume(s) with the reference point used."""
    columns = [o.column for o in report.objectives]
    shown = ["source", "row"] + ([ID_COLUMN] if ID_COLUMN in report.front_table else [])
    shown += columns + [c for c in ("n_repeats", *REPORTED_ON_TEST)
                        if c in report.front_table and c not in columns]
    shown += ["overall_front"] if "overall_front" in report.front_table else []
    names = {str(source.path): source.name for source in report.sources}
    front = report.front_table.assign(source=report.front_table["source"].map(names))
    table = front[shown].head(MAX_PRINTED).to_string(
        index=False, float_format=lambda v: f"{v:.6g}"
    )
    if len(front) > MAX_PRINTED:
        table += f"\n... {len(front) - MAX_PRINTED:,} more rows in pareto_front.csv"
    goal = ", ".join(
        f"{'minimise' if o.direction == 'min' else 'maximise'} {o.column}"
        for o in report.objectives
    )
    ref = ", ".join(f"{c}={v:.6g}" for c, v in zip(columns, report.ref))
    how = "default: worst value + 10% of range, over all rows" if report.ref_is_default else "--ref"
    lines = [f"Pareto front ({goal}):", table, *report.notes, "", f"Reference point ({how}): {ref}"]
    for source in report.sources:
        skipped = f" ({source.n_excluded} rows skipped: NaN objective)" if source.n_excluded else ""
        lines.append(
            f"Hypervolume {source.name}: {source.hypervolume:.6g}"
            f"  [{int(source.front.sum())} of {len(source.values)} rows on the front{skipped}]"
        )
    if report.overall_hypervolume is not None:
        lines.append(f"Hypervolume all CSVs together: {report.overall_hypervolume:.6g}")
    lines.append("Wrote " + ", ".join(str(p) for p in report.outputs))
    return "\n".join(lines)


def report_to_dict(report: PlotReport) -> dict[str, Any]:
    """The report as plain JSON values (`bcpareto plot --json`): no NaN, no numpy types.

    Keys: ``objectives`` (column, direction), ``reference_point`` (column -> value, and
    whether it is the default), ``sources`` (path, name, rows, front rows, rows skipped for a
    NaN objective, hypervolume), ``overall_hypervolume`` (several CSVs; else null), ``front``
    (the rows of pareto_front.csv, every column, blank cells as null) and ``outputs`` (paths).
    """
    # Pooling CSVs with and without a column makes it float; give each row its own CSV's ints.
    integer_columns = {
        str(source.path): {c for c in source.table.columns
                           if pd.api.types.is_integer_dtype(source.table[c])}
        for source in report.sources
    }
    return {
        "objectives": [{"column": o.column, "direction": o.direction} for o in report.objectives],
        "reference_point": {
            "values": {o.column: float(v) for o, v in zip(report.objectives, report.ref)},
            "default": report.ref_is_default,
        },
        "sources": [
            {
                "path": str(source.path),
                "name": source.name,
                "n_rows": len(source.values),
                "n_front": int(source.front.sum()),
                "n_excluded": source.n_excluded,
                "hypervolume": json_value(source.hypervolume),
            }
            for source in report.sources
        ],
        "overall_hypervolume": json_value(report.overall_hypervolume),
        "front": [_json_row(row, integer_columns[row["source"]])
                  for row in report.front_table.to_dict(orient="records")],
        "outputs": [str(path) for path in report.outputs],
    }


def _json_row(row: dict[Any, Any], integer_columns: set[str]) -> dict[str, Any]:
    result = {}
    for column, value in row.items():
        value = json_value(value)
        if column in integer_columns and isinstance(value, float):
            value = int(value)
        result[str(column)] = value
    return result


def json_value(value: Any) -> Any:
    """A CSV cell or a number as JSON has it: numpy scalars unwrapped, NaN and inf as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# --- loading and validation -----------------------------------------------------------------


MAX_COLUMNS = 10_000  # a header wider than this is not a metrics log; reading it took minutes
MAX_HEADER_CHARS = 1_000_000
LISTED_COLUMNS = 60  # messages name at most this many columns


def _read_metrics(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ColumnError(f"{path}: no such file (expected a metrics CSV such as metrics_log.csv)")
    with open(path, newline="", errors="replace") as handle:  # the header alone, cheaply
        header = handle.readline(MAX_HEADER_CHARS + 1)
    n_columns = header.count(",") + 1
    if len(header) > MAX_HEADER_CHARS or n_columns > MAX_COLUMNS:
        raise ColumnError(
            f"{path}: its header has {'at least ' if len(header) > MAX_HEADER_CHARS else ''}"
            f"{n_columns:,} columns; expected a metrics CSV (metrics_log.csv has about 50 columns; "
            f"at most {MAX_COLUMNS:,} are read)"
        )
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ColumnError(
            f"{path} is empty: no header row, so no columns (expected e.g. "
            f"{', '.join(SEED_COLUMNS)})"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ColumnError(f"{path} is not a readable CSV: {error}") from None
    table.columns = [str(c).strip() for c in table.columns]
    return table


def _finished_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows of trained models; models stopped by successive halving or over a device limit
    (``status`` stopped / infeasible) have no final figures and stay off the front."""
    if "status" not in table.columns:
        return table, ""
    status = table["status"].astype("string").fillna("").str.strip()
    out = status.isin(["stopped", "infeasible"])
    if not out.any():
        return table, ""
    counts = status[out].value_counts()
    said = " and ".join(f"{n} {s}" for s, n in (("stopped by successive halving", counts.get("stopped", 0)),
                                                 ("infeasible (over a --max-* limit)", counts.get("infeasible", 0))) if n)
    return table[~out].reset_index(drop=True), f"{said} left out of the front (no final figures)"


def _resolve_objectives(
    paths: Sequence[Path], tables: Sequence[pd.DataFrame], *, x: str | None, y: str | None,
    z: str | None,
) -> list[Objective]:
    objectives = [
        _parse_objective(x or f"{SIZE_COLUMN}:min", paths, tables, option="--x"),
        _parse_objective(y, paths, tables, option="--y") if y else _held_out(paths, tables),
    ]
    if z:
        objectives.append(_parse_objective(z, paths, tables, option="--z"))
    seen: dict[str, str] = {}
    for option, objective in zip(("--x", "--y", "--z"), objectives):
        if objective.column in seen:
            raise ConfigError(
                f"{seen[objective.column]} and {option} both use column "
                f"'{objective.column}' (--x defaults to {SIZE_COLUMN}, --y to "
                f"{' or '.join(HELD_OUT_ACCURACY)}); pick different columns. "
                f"Columns available: {_column_list(tables[0])}"
            )
        seen[objective.column] = option
    return objectives


def _parse_objective(
    spec: str, paths: Sequence[Path], tables: Sequence[pd.DataFrame], *, option: str
) -> Objective:
    """``COLUMN[:min|max]``; a column name that itself contains ':' also works."""
    column, direction = spec.strip(), None
    if ":" in column and not all(column in t.columns for t in tables):
        column, direction = (part.strip() for part in column.rsplit(":", 1))
    for path, table in zip(paths, tables):
        if column not in table.columns:
            raise ColumnError(
                f"{option} {spec!r}: {path} has no column '{column}'. "
                f"Columns available: {_column_list(table)}"
            )
    if direction is None:
        direction = "max" if "accuracy" in column.lower() else "min"
    if direction.lower() not in pareto.DIRECTIONS:
        raise ConfigError(
            f"{option} {spec!r}: unknown direction '{direction}' for column '{column}'; "
            f"use {column}:min or {column}:max. Columns available: {_column_list(tables[0])}"
        )
    return Objective(column=column, direction=direction.lower())


def _repeat_groups(table: pd.DataFrame) -> list[np.ndarray] | None:
    """Row indices of each model trained several times (same study and grid_id, --repeats), in
    order of first appearance; None when every model has one row."""
    key = [c for c in REPEAT_KEY if c in table.columns]
    if "repeat" not in table.columns or ID_COLUMN not in key:
        return None
    groups = list(table.groupby(key, sort=False, dropna=False).indices.values())
    return [np.sort(g) for g in groups] if any(len(g) > 1 for g in groups) else None


def _mean_of_repeats(table: pd.DataFrame, groups: list[np.ndarray]) -> pd.DataFrame:
    """One row per model: numeric columns averaged over its repeats, others from its first
    row, and ``n_repeats``."""
    rows = []
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
    for members in groups:
        part = table.iloc[members]
        row = part.iloc[0].copy()
        row[numeric] = part[numeric].mean()
        row["n_repeats"] = len(members)
        rows.append(row)
    return pd.DataFrame(rows).reset_index(drop=True)


def _spread(values: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """(models, k, 2): the lowest and highest value of each objective over a model's repeats."""
    return np.stack([np.stack([np.nanmin(values[g], axis=0), np.nanmax(values[g], axis=0)], axis=-1)
                     for g in groups])


def _chosen_on_validation(objectives: Sequence[Objective], tables: Sequence[pd.DataFrame]) -> bool:
    return any(o.column.startswith("val_") for o in objectives) and all(
        "test_accuracy" in t.columns and "val_split" in t.columns for t in tables)


def _protocol_notes(objectives: Sequence[Objective], tables: Sequence[pd.DataFrame]) -> list[str]:
    if not _chosen_on_validation(objectives, tables):
        return []
    val = next(o.column for o in objectives if o.column.startswith("val_"))
    return [f"{PROTOCOL[0].upper()}{PROTOCOL[1:]}: the front is drawn on {val} ({_split(val, tables)}); "
            f"{', '.join(c for c in REPORTED_ON_TEST if all(c in t.columns for t in tables))} "
            f"are the held-out figures of the models so chosen ({_split('test_accuracy', tables)})."]


def _spread_notes(sources: Sequence[SourceResult], objectives: Sequence[Objective]) -> list[str]:
    """Neighbouring front members whose ranges over repeats overlap on every objective that
    varies: the data cannot order them."""
    notes = []
    for source in sources:
        if source.spread is None:
            continue
        rows = np.flatnonzero(source.front)
        rows = rows[np.argsort(source.values[rows, 0], kind="stable")]
        labels = _labels(source.table)
        runs = source.table["n_repeats"].to_numpy()
        notes.append(f"{source.name}: each point is the mean of {int(runs.min())}-{int(runs.max())} "
                     "repeats (seeds); bars and _min/_max columns span the lowest to the highest")
        for a, b in zip(rows, rows[1:]):
            lo_a, hi_a = source.spread[a, :, 0], source.spread[a, :, 1]
            lo_b, hi_b = source.spread[b, :, 0], source.spread[b, :, 1]
            varies = (hi_a > lo_a) | (hi_b > lo_b)
            overlap = (lo_a <= hi_b) & (lo_b <= hi_a)
            if varies.any() and overlap[varies].all():
                what = ", ".join(f"{o.column} {lo_a[i]:.3g}-{hi_a[i]:.3g} vs {lo_b[i]:.3g}-{hi_b[i]:.3g}"
                                 for i, o in enumerate(objectives) if varies[i])
                notes.append(f"  grid {labels[a]} and grid {labels[b]} are within each other's spread "
                             f"({what}): more repeats are needed to order them")
    return notes


def _held_out(paths: Sequence[Path], tables: Sequence[pd.DataFrame]) -> Objective:
    for column in HELD_OUT_ACCURACY:
        if all(column in t.columns for t in tables):
            return Objective(column=column, direction="max")
    # Name a CSV that lacks the last candidate (or the first CSV) and list its columns.
    path, table = next(
        ((p, t) for p, t in zip(paths, tables) if HELD_OUT_ACCURACY[-1] not in t.columns),
        (paths[0], tables[0]),
    )
    raise ColumnError(
        f"no held-out accuracy column ({' or '.join(HELD_OUT_ACCURACY)}) common to every CSV; "
        f"{path} lacks {HELD_OUT_ACCURACY[-1]}; choose one with --y COLUMN:max. "
        f"Columns available in {path}: {_column_list(table)}"
    )


def _objective_values(path: Path, table: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The objective columns as floats; blank cells become NaN, any other text is an error."""
    result = np.empty((len(table), len(columns)))
    for index, column in enumerate(columns):
        raw = table[column]
        numbers = pd.to_numeric(raw, errors="coerce")
        text = raw.notna() & numbers.isna()
        if text.any():
            row = int(np.flatnonzero(text.to_numpy())[0])
            raise ColumnError(
                f"{path}: column '{column}' is not numeric (line {row + 2} holds "
                f"{str(raw.iloc[row])!r}). Columns available: "
                f"{_column_list(table, numeric_only=True)}"
            )
        values = numbers.to_numpy(dtype=float, na_value=np.nan)
        if not np.isfinite(values).any():
            raise ColumnError(
                f"{path}: column '{column}' has no numeric values "
                f"({len(values)} rows, all empty/NaN). Columns available: "
                f"{_column_list(table, numeric_only=True)}"
            )
        result[:, index] = values
    return result


def _checked_reference(ref: Sequence[float], objectives: Sequence[Objective]) -> np.ndarray:
    array = np.asarray(list(ref), dtype=float)
    names = ", ".join(o.column for o in objectives)
    if array.shape != (len(objectives),) or not np.isfinite(array).all():
        raise ConfigError(
            f"--ref needs {len(objectives)} finite numbers, one per objective ({names}); "
            f"got {list(ref)}"
        )
    return array


def _column_list(table: pd.DataFrame, *, numeric_only: bool = False) -> str:
    """Comma-separated column names; with ``numeric_only``, all columns then the numeric ones."""
    columns = [str(c) for c in table.columns]
    listed = ", ".join(columns[:LISTED_COLUMNS]) if columns else "(none)"
    if len(columns) > LISTED_COLUMNS:
        listed += f", ... ({len(columns) - LISTED_COLUMNS:,} more)"
    if not numeric_only:
        return listed
    numeric = [
        str(c) for c in table.columns
        if table[c].notna().any()
        and pd.to_numeric(table[c], errors="coerce").notna().sum() == table[c].notna().sum()
    ]
    return f"{listed} (numeric: {', '.join(numeric) if numeric else 'none'})"


# --- presentation ---------------------------------------------------------------------------


def _source_names(paths: Sequence[Path]) -> list[str]:
    stems = [p.stem for p in paths]
    return stems if len(set(stems)) == len(stems) else [str(p) for p in paths]


def _labels(table: pd.DataFrame) -> list[str]:
    """Front-point labels: grid_id where the CSV has it, else the row index.

    In the seed logs row i is grid point i, so the row index is the grid-point id there.
    """
    if ID_COLUMN in table.columns:
        ids = pd.to_numeric(table[ID_COLUMN], errors="coerce")
        ids = ids.to_numpy(dtype=float, na_value=np.nan)
        return [str(int(v)) if np.isfinite(v) else "" for v in ids]
    return [str(i) for i in range(len(table))]


def _series(source: SourceResult, *, with_hypervolume: bool) -> plotting.FrontSeries:
    notes = [f"HV {source.hypervolume:.4g}"] if with_hypervolume else []
    if source.n_excluded:
        notes.append(f"{source.n_excluded} rows skipped (NaN)")
    notes.append("labels: grid_id" if ID_COLUMN in source.table.columns else "labels: row index")
    return plotting.FrontSeries(
        name=source.name,
        values=source.values,
        front=source.front,
        labels=_labels(source.table),
        note=", ".join(notes),
        spread=source.spread,
    )


def _split(column: str, tables: Sequence[pd.DataFrame]) -> str:
    """Which images a metric was computed on, in plain words ("" when unknown)."""
    lowered = column.lower()
    if "test" in lowered:  # our CSVs say which TEST images (e.g. "TEST minus 108 TRAIN duplicates")
        named = {str(v) for t in tables if "test_split" in t.columns for v in t["test_split"].dropna()}
        return named.pop() if len(named) == 1 else "TEST folder"
    if lowered.startswith("train"):
        return "training images"
    if lowered.startswith("val"):
        seed = [set(t.columns) <= set(SEED_COLUMNS) for t in tables]
        if all(seed):
            return "TEST folder in the seed logs"
        if not any(seed):
            named = {str(v) for t in tables if "val_split" in t.columns for v in t["val_split"].dropna()}
            return named.pop() if len(named) == 1 else "validation split"
        return "TEST folder in seed logs, validation split in new logs"
    return ""


def _title(objectives: Sequence[Objective], tables: Sequence[pd.DataFrame]) -> str:
    def describe(objective: Objective) -> str:
        verb = "minimise" if objective.direction == "min" else "maximise"
        split = _split(objective.column, tables)
        name = objective.column
        if name in HELD_OUT_ACCURACY:
            name = f"held-out accuracy ({objective.column}, {split})"
        elif split:
            name = f"{objective.column} ({split})"
        return f"{verb} {name}"

    first = f"Pareto front: {describe(objectives[1])} vs {describe(objectives[0])}"
    if len(objectives) == 3:
        return f"{first}\nand {describe(objectives[2])} (colour)"
    return first


def _footnote(sources: Sequence[SourceResult]) -> str:
    if all(ID_COLUMN in s.table.columns for s in sources):
        return "Labels: grid_id of each front point."
    return (
        "Labels: grid_id where the CSV has one, else the 0-based row index "
        "(in the seed logs row i is grid point i)."
    )


def _front_table(
    sources: Sequence[SourceResult], objectives: Sequence[Objective],
    overall_front: np.ndarray | None,
) -> pd.DataFrame:
    """Front rows of every source, all their columns, plus `source` and `row` first."""
    parts = []
    offset = 0
    for source in sources:
        rows = np.flatnonzero(source.front)
        part = source.table.iloc[rows].copy()
        part.insert(0, "row", rows)
        part.insert(0, "source", str(source.path))
        if source.spread is not None:  # --repeats: the range of each objective beside its mean
            for index, objective in enumerate(objectives):
                part[f"{objective.column}_min"] = source.spread[rows, index, 0]
                part[f"{objective.column}_max"] = source.spread[rows, index, 1]
        if overall_front is not None:
            part["overall_front"] = overall_front[offset + rows]
        parts.append(part)
        offset += len(source.table)
    table = pd.concat(parts, ignore_index=True)
    first = objectives[0]
    return table.sort_values(
        ["source", first.column, "row"], ascending=[True, first.direction == "min", True],
        kind="stable",
    ).reset_index(drop=True)


# --- output ---------------------------------------------------------------------------------


def _write_outputs(out_dir: Path, *, figure, front_table: pd.DataFrame) -> tuple[Path, ...]:
    """Render all outputs first, then write each atomically (cache.write_atomic)."""
    import io

    from .cache import write_atomic

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"--out {out_dir}: cannot create the output folder ({error})") from None
    finals = tuple(out_dir / name for name in OUTPUT_NAMES)
    png, svg = io.BytesIO(), io.BytesIO()
    try:  # nothing is written until all three are rendered
        figure.savefig(png, format="png", dpi=PNG_DPI)
        figure.set_layout_engine("none")  # keep the layout just computed: no second pass
        with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays searchable text
            figure.savefig(svg, format="svg", metadata={"Date": None})
        contents = (png.getvalue(), svg.getvalue(), front_table.to_csv(index=False))
        for final, content in zip(finals, contents):
            write_atomic(final, content)
    except OSError as error:
        raise BcParetoError(f"could not write the outputs in {out_dir}: {error}") from None
    return finals
