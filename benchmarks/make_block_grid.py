"""Write configs/edge_grid_blocks.xlsx: plain, separable and inverted-residual models, ~5k-300k params.

One sheet, one family per row (see gridspec.py for the columns). At the edge preset's 64 px:

- two plain conv-pool references, the edge run's front (grid 0: 27,700 params, int8 TEST 0.879;
  grid 9: 64,988 params, 0.922);
- separable (MobileNet) nets: a 3x3 stride-2 stem of 16 and six blocks halving every other
  block, no dense layer (width 1 is the issue's 14,460-parameter probe), widths 0.5 to 4;
  the same with 5x5 depthwise kernels (depthwise weights are cheap) at widths 1 and 2;
- inverted-residual (MobileNetV2) nets: stem 16, seven blocks, expansion 3 at widths 0.5 to 2
  and expansion 6 at widths 0.5 to 1.5 (expansion 6 at width 2 would be 453k parameters).

    python benchmarks/make_block_grid.py && bcpareto grid configs/edge_grid_blocks.xlsx --config edge
    PYTHONPATH=src python benchmarks/probe_blocks.py configs/edge_grid_blocks.xlsx   # int8 sizes
"""

from __future__ import annotations

from pathlib import Path

import openpyxl

OUT = Path(__file__).resolve().parents[1] / "configs" / "edge_grid_blocks.xlsx"
HEADER = ["dense_layers", "neurons", "filters", "kernel_sizes", "block", "strides", "stem", "width", "expansion"]
SEPARABLE = "[16, 24, 32, 48, 64, 64]"
INVERTED = "[16, 24, 24, 32, 32, 64, 64]"
ROWS = [
    ["[1]", "[[32]]", "[[8, 16, 32, 64]]", "[5, 3, 3, 3]"],
    ["[2]", "[[64, 32]]", "[[12, 24, 48, 96]]", "[5, 3, 3, 3]"],
    ["[0]", "[[]]", f"[{SEPARABLE}]", "[3, 3, 3, 3, 3, 3]", "separable", "[1, 2, 1, 2, 1, 2]", "[16]",
     "[0.5, 1, 1.5, 2, 3, 4]"],
    ["[0]", "[[]]", f"[{SEPARABLE}]", "[5, 5, 5, 5, 5, 5]", "separable", "[1, 2, 1, 2, 1, 2]", "[16]", "[1, 2]"],
    ["[0]", "[[]]", f"[{INVERTED}]", "[3, 3, 3, 3, 3, 3, 3]", "inverted_residual", "[1, 2, 1, 2, 1, 2, 1]",
     "[16]", "[0.5, 1, 1.5, 2]", "[3]"],
    ["[0]", "[[]]", f"[{INVERTED}]", "[3, 3, 3, 3, 3, 3, 3]", "inverted_residual", "[1, 2, 1, 2, 1, 2, 1]",
     "[16]", "[0.5, 1, 1.5]", "[6]"],
]


def main() -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "grid"
    sheet.append(HEADER)
    for row in ROWS:
        sheet.append(row)
    for column, width in zip("ABCDEFGHI", (13, 12, 34, 24, 18, 24, 7, 26, 10)):
        sheet.column_dimensions[column].width = width
    workbook.save(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
