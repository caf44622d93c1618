"""The workbook's `space` sheet -> a SearchSpace: the ranges a sampler draws architectures from.

The grid sheet lists every model to train; the space sheet, a second sheet named ``space`` in
the same workbook, says instead which values each part of the architecture may take, so a
sampler (Optuna's TPE or NSGA-II, a later step) can go beyond the grid. Each sampled
assignment becomes an ordinary :class:`~bcpareto.gridspec.GridPoint`, so training, logging
and the front treat it like a grid row. No TensorFlow or Optuna here.

One row per parameter under a header row ``name | low | high | log | choices`` (any case and
spacing; columns in any order; a note column, headed ``note`` or anything starting with ``#``,
is skipped, and any other header is an error naming the close column names). A row gives either a
range, ``low`` and ``high`` (``log`` yes/no/true/false or blank: sample on a log scale), or
``choices``, a Python-style list (``[3, 5, 7]``, ``[conv, separable]``: words need no quotes),
not both. ``low == high`` or a single choice fixes the parameter.

The parameters are a fixed-length encoding of the architecture (``filters`` and friends are
derived from them by :meth:`SearchSpace.point`):

==============  =========================================  ===================================
name            meaning                                    when the sheet has no row for it
==============  =========================================  ===================================
conv_blocks     number of conv blocks (whole number >= 1)  required
base_filters    filters of the first block (>= 1)          required
growth          filters multiply by it per block (> 0)     1: every block has base_filters
first_kernel    kernel size of the first block (odd)       the kernel's value
kernel          kernel size of the other blocks (odd)      required
dense_layers    dense layers before the softmax (>= 0)     0: softmax right after pooling
dense_units     neurons of every dense layer (>= 1)        required if dense_layers can be > 0
block           conv, separable or inverted_residual       conv
width           multiplies every filter count (> 0)        1
image_size      input side in pixels (8-512)               the preset's image_size
stem            filters of a 3x3 stride-2 stem conv        0: no stem
                before the blocks (0 = none)
last_stride     stride of the last block: 2 halves the     2: every block halves the map
                map, 1 keeps it (conv: no max-pool)
==============  =========================================  ===================================

Block i has ``round(base_filters * growth**i)`` filters (at least 1) and stride 2, but the
last block's stride is ``last_stride``: a stem with ``last_stride`` 1 is the four-block
separable net of experiments/recipe.md (issue 13), the most accuracy per byte measured. Every dense layer has
``dense_units`` neurons (a constant width, the simplest fixed-length encoding; a funnel would
be one more parameter). Kernel sizes take choices or one fixed value, not a range, since a
range would sample even sizes; image sizes too, since each is decoded once before the search.

One module, though over 400 lines: the table above (``PARAMETERS``) is the contract between the
sheet reader and :meth:`SearchSpace.point`, so a new parameter is one entry there, its checks
and its use in ``point``, side by side. Opening the workbook, matching headers and naming cells
is workbook.py's.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import GridSpecError
from .gridspec import BLOCK_TYPES, MAX_IMAGE_SIDE, MIN_IMAGE_SIDE, GridPoint, parse_blocks
from .workbook import (
    blank,
    cell_number,
    cell_ref,
    cell_value,
    check_header,
    find_sheet,
    header_hint,
    match_headers,
    missing_columns,
    parse_yes_no,
    sheet_error,
)

SHEET = "space"  # the sheet's name (any case); the grid stays on the first sheet

# Canonical header names and the spellings accepted, normalised by workbook.normalise_header.
COLUMNS: dict[str, tuple[str, ...]] = {
    "name": ("name", "parameter", "param"),
    "low": ("low", "min", "minimum", "from"),
    "high": ("high", "max", "maximum", "to"),
    "log": ("log", "log scale"),
    "choices": ("choices", "choice", "values", "options"),
}


@dataclass(frozen=True)
class _Spec:
    """What one parameter takes, and what a message says it expected."""

    kind: str  # "int", "float" or "block"
    allowed: Callable[[float], bool]
    expected: str  # one value, e.g. "an odd whole number"
    plural: str  # a list of them, e.g. "odd whole numbers"
    range_example: str  # e.g. "low 2, high 5"; kernels: a fixed value; block: none
    choices_example: str  # e.g. "[3, 5, 7]"
    default: Any = None  # None: required (or derived, see SearchSpace.point)
    odd: bool = False  # kernel sizes: choices or a fixed value only
    listed: bool = False  # image sizes: choices or a fixed value only


_WHOLE = ("a whole number, at least 1", "whole numbers, at least 1")
_ODD = ("an odd whole number", "odd whole numbers")
_POSITIVE = ("a positive number", "positive numbers")
_PIXELS = (
    f"a whole number of pixels from {MIN_IMAGE_SIDE} to {MAX_IMAGE_SIDE}",
    f"whole numbers of pixels from {MIN_IMAGE_SIDE} to {MAX_IMAGE_SIDE}",
)

PARAMETERS: dict[str, _Spec] = {
    "conv_blocks": _Spec("int", lambda v: v >= 1, *_WHOLE, "low 2, high 5", "[2, 3, 4]"),
    "base_filters": _Spec("int", lambda v: v >= 1, *_WHOLE, "low 8, high 64", "[8, 16, 32]"),
    "growth": _Spec("float", lambda v: v > 0, *_POSITIVE, "low 1, high 2", "[1.5, 2]", 1.0),
    "first_kernel": _Spec(
        "int", lambda v: v >= 1 and v % 2 == 1, *_ODD, "low 5, high 5", "[3, 5, 7]", odd=True
    ),
    "kernel": _Spec(
        "int", lambda v: v >= 1 and v % 2 == 1, *_ODD, "low 3, high 3", "[3, 5]", odd=True
    ),
    "dense_layers": _Spec(
        "int", lambda v: v >= 0, "a whole number, 0 or more", "whole numbers, 0 or more",
        "low 0, high 2", "[0, 1, 2]", 0,
    ),
    "dense_units": _Spec("int", lambda v: v >= 1, *_WHOLE, "low 16, high 256", "[32, 64, 128]"),
    "block": _Spec(
        "block", lambda v: True, f"a block type out of {', '.join(BLOCK_TYPES)}",
        f"block types out of {', '.join(BLOCK_TYPES)}", "", "[conv, separable]", "conv",
    ),
    "width": _Spec("float", lambda v: v > 0, *_POSITIVE, "low 0.5, high 1.5", "[0.5, 1]", 1.0),
    "image_size": _Spec(  # choices or one value: each size is decoded once, before the search
        "int", lambda v: MIN_IMAGE_SIDE <= v <= MAX_IMAGE_SIDE, *_PIXELS, "low 48, high 48",
        "[48, 64]", 0, listed=True,
    ),
    "stem": _Spec(
        "int", lambda v: v >= 0, "a whole number, 0 (no stem) or more",
        "whole numbers, 0 (no stem) or more", "low 0, high 32", "[0, 16]", 0,
    ),
    "last_stride": _Spec(
        "int", lambda v: v in (1, 2), "1 or 2", "1s or 2s", "low 1, high 2", "[1, 2]", 2,
    ),
}
REQUIRED = ("conv_blocks", "base_filters", "kernel")  # and dense_units when dense layers can exist


@dataclass(frozen=True)
class Parameter:
    """One row of the space sheet: a range (``kind`` "int" or "float") or choices."""

    name: str
    kind: str  # "int", "float" or "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    @property
    def fixed(self) -> bool:
        return self.low == self.high if self.kind != "categorical" else len(self.choices) == 1

    def distribution(self) -> tuple[Any, ...]:
        if self.kind == "categorical":
            return ("categorical", self.choices)
        return (self.kind, self.low, self.high, self.log)

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and value != int(value):
            return False
        return self.low <= value <= self.high


@dataclass(frozen=True)
class SearchSpace:
    """The parameters of a space sheet, in sheet order; see the module docstring."""

    parameters: tuple[Parameter, ...]

    def distributions(self) -> dict[str, tuple[Any, ...]]:
        """Name -> ``("int"|"float", low, high, log)`` or ``("categorical", choices)``.

        Plain values, in sheet order, fixed parameters included, for a sampler to turn into
        its own distribution objects (Optuna: Int-, Float-, CategoricalDistribution).
        """
        return {p.name: p.distribution() for p in self.parameters}

    def point(self, values: Mapping[str, Any], grid_id: int) -> GridPoint:
        """One sampled assignment -> the GridPoint the rest of the tool trains.

        ``values`` maps the sheet's parameter names to values inside their ranges or choices;
        fixed parameters may be left out, and parameters without a row take their defaults
        (module docstring). A bad assignment is a programming error: ValueError.
        """
        chosen = self._resolve(values)
        blocks, growth = int(chosen["conv_blocks"]), float(chosen["growth"])
        filters = tuple(
            max(1, int(chosen["base_filters"] * growth**i + 0.5)) for i in range(blocks)
        )
        first = chosen["first_kernel"] if chosen["first_kernel"] is not None else chosen["kernel"]
        kernels = (int(first),) + (int(chosen["kernel"]),) * (blocks - 1)
        layers = int(chosen["dense_layers"])
        neurons = (int(chosen["dense_units"]),) * layers if layers else ()
        last_stride = int(chosen["last_stride"])
        # () is "2 for every block", so a space without the row keeps its models' fingerprints
        strides = () if last_stride == 2 else (2,) * (blocks - 1) + (last_stride,)
        return GridPoint(
            grid_id=grid_id,
            filters=filters,
            kernel_sizes=kernels,
            neurons=neurons,
            block=str(chosen["block"]),
            width=float(chosen["width"]),
            image_size=int(chosen["image_size"]),
            strides=strides,
            stem=int(chosen["stem"]),
        )

    def _resolve(self, values: Mapping[str, Any]) -> dict[str, Any]:
        rows = {p.name: p for p in self.parameters}
        problems = [f"{name!r} is not a parameter of this space" for name in values if name not in rows]
        chosen = {name: spec.default for name, spec in PARAMETERS.items()}
        for name, parameter in rows.items():
            if name in values:
                value = values[name]
                if not parameter.contains(value):
                    problems.append(f"{name} = {value!r} is outside {parameter.distribution()}")
                chosen[name] = value
            elif parameter.fixed:
                chosen[name] = parameter.choices[0] if parameter.choices else parameter.low
            else:
                problems.append(f"no value for {name}, which the space samples")
        if not problems and chosen["dense_layers"] and chosen["dense_units"] is None:
            problems.append("dense_layers > 0 but the space has no dense_units")
        if problems:
            raise ValueError("; ".join(problems))
        return chosen


def read_space(path: Path | str) -> SearchSpace | None:
    """Read and validate the workbook's `space` sheet; None when the workbook has none.

    Every bad cell is reported in one GridSpecError, each naming the file, the sheet and
    the cell, as for the grid sheet.
    """
    sheet = find_sheet(Path(path), SHEET)
    if sheet is None:
        return None
    where = sheet.where
    if sheet.empty:
        raise GridSpecError(
            f"{where}: the sheet is empty; expected a header row {header_hint(COLUMNS)} and one row "
            "per parameter"
        )
    header_problems = check_header(sheet.header, COLUMNS)
    columns = _locate_columns(sheet.header, where, header_problems=header_problems)
    data_rows = sheet.data_rows()
    if not data_rows:
        raise GridSpecError(
            f"{where}: no parameter row under the header; expected one row per parameter, "
            f"e.g. conv_blocks with low 2 and high 4 (parameters: {', '.join(PARAMETERS)})"
        )
    problems: list[str] = list(header_problems)
    parameters: list[Parameter] = []
    first_row: dict[str, int] = {}
    for row_number, row in data_rows:
        name, parameter, row_problems = _parse_row(row, row_number, columns)
        if name is not None and name in first_row:
            problems.append(
                f"{_ref(columns, 'name', row_number)}: {name} also has row {first_row[name]}; "
                "expected one row per parameter"
            )
        problems += row_problems
        if name is None or name in first_row:
            continue
        first_row[name] = row_number
        if parameter is not None:
            parameters.append(parameter)
    missing = [name for name in REQUIRED if name not in first_row]
    if missing:
        problems.append(
            f"no row for {', '.join(missing)}; expected a row for each of {', '.join(REQUIRED)} "
            "(the other parameters have defaults)"
        )
    dense = next((p for p in parameters if p.name == "dense_layers"), None)
    can_have_dense = dense is not None and (
        any(dense.choices) if dense.kind == "categorical" else bool(dense.high)
    )
    if can_have_dense and "dense_units" not in first_row:
        problems.append(
            f"no row for dense_units, but row {first_row['dense_layers']} lets dense_layers be "
            "more than 0; expected a dense_units row, e.g. low 16, high 256"
        )
    if problems:
        raise sheet_error(where, problems)
    return SearchSpace(tuple(parameters))


# --- helpers -------------------------------------------------------------------------------


def _locate_columns(
    header: tuple[Any, ...], where: str, *, header_problems: list[str]
) -> dict[str, int]:
    found = match_headers(header, COLUMNS)
    missing = []
    if "name" not in found:
        missing.append("name")
    if not ({"low", "high"} <= found.keys() or "choices" in found):
        missing.append("low and high, or choices")
    if missing:
        raise missing_columns(
            where, header, missing="; ".join(missing), header_problems=header_problems,
            expected=f"a header row {header_hint(COLUMNS)}",
        )
    return found


def _ref(columns: dict[str, int], column: str, row: int) -> str:
    return cell_ref(columns[column], row, column)


def _cell(row: tuple[Any, ...], columns: dict[str, int], column: str) -> Any:
    return cell_value(row, columns.get(column))


def _parse_row(
    row: tuple[Any, ...], number: int, columns: dict[str, int]
) -> tuple[str | None, Parameter | None, list[str]]:
    """One parameter row -> (its name if known, the Parameter if every cell is good, problems)."""
    raw_name = _cell(row, columns, "name")
    ref = _ref(columns, "name", number)
    known = f"one of {', '.join(PARAMETERS)}"
    if blank(raw_name):
        return None, None, [f"{ref}: empty cell; expected a parameter name, {known}"]
    name = re.sub(r"[\s-]+", "_", str(raw_name).strip().lower())
    if name not in PARAMETERS:
        return None, None, [f"{ref}: {str(raw_name).strip()!r} is not a parameter; expected {known}"]
    spec = PARAMETERS[name]
    low, high, log, choices = (_cell(row, columns, c) for c in ("low", "high", "log", "choices"))
    has_range = not (blank(low) and blank(high))
    problems: list[str] = []

    log_value, problem = parse_yes_no(log)
    if problem:
        problems.append(f"{_ref(columns, 'log', number)}: {problem}; expected yes, no, true, "
                        "false or a blank cell")
    if has_range and not blank(choices):
        problems.append(
            f"{_ref(columns, 'choices', number)}: {name} has a low-high range and choices; "
            f"expected one or the other: {_examples(spec)}"
        )
        return name, None, problems
    if not has_range and blank(choices):
        problems.append(
            f"{ref}: {name} has neither a low-high range nor choices; expected "
            f"{_examples(spec)}"
        )
        return name, None, problems

    if not has_range:
        values, problem = _parse_choices(choices, spec)
        if problem:
            problems.append(f"{_ref(columns, 'choices', number)}: {problem}; expected a list of "
                            f"{spec.plural}, e.g. {spec.choices_example}")
        if log_value:
            problems.append(f"{_ref(columns, 'log', number)}: a log scale applies to a low-high "
                            "range, not to choices; expected no or a blank cell")
        if problems:
            return name, None, problems
        return name, Parameter(name, "categorical", choices=values), []

    if spec.kind == "block":
        col = "low" if not blank(low) else "high"
        problems.append(
            f"{_ref(columns, col, number)}: block takes choices, not a range; expected "
            f"the choices cell to hold e.g. [{', '.join(BLOCK_TYPES)}]"
        )
        return name, None, problems
    bounds: dict[str, float] = {}
    for column, raw in (("low", low), ("high", high)):
        value, problem = _parse_bound(raw, spec)
        if problem:
            what = "lower" if column == "low" else "upper"
            problems.append(f"{_ref(columns, column, number)}: {problem}; expected the {what} "
                            f"bound, {spec.expected}, e.g. {spec.range_example}")
        else:
            bounds[column] = value
    if len(bounds) == 2:
        if bounds["low"] > bounds["high"]:
            problems.append(
                f"{_ref(columns, 'high', number)}: {bounds['high']!r} is below "
                f"{_ref(columns, 'low', number)}, {bounds['low']!r}; expected high >= low"
            )
        elif spec.odd and bounds["low"] != bounds["high"]:
            problems.append(
                f"{_ref(columns, 'high', number)}: a range of kernel sizes would sample even "
                f"sizes; expected the same value as low, or choices, e.g. {spec.choices_example}"
            )
        elif spec.listed and bounds["low"] != bounds["high"]:
            problems.append(
                f"{_ref(columns, 'high', number)}: a range of image sizes cannot be decoded ahead "
                "(the search decodes the images once per size before it starts); expected the "
                f"same value as low, or choices in the choices cell, e.g. {spec.choices_example}"
            )
        if log_value and bounds["low"] <= 0:
            problems.append(
                f"{_ref(columns, 'log', number)}: a log scale needs low > 0, but "
                f"{_ref(columns, 'low', number)} is {bounds['low']!r}; expected no, or a "
                "positive low"
            )
    if problems:
        return name, None, problems
    kind = "float" if spec.kind == "float" else "int"
    return name, Parameter(name, kind, bounds["low"], bounds["high"], bool(log_value)), []


def _examples(spec: _Spec) -> str:
    choices = f"choices (e.g. {spec.choices_example})"
    return f"low and high (e.g. {spec.range_example}) or {choices}" if spec.range_example else choices


def _check_value(value: float, spec: _Spec) -> tuple[float | None, str | None]:
    """Coerce one number to the parameter's type (ints must be whole: Excel's 3.0 is 3), or
    say why not, as "not ..." for the caller's sentence."""
    if spec.kind == "int":
        if value != int(value):
            return None, "not a whole number"
        value = int(value)
    else:
        value = float(value)
    if not spec.allowed(value):
        return None, f"not {spec.expected}"
    return value, None


def _parse_bound(raw: object, spec: _Spec) -> tuple[Any, str | None]:
    if blank(raw):
        return None, "empty cell"
    value = cell_number(raw)
    if value is None:
        return None, f"{str(raw).strip()!r} is not a number"
    checked, reason = _check_value(value, spec)
    return checked, reason and f"{value!r} is {reason}"


def _parse_choices(raw: object, spec: _Spec) -> tuple[tuple[Any, ...], str | None]:
    if spec.kind == "block":
        return parse_blocks(raw)
    if isinstance(raw, str):
        text = raw.strip()
        try:
            parsed: Any = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return (), f"{text!r} is not a Python-style list of numbers"
    else:
        parsed = raw  # Excel stores a lone `5` as a number: one choice
    items = parsed if isinstance(parsed, (list, tuple)) else [parsed]
    if not items:
        return (), "an empty list"
    values = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            return (), f"the list has {item!r}, not a number"
        value, reason = _check_value(item, spec)
        if reason:
            return (), f"the list has {item!r}, {reason}"
        if value in values:
            return (), f"the list repeats {item!r}"
        values.append(value)
    return tuple(values), None
