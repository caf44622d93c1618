"""hyper_parameters.xlsx -> a list of frozen GridPoint dataclasses.

The sheet has four required columns; each data cell holds a Python-literal list written by hand
(trailing commas, spaces and tabs are fine). Semantics, kept from the earlier version:

- ``dense_layers`` [d1, d2, ...] is zipped with ``neurons`` [[n, ...], ...]: the i-th dense-layer
  count goes with the i-th neuron list, whose length must equal that count;
- each such pair is crossed with every list in ``filters`` (one conv block per entry);
- ``kernel_sizes`` is zipped with each filter list (a 5-filter list takes the first 5 sizes);
- a dense-layer count of 0 with the neuron list [] puts the softmax right after the pooling.

So one row with 6 dense pairs and 4 filter lists gives 24 grid points, numbered 0..23 in that loop
order (dense pair outer, filter list inner), which is also the row order of the earlier logs.
Further non-empty rows add more grid points, numbered on.

Optional columns choose the block type and its shape. A sheet without them, or a blank cell in
one, means the default, which is the earlier model exactly:

- ``block`` [conv, separable, inverted_residual] (default conv): what each entry of a filter list
  builds. conv: Conv2D + ReLU, then a 2x2 max-pool (the earlier block). separable: a depthwise
  conv + BatchNorm + ReLU, then a 1x1 conv + BatchNorm + ReLU (MobileNet). inverted_residual:
  1x1 expansion + depthwise + linear 1x1 projection, each with BatchNorm, ReLU6 after the first
  two, and a skip connection when the block keeps the shape (MobileNetV2). Words need no quotes.
- ``strides`` [2, 1, 2, ...] (default: 2 for every block): zipped with each filter list like
  ``kernel_sizes``; 2 halves the feature map in that block (conv: the max-pool; the others: a
  stride-2 depthwise conv), 1 keeps its size (conv: no pool).
- ``stem`` [0, 16] (default 0 = none): filters of a 3x3 stride-2 conv + BatchNorm + ReLU before
  the first block, which halves the input at once.
- ``width`` [0.5, 1] (default 1): multiplies every filter count and the stem (rounded, at
  least 1), so one filter list gives a family of sizes.
- ``expansion`` [6] (default 6): inverted_residual only; the 1x1 expansion makes
  expansion x input channels (1: no expansion conv).
- ``image_size`` [48, 64] (default: the preset's ``image_size``): the side in pixels the model
  takes, so one sheet can compare resolutions. It wins over the preset and ``--image-size``
  for the points of its row.
- ``prune`` [0.5] (default: none): train the point as it stands (the parent), then keep this
  fraction of the channels of every block, the stem and every dense layer, chosen by BatchNorm
  scale (prune.py), and fine-tune the smaller model (the preset's ``prune_finetune_epochs``).
  Each fraction is in (0, 1]; 1 keeps every channel (the same schedule without pruning).

Within a row everything is crossed: each block type x dense pair x filter list x stem x width
(x expansion, for inverted_residual only) x image size. Loop order: block outer, then the
earlier dense pair and filter list, then stem, width, expansion, image size and prune inner; the earlier sheets' points keep their
numbers. For families that should not be crossed, use another row. No TensorFlow here.

Any other header is an error naming the close column names (a misspelled ``blok`` would
otherwise train other models than asked), except a note column: headed ``note`` (``notes``,
``comment``, ...) or anything starting with ``#``, which the reader skips.

One module, though over 400 lines: the format above, each column's spellings and expected form,
its cell checks and the GridPoint field it fills change together whenever a column is added, so
they stay side by side. Opening the workbook, matching headers and naming cells is workbook.py's.
"""

from __future__ import annotations

import ast
import re
from itertools import product
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import GridSpecError
from .workbook import (
    bad_cell,
    blank,
    cell_ref,
    cell_value,
    check_header,
    first_sheet,
    header_hint,
    match_headers,
    missing_columns,
    parse_words,
    sheet_error,
)

# Canonical column names (also Optuna parameter names and CSV columns) and the header spellings
# we accept, normalised by workbook.normalise_header. The earlier sheet's spellings (typo and trailing
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

# Optional columns (block type and shape); absent or blank means the earlier model.
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "block": ("block", "blocks", "block type", "block types"),
    "strides": ("strides", "stride"),
    "stem": ("stem", "stem filters"),
    "width": ("width", "width multiplier", "widths"),
    "expansion": ("expansion", "expansion ratio", "expansions", "expand ratio"),
    "image_size": ("image size", "image sizes", "resolution", "resolutions", "input size", "px"),
    "prune": ("prune", "prune fraction", "pruning", "kept fraction", "fraction kept", "channels kept"),
}

BLOCK_TYPES = ("conv", "separable", "inverted_residual")
# Other spellings of the block types, after lower-casing and turning spaces and '-' into '_'.
_BLOCK_ALIASES = {
    "plain": "conv", "conv2d": "conv", "sep": "separable", "depthwise_separable": "separable",
    "separable_conv": "separable", "ir": "inverted_residual", "mbconv": "inverted_residual",
    "mobilenetv2": "inverted_residual",
}
DEFAULT_EXPANSION = 6  # MobileNetV2's expansion ratio
MIN_IMAGE_SIDE, MAX_IMAGE_SIDE = 8, 512  # the preset's image_size range (config.py)

_EXPECTED = {
    "dense_layers": "a list of dense-layer counts (0: none), e.g. [2, 3]",
    "neurons": "a list of lists of positive integers, one list per dense-layer count "
    "([] for 0), e.g. [[250, 300], [380, 430, 477]]",
    "filters": "a list of lists of positive integers, one list per model family, "
    "e.g. [[70, 80, 100], [128, 150, 180]]",
    "kernel_sizes": "a list of positive integers, at least as long as the longest filter list, "
    "e.g. [7, 5, 5, 3]",
    "block": f"a list of block types out of {', '.join(BLOCK_TYPES)}, e.g. [conv, separable]",
    "strides": "a list of strides, each 1 or 2, at least as long as the longest filter list, "
    "e.g. [2, 1, 2, 1]",
    "stem": "a list of stem filter counts, each 0 (no stem) or a positive integer, e.g. [0, 16]",
    "width": "a list of positive width multipliers, e.g. [0.5, 1, 1.5]",
    "expansion": "a list of positive integers, e.g. [4, 6], in a row with an inverted_residual "
    "block",
    "image_size": f"a list of image sides in pixels, each {MIN_IMAGE_SIDE}-{MAX_IMAGE_SIDE}, e.g. [48, 64]",
    "prune": "a list of fractions of channels kept after pruning, each in (0, 1], e.g. [0.5, 0.75]",
}


@dataclass(frozen=True)
class GridPoint:
    """One model of the grid: an optional stem, blocks (filters, kernel sizes), dense layers.

    The fields after `neurons` default to the earlier model (conv blocks, each halving the map,
    no stem, width 1); `params()` and `describe()` name them only when they differ from it.
    """

    grid_id: int
    filters: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    neurons: tuple[int, ...]
    block: str = "conv"
    strides: tuple[int, ...] = ()  # per block, 1 or 2; () = 2 for every block
    stem: int = 0  # filters of a 3x3 stride-2 stem conv before the first block; 0 = none
    width: float = 1.0  # multiplies every filter count and the stem
    expansion: int = DEFAULT_EXPANSION  # inverted_residual only
    image_size: int = 0  # the side in pixels this model takes; 0 = the preset's image_size
    prune: float | None = None  # fraction of channels kept after pruning a trained parent; None = no pruning

    @property
    def parent(self) -> GridPoint:
        """The model trained before pruning: this point without ``prune`` (itself if unpruned)."""
        return replace(self, prune=None) if self.prune is not None else self

    @property
    def dense_layers(self) -> int:
        return len(self.neurons)

    @property
    def block_strides(self) -> tuple[int, ...]:
        """The stride of every block (2 where the sheet gave none)."""
        return self.strides or (2,) * len(self.filters)

    @property
    def channels(self) -> tuple[int, ...]:
        """Output channels of every block: the filters times the width multiplier."""
        return tuple(_scaled(f, self.width) for f in self.filters)

    @property
    def stem_channels(self) -> int:
        return _scaled(self.stem, self.width) if self.stem else 0

    def params(self) -> dict[str, Any]:
        """The architecture as plain values (Optuna user attrs, CSV columns).

        The block columns appear only when they differ from the earlier model, so a plain
        model's columns (and the earlier logs' study fingerprints) stay the same.
        """
        values: dict[str, Any] = {
            "grid_id": self.grid_id,
            "dense_layers": self.dense_layers,
            "neurons": _fmt(self.neurons),
            "filters": _fmt(self.filters),
            "kernel_sizes": _fmt(self.kernel_sizes),
        }
        if self.block != "conv":
            values["block"] = self.block
        if any(s != 2 for s in self.block_strides):
            values["strides"] = _fmt(self.block_strides)
        if self.stem:
            values["stem"] = self.stem
        if self.width != 1:
            values["width"] = self.width
        if self.block == "inverted_residual":
            values["expansion"] = self.expansion
        if self.image_size:
            values["image_size"] = self.image_size
        if self.prune is not None:
            values["prune"] = self.prune
        return values

    def describe(self) -> str:
        extra = {k: v for k, v in self.params().items() if k in OPTIONAL_COLUMNS and k != "block"}
        shape = "".join(f" {k} {v}" for k, v in extra.items())
        kind = "" if self.block == "conv" else f"{self.block} "
        return (
            f"{kind}filters {_fmt(self.filters)} k {_fmt(self.kernel_sizes)}{shape}, "
            f"dense {_fmt(self.neurons)}"
        )


def _scaled(filters: int, width: float) -> int:
    return max(1, int(filters * width + 0.5))


def _fmt(values: tuple[int, ...]) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


def read_grid(path: Path | str) -> list[GridPoint]:
    """Read and validate the grid sheet; every bad cell is reported in one GridSpecError."""
    sheet = first_sheet(Path(path))
    where = sheet.where
    if sheet.empty:
        raise GridSpecError(f"{where}: the sheet is empty; expected a header row {header_hint(COLUMNS)}")

    header_problems = check_header(sheet.header, {**COLUMNS, **OPTIONAL_COLUMNS})
    columns = match_headers(sheet.header, COLUMNS)
    missing = [name for name in COLUMNS if name not in columns]
    if missing:
        raise missing_columns(
            where, sheet.header, missing=", ".join(missing), header_problems=header_problems,
            expected=f"{header_hint(COLUMNS)} (or the earlier sheet's spellings)",
        )
    optional = match_headers(sheet.header, OPTIONAL_COLUMNS, skip=set(columns.values()))
    problems: list[str] = list(header_problems)
    points: list[GridPoint] = []
    data_rows = sheet.data_rows()
    if not data_rows:
        raise GridSpecError(f"{where}: no data row under the header; expected one row of lists")
    for row_number, row in data_rows:
        cells: dict[str, Any] = {}
        for name, col in columns.items():
            value, problem = _parse_cell(cell_value(row, col), name)
            if problem:
                problems.append(bad_cell(col, row_number, name, problem, _EXPECTED[name]))
            else:
                cells[name] = value
        options: dict[str, Any] = {}
        for name, col in optional.items():
            raw = cell_value(row, col)
            if blank(raw):
                continue  # a blank optional cell means the default
            value, problem = _OPTIONAL_PARSERS[name](raw)
            if problem:
                problems.append(bad_cell(col, row_number, name, problem, _EXPECTED[name]))
            else:
                options[name] = value
        if len(cells) == len(columns):
            problems += _cross_check(cells, columns, row_number)
            problems += _cross_check_options(cells, options, optional, row_number)
        if not problems:
            points += _expand(cells, options, first_id=len(points))
    if problems:
        raise sheet_error(where, problems)
    return points


def _parse_cell(raw: object, name: str) -> tuple[Any, str | None]:
    if blank(raw):
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
    # 0 dense layers (an empty neuron list): the pooled features go straight to the softmax
    least = 0 if name == "dense_layers" else 1
    for i, item in enumerate(items, start=1):
        label = f"list {i}" if nested else "the list"
        if not isinstance(item, (list, tuple)) or not (item or name == "neurons"):
            return None, f"{label} ({item!r}) is not a non-empty list"
        bad = [v for v in item if isinstance(v, bool) or not isinstance(v, int) or v < least]
        if bad:
            kind = "a non-negative integer" if least == 0 else "a positive integer"
            return None, f"{label} has {bad[0]!r}, not {kind}"
    if nested:
        return [tuple(v) for v in value], None
    return tuple(value), None


def parse_blocks(raw: object) -> tuple[Any, str | None]:
    """Block types: `separable`, `[conv, separable]` or `['conv']`; quotes are optional.

    Also the space sheet's block choices (space.py). Returns (the types, None) or
    (None, what is wrong).
    """
    words, problem = parse_words(raw, what="block type")
    if problem:
        return None, problem
    blocks = []
    for word in words:
        key = re.sub(r"[\s-]+", "_", word.lower())
        block = _BLOCK_ALIASES.get(key, key)
        if block not in BLOCK_TYPES:
            return None, f"{word!r} is not a block type"
        if block in blocks:
            return None, f"{word!r} appears twice"
        blocks.append(block)
    return tuple(blocks), None

def _parse_numbers(raw: object, *, kind: str) -> tuple[Any, str | None]:
    """A list of numbers (a bare number is a one-entry list: Excel stores `6` as a number)."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value: Any = [raw]
    elif isinstance(raw, str):
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            return None, f"{raw.strip()!r} is not a Python-style list"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
    else:
        return None, f"{raw!r} is not a list"
    if not isinstance(value, (list, tuple)) or not value:
        return None, f"{str(raw).strip()!r} is not a non-empty list"
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None, f"the list has {v!r}, not a number"
        if kind == "stride" and (isinstance(v, float) or v not in (1, 2)):
            return None, f"the list has {v!r}, not a stride of 1 or 2"
        if kind in ("count", "positive") and (isinstance(v, float) or v <= 0):
            return None, f"the list has {v!r}, not a positive integer"
        if kind == "stem" and (isinstance(v, float) or v < 0):
            return None, f"the list has {v!r}, not 0 or a positive integer"
        if kind == "width" and not v > 0:
            return None, f"the list has {v!r}, not a positive number"
        if kind == "fraction" and not 0 < v <= 1:
            return None, f"the list has {v!r}, not a fraction of channels kept in (0, 1]"
        if kind == "side" and (isinstance(v, float) or not MIN_IMAGE_SIDE <= v <= MAX_IMAGE_SIDE):
            return None, f"the list has {v!r}, not a whole number of pixels from {MIN_IMAGE_SIDE} to {MAX_IMAGE_SIDE}"
    if kind != "stride" and len(set(value)) != len(value):
        return None, f"the list repeats {next(v for v in value if value.count(v) > 1)!r}"
    return tuple(value), None


_OPTIONAL_PARSERS = {
    "block": parse_blocks,
    "strides": lambda raw: _parse_numbers(raw, kind="stride"),
    "stem": lambda raw: _parse_numbers(raw, kind="stem"),
    "width": lambda raw: _parse_numbers(raw, kind="width"),
    "expansion": lambda raw: _parse_numbers(raw, kind="count"),
    "image_size": lambda raw: _parse_numbers(raw, kind="side"),
    "prune": lambda raw: _parse_numbers(raw, kind="fraction"),
}


def _cross_check_options(
    cells: dict[str, Any], options: dict[str, Any], optional: dict[str, int], row: int
) -> list[str]:
    problems = []
    longest = max(len(f) for f in cells["filters"])
    if "strides" in options and len(options["strides"]) < longest:
        ref = cell_ref(optional["strides"], row, "strides")
        problems.append(
            f"{ref}: {len(options['strides'])} strides but the longest filter list has "
            f"{longest} entries; expected at least {longest}"
        )
    if "expansion" in options and "inverted_residual" not in options.get("block", ("conv",)):
        ref = cell_ref(optional["expansion"], row, "expansion")
        blocks = ", ".join(options.get("block", ("conv",)))
        problems.append(
            f"{ref}: an expansion ratio, but the row's blocks are {blocks}; expected an "
            "inverted_residual block in the row's block cell, or a blank expansion cell"
        )
    return problems


def _cross_check(cells: dict[str, Any], columns: dict[str, int], row: int) -> list[str]:
    problems = []
    dense, neurons = cells["dense_layers"], cells["neurons"]
    ref_d = cell_ref(columns["dense_layers"], row, "dense_layers")
    ref_n = cell_ref(columns["neurons"], row, "neurons")
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
        ref_k = cell_ref(columns["kernel_sizes"], row, "kernel_sizes")
        problems.append(
            f"{ref_k}: {len(cells['kernel_sizes'])} kernel sizes but the longest filter list "
            f"has {longest} entries; expected at least {longest}"
        )
    return problems


def _expand(cells: dict[str, Any], options: dict[str, Any], *, first_id: int) -> list[GridPoint]:
    points: list[GridPoint] = []
    strides = options.get("strides", ())
    for block in options.get("block", ("conv",)):
        expansions = options.get("expansion", (DEFAULT_EXPANSION,))
        if block != "inverted_residual":
            expansions = (DEFAULT_EXPANSION,)  # only inverted_residual blocks expand
        for neurons in cells["neurons"]:
            for filters in cells["filters"]:
                own_strides = tuple(strides[: len(filters)])
                if all(s == 2 for s in own_strides):
                    own_strides = ()  # the default: one spelling per model
                for stem in options.get("stem", (0,)):
                    for width in options.get("width", (1.0,)):
                        for expansion in expansions:
                            for side, prune in product(options.get("image_size", (0,)),
                                                       options.get("prune", (None,))):
                                points.append(
                                    GridPoint(
                                        grid_id=first_id + len(points),
                                        filters=tuple(filters),
                                        kernel_sizes=tuple(cells["kernel_sizes"][: len(filters)]),
                                        neurons=tuple(neurons),
                                        block=block,
                                        strides=own_strides,
                                        stem=int(stem),
                                        width=width,
                                        expansion=int(expansion),
                                        image_size=int(side),
                                        prune=None if prune is None else float(prune),
                                    )
                                )
    return points
