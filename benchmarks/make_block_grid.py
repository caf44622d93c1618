"""Write configs/edge_grid_blocks.xlsx, the `blocks` preset's grid: 16 models, 4.7k-104k parameters.

One sheet, one family per row (see gridspec.py for the columns), at 48 and 64 px:

- two plain conv-pool references at 64 px, the `edge` run's smallest and its front (edge grid 0:
  27,700 params; edge grid 9: 64,988);
- separable (MobileNet) nets: a 3x3 stride-2 stem of 16 and six depthwise-separable blocks
  halving every other block, no dense layer (width 1 is the issue's 14,460-parameter probe),
  widths 0.5 to 3, at 48 and 64 px; the same with 5x5 depthwise kernels (cheap in weights) at
  width 1;
- a four-block separable net (8,228 params): fewer ops, so fewer bytes of per-op overhead;
  with names stripped its int8 file is about 20 KB;
- inverted-residual (MobileNetV2) nets: stem 16, seven blocks, expansion 3 at widths 0.5 and 1,
  at 48 px only (their expanded depthwise layers are the slowest to train on this CPU:
  300-600 ms a step at 64 px).

Chosen so the whole `blocks` search fits 60 minutes on a 2-core CPU (step times measured with
bcpareto.trial.time_train_step), and so that the 0.02 MB and 0.1 MB budgets of
issue #13 each hold several models.

    python benchmarks/make_block_grid.py && bcpareto grid configs/edge_grid_blocks.xlsx --config blocks
    PYTHONPATH=src python benchmarks/probe_blocks.py configs/edge_grid_blocks.xlsx   # int8 sizes
"""

from __future__ import annotations

from pathlib import Path

import openpyxl

OUT = Path(__file__).resolve().parents[1] / "configs" / "edge_grid_blocks.xlsx"
HEADER = ["dense_layers", "neurons", "filters", "kernel_sizes", "block", "strides", "stem", "width", "expansion",
          "image_size"]
SEPARABLE = "[16, 24, 32, 48, 64, 64]"
SEP6 = ["[0]", "[[]]", f"[{SEPARABLE}]"]
INVERTED = "[16, 24, 24, 32, 32, 64, 64]"
ROWS = [
    ["[1]", "[[32]]", "[[8, 16, 32, 64]]", "[5, 3, 3, 3]", None, None, None, None, None, "[64]"],
    ["[2]", "[[64, 32]]", "[[12, 24, 48, 96]]", "[5, 3, 3, 3]", None, None, None, None, None, "[64]"],
    [*SEP6, "[3, 3, 3, 3, 3, 3]", "separable", "[1, 2, 1, 2, 1, 2]", "[16]", "[0.5, 1, 2, 3]", None, "[48, 64]"],
    [*SEP6, "[5, 5, 5, 5, 5, 5]", "separable", "[1, 2, 1, 2, 1, 2]", "[16]", "[1]", None, "[48, 64]"],
    ["[0]", "[[]]", "[[16, 32, 48, 64]]", "[3, 3, 3, 3]", "separable", "[2, 2, 2, 1]", "[16]", None, None, "[48, 64]"],
    ["[0]", "[[]]", f"[{INVERTED}]", "[3, 3, 3, 3, 3, 3, 3]", "inverted_residual", "[1, 2, 1, 2, 1, 2, 1]",
     "[16]", "[0.5, 1]", "[3]", "[48]"],
]


def main() -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "grid"
    sheet.append(HEADER)
    for row in ROWS:
        sheet.append(row)
    for column, width in zip("ABCDEFGHIJ", (13, 12, 34, 24, 18, 24, 7, 26, 10, 11)):
        sheet.column_dimensions[column].width = width
    workbook.save(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
