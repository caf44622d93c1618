"""Write configs/search_space.xlsx (a 64-point space, as a grid sheet and a space sheet), and the
`space` sheets of configs/edge_grid.xlsx and hyper_parameters.xlsx.

The `space` sheet gives six parameters two values each (2**6 = 64 architectures); the `grid`
sheet lists all 64, in the order of itertools.product over the space rows, so grid id i is the
i-th assignment. Trained once with every epoch's validation accuracy and seconds logged, the grid
is the reference table that experiments/replay_search.py replays samplers and halving against
(NAS-Bench style: every point a sampler can propose has a recorded learning curve).

The edge space (EDGE_SPACE, added to the edge grid's workbook and to hyper_parameters.xlsx so
`bcpareto search --sampler tpe` has a space out of the box) spans the edge grid's plain
conv-pool nets, 3-5 blocks of 8-24 base filters, plus depthwise-separable blocks, 0-2 dense
layers, and (since issue 13 measured them as the most accuracy per byte) a 16-filter stride-2
stem and a last block of stride 1; the grid sheets themselves are left as they are (same points, same study names).

    python tools/make_search_space.py
    bcpareto search configs/search_space.xlsx --config searchref --run-dir runs/searchref
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import openpyxl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bcpareto.space import read_space

OUT = ROOT / "configs" / "search_space.xlsx"
# name, choices (the order of itertools.product: the last row varies fastest)
SPACE = [
    ("block", "[conv, separable]"),
    ("conv_blocks", "[3, 4]"),
    ("base_filters", "[8, 16]"),
    ("growth", "[1.5, 2]"),
    ("kernel", "[3, 5]"),
    ("dense_layers", "[0, 1]"),
]
FIXED = [("dense_units", 32, 32)]  # a fixed range: every dense layer has 32 units
GRID_HEADER = ["dense_layers", "neurons", "filters", "kernel_sizes", "block"]
# name, low, high, log, choices, note
EDGE_SPACE = [
    ("conv_blocks", 3, 5, None, None, "blocks, each halving the feature map (the last: last_stride)"),
    ("base_filters", None, None, None, "[8, 12, 16, 24]", "filters of the first block"),
    ("growth", None, None, None, "[1.5, 2]", "filters multiply by it per block"),
    ("first_kernel", None, None, None, "[3, 5]", "kernel of the first block"),
    ("kernel", None, None, None, "[3]", "kernel of the other blocks"),
    ("dense_layers", 0, 2, None, None, "dense layers before the softmax"),
    ("dense_units", None, None, None, "[32, 64]", "neurons of each dense layer"),
    ("block", None, None, None, "[conv, separable]", "plain conv or depthwise-separable"),
    ("stem", None, None, None, "[0, 16]", "filters of a 3x3 stride-2 stem conv; 0: none"),
    ("last_stride", None, None, None, "[1, 2]", "1: the last block keeps the map's size"),
]
EDGE_WORKBOOKS = [ROOT / "configs" / "edge_grid.xlsx", ROOT / "hyper_parameters.xlsx"]


def choices(text: str) -> list[object]:
    return [int(v) if v.strip().isdigit() else (float(v) if "." in v else v.strip())
            for v in text.strip("[]").split(",")]


def add_space_sheet(path: Path, rows: list[tuple[object, ...]]) -> None:
    """Replace (or add) the workbook's `space` sheet; the grid sheet stays as it is."""
    workbook = openpyxl.load_workbook(path)
    for name in [n for n in workbook.sheetnames if n.lower() == "space"]:
        del workbook[name]
    sheet = workbook.create_sheet("space")
    sheet.append(["name", "low", "high", "log", "choices", "note"])
    for row in rows:
        sheet.append(list(row))
    for column, width in zip("ABCDEF", (14, 6, 6, 5, 20, 40)):
        sheet.column_dimensions[column].width = width
    workbook.save(path)
    print(f"wrote the space sheet of {path}: {len(rows)} parameters")


def main() -> None:
    workbook = openpyxl.Workbook()
    grid = workbook.active
    grid.title = "grid"
    grid.append(GRID_HEADER)
    space = workbook.create_sheet("space")
    space.append(["name", "low", "high", "log", "choices", "note"])
    for name, values in SPACE:
        space.append([name, None, None, None, values, None])
    for name, low, high in FIXED:
        space.append([name, low, high, None, None, "fixed"])
    workbook.save(OUT)  # the space sheet first: read it back to build the grid from it

    parsed = read_space(OUT)
    names = [name for name, _ in SPACE]
    for grid_id, values in enumerate(itertools.product(*(choices(v) for _, v in SPACE))):
        point = parsed.point(dict(zip(names, values)), grid_id=grid_id)
        grid.append([
            f"[{point.dense_layers}]", f"[{list(point.neurons)}]", f"[{list(point.filters)}]",
            f"{list(point.kernel_sizes)}", point.block,
        ])
    for column, width in zip("ABCDEF", (13, 12, 22, 16, 11, 8)):
        grid.column_dimensions[column].width = width
        space.column_dimensions[column].width = width + 4
    workbook.save(OUT)
    print(f"wrote {OUT}: {grid.max_row - 1} grid rows, {space.max_row - 1} space rows")
    for path in EDGE_WORKBOOKS:
        add_space_sheet(path, EDGE_SPACE)


if __name__ == "__main__":
    main()
