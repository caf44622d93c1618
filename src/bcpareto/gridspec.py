"""hyper_parameters.xlsx -> a list of frozen GridPoint dataclasses.

The sheet has four columns; each data cell holds a Python-literal list written by hand (trailing
commas, spaces and tabs are fine). Semantics, kept from the earlier version:

- ``dense_layers`` [d1, d2, ...] is zipped with ``neurons`` [[n, ...], ...]: the i-th dense-layer
  count goes with the i-th neuron list, whose length must equal that count;
- each such pair is crossed with every list in ``filters`` (one conv block per entry);
- ``kernel_sizes`` is zipped with each filter list (a 5-filter list takes the first 5 sizes).

So one row with 6 dense pairs and 4 filter lists gives 24 grid points, numbered 0..23 in that loop
order (dense pair outer, filter list inner), which is also the row order of the earlier logs.
Further non-empty rows add more grid points, numbered on. No TensorFlow here.
"""

from __future__ import annotations

import ast
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import GridSpecError

# Canonical column names (also Optuna parameter names and CSV columns) and the header spellings
# we accept, normalised by _normalise_header. The earlier sheet's spellings (typo and trailing
# space included) come first; its "number of convolution layers" column really holds filter counts.
COLUMNS: dict[str, tuple[str, ...]] = {
    "dense_layers": ("dense layers", "number of dense layers"),
    "neurons": (
        "number of nuerons in dense layers",
        "number of neurons in dense layers",
        "neurons per dense layer",
        "neurons",
    ),
    "filters": (
        "number of convolution layers",
        "number of filters",
        "conv filters",
        "filters per conv layer",
        "filters",
    ),
    "kernel_sizes": ("kernel size", "kernel sizes", "kernel_sizes"),
}

_EXPECTED = {
    "dense_layers": "a list of positive integers, e.g. [2, 3]",
    "neurons": "a list of lists of positive integers, one list per dense-layer count, "
    "e.g. [[250, 300], [380, 430, 477]]",
    "filters": "a list of lists of positive integers, one list per model family, "
    "e.g. [[70, 80, 100], [128, 150, 180]]",
    "kernel_sizes": "a list of positive integers, at least as long as the longest filter list, "
    "e.g. [7, 5, 5, 3]",
}


@dataclass(frozen=True)
class GridPoint:
    """One model of the grid: conv blocks (filters, kernel sizes) then dense layers."""

    grid_id: int
    filters: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    neurons: tuple[int, ...]

    @property
    def dense_layers(self) -> int:
        return len(self.neurons)

    def params(self) -> dict[str, Any]:
        """The architecture as plain values (Optuna user attrs, CSV columns)."""
        return {
            "grid_id": self.grid_id,
            "dense_layers": self.dense_layers,
            "neurons": _fmt(self.neurons),
            "filters": _fmt(self.filters),
            "kernel_sizes": _fmt(self.kernel_sizes),
        }

    def describe(self) -> str:
        return (
            f"filters {_fmt(self.filters)} k {_fmt(self.kernel_sizes)}, "
            f"dense {_fmt(self.neurons)}"
        )


def _fmt(values: tuple[int, ...]) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


def _normalise_header(value: object) -> str:
    text = str(value).replace("_", " ").lower()
    return re.sub(r"\s+", " ", text).strip()


def read_grid(path: Path | str) -> list[GridPoint]:
    """Read and validate the grid sheet; every bad cell is reported in one GridSpecError."""
    path = Path(path)
    rows, sheet = _read_rows(path)
    where = f"{path}, sheet '{sheet}'"
    if not rows or all(_blank(v) for v in rows[0]):
        raise GridSpecError(f"{where}: the sheet is empty; expected a header row {_header_hint()}")

    columns = _locate_columns(rows[0], where)
    problems: list[str] = []
    points: list[GridPoint] = []
    data_rows = [(i, r) for i, r in enumerate(rows[1:], start=2) if not all(_blank(v) for v in r)]
    if not data_rows:
        raise GridSpecError(f"{where}: no data row under the header; expected one row of lists")
    for row_number, row in data_rows:
        cells: dict[str, Any] = {}
        for name, col in columns.items():
            ref = f"cell {_col_letter(col)}{row_number} ({name})"
            raw = row[col] if col < len(row) else None
            value, problem = _parse_cell(raw, name)
            if problem:
                problems.append(f"{ref}: {problem}; expected {_EXPECTED[name]}")
            else:
                cells[name] = value
        if len(cells) == len(columns):
            problems += _cross_check(cells, columns, row_number)
        if not problems:
            points += _expand(cells, first_id=len(points))
    if problems:
        raise GridSpecError(f"{where}:\n  " + "\n  ".join(problems))
    return points


def _read_rows(path: Path) -> tuple[list[tuple[Any, ...]], str]:
    import openpyxl  # deferred: keeps `bcpareto --help` fast

    if not path.is_file():
        raise GridSpecError(f"{path}: no such file; expected an .xlsx grid sheet")
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise GridSpecError(
            f"{path}: not a readable .xlsx workbook ({type(exc).__name__}: {exc}); "
            "save the sheet as Excel Workbook (.xlsx)"
        ) from exc
    sheet = workbook.worksheets[0]
    rows = [tuple(r) for r in sheet.iter_rows(values_only=True)]
    workbook.close()
    return rows, sheet.title


def _header_hint() -> str:
    return "with columns " + ", ".join(f"'{c}'" for c in COLUMNS)


def _locate_columns(header: tuple[Any, ...], where: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for col, value in enumerate(header):
        if _blank(value):
            continue
        norm = _normalise_header(value)
        for name, spellings in COLUMNS.items():
            if norm == _normalise_header(name) or norm in spellings:
                found.setdefault(name, col)
    missing = [name for name in COLUMNS if name not in found]
    if missing:
        present = ", ".join(repr(v) for v in header if not _blank(v)) or "none"
        raise GridSpecError(
            f"{where}, row 1: missing column(s) {', '.join(missing)}; found headers {present}; "
            f"expected {_header_hint()} (or the earlier sheet's spellings)"
        )
    return found


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _col_letter(col: int) -> str:
    letters = ""
    col += 1
    while col:
        col, rem = divmod(col - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _parse_cell(raw: object, name: str) -> tuple[Any, str | None]:
    if _blank(raw):
        return None, "empty cell"
    if not isinstance(raw, str):
        return None, f"{raw!r} is not a list"
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        return None, f"{raw.strip()!r} is not a Python-style list"
    nested = name in ("neurons", "filters")
    if not isinstance(value, (list, tuple)) or not value:
        return None, f"{raw.strip()!r} is not a non-empty list"
    items = value if nested else [value]
    for i, item in enumerate(items, start=1):
        label = f"list {i}" if nested else "the list"
        if not isinstance(item, (list, tuple)) or not item:
            return None, f"{label} ({item!r}) is not a non-empty list"
        bad = [v for v in item if isinstance(v, bool) or not isinstance(v, int) or v <= 0]
        if bad:
            return None, f"{label} has {bad[0]!r}, not a positive integer"
    if nested:
        return [tuple(v) for v in value], None
    return tuple(value), None


def _cross_check(cells: dict[str, Any], columns: dict[str, int], row: int) -> list[str]:
    problems = []
    dense, neurons = cells["dense_layers"], cells["neurons"]
    ref_d = f"cell {_col_letter(columns['dense_layers'])}{row} (dense_layers)"
    ref_n = f"cell {_col_letter(columns['neurons'])}{row} (neurons)"
    if len(dense) != len(neurons):
        problems.append(
            f"{ref_n}: {len(neurons)} neuron lists but {ref_d} has {len(dense)} dense-layer "
            "counts; expected one neuron list per count"
        )
    for i, (count, layer_sizes) in enumerate(zip(dense, neurons), start=1):
        if count != len(layer_sizes):
            problems.append(
                f"{ref_n}: list {i} has {len(layer_sizes)} entries but its dense-layer count "
                f"is {count}"
            )
    longest = max(len(f) for f in cells["filters"])
    if len(cells["kernel_sizes"]) < longest:
        ref_k = f"cell {_col_letter(columns['kernel_sizes'])}{row} (kernel_sizes)"
        problems.append(
            f"{ref_k}: {len(cells['kernel_sizes'])} kernel sizes but the longest filter list "
            f"has {longest} entries; expected at least {longest}"
        )
    return problems


def _expand(cells: dict[str, Any], *, first_id: int) -> list[GridPoint]:
    points = []
    for neurons in cells["neurons"]:
        for filters in cells["filters"]:
            points.append(
                GridPoint(
                    grid_id=first_id + len(points),
                    filters=tuple(filters),
                    kernel_sizes=tuple(cells["kernel_sizes"][: len(filters)]),
                    neurons=tuple(neurons),
                )
            )
    return points
