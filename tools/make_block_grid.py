"""Write the grids of the `blocks` and `mobile` presets: configs/edge_grid_blocks.xlsx and
configs/edge_grid_mobile.xlsx, 16 models each.

`blocks` (4.7k-104k parameters), one family per row (see gridspec.py for the columns), at 48
and 64 px:

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

`mobile` (2.8k-228k parameters, 64, 96 and 128 px) follows what the `blocks` run and its
seeds found (experiments/recipe.md, "Resolution"): the four-block separable net gained 3.5 int8
TEST points from 64 to 96 px (two seeds each) and nothing more at 128 px, and its width did not
matter; so the four-block net spans widths 0.5-4 at 96 px and its width 1 the three sizes, with
the six-block separable and the inverted-residual nets at 64 and 96 px, and three plain
conv-pool references of the edge grid at 64 px (27.7k to 228k parameters). Its workbook also
has a `space` sheet, so a sampler can search the three block types with a stem and a stride-1
last block at 64 and 96 px (docs/guide/search.md).

    python tools/make_block_grid.py && bcpareto grid configs/edge_grid_blocks.xlsx --config blocks
    bcpareto grid configs/edge_grid_mobile.xlsx --config mobile
    bcpareto search --config mobile --sampler tpe --max-int8-mb 0.1 --fidelity epochs --eta 2 --budget-minutes 25
    PYTHONPATH=src python experiments/probe_blocks.py configs/edge_grid_blocks.xlsx   # int8 sizes
"""

from __future__ import annotations

from pathlib import Path

import openpyxl

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
HEADER = ["dense_layers", "neurons", "filters", "kernel_sizes", "block", "strides", "stem", "width", "expansion",
          "image_size"]
SEPARABLE = "[16, 24, 32, 48, 64, 64]"
SEP6 = ["[0]", "[[]]", f"[{SEPARABLE}]"]
INVERTED = "[16, 24, 24, 32, 32, 64, 64]"
BLOCKS = [
    ["[1]", "[[32]]", "[[8, 16, 32, 64]]", "[5, 3, 3, 3]", None, None, None, None, None, "[64]"],
    ["[2]", "[[64, 32]]", "[[12, 24, 48, 96]]", "[5, 3, 3, 3]", None, None, None, None, None, "[64]"],
    [*SEP6, "[3, 3, 3, 3, 3, 3]", "separable", "[1, 2, 1, 2, 1, 2]", "[16]", "[0.5, 1, 2, 3]", None, "[48, 64]"],
    [*SEP6, "[5, 5, 5, 5, 5, 5]", "separable", "[1, 2, 1, 2, 1, 2]", "[16]", "[1]", None, "[48, 64]"],
    ["[0]", "[[]]", "[[16, 32, 48, 64]]", "[3, 3, 3, 3]", "separable", "[2, 2, 2, 1]", "[16]", None, None, "[48, 64]"],
    ["[0]", "[[]]", f"[{INVERTED}]", "[3, 3, 3, 3, 3, 3, 3]", "inverted_residual", "[1, 2, 1, 2, 1, 2, 1]",
     "[16]", "[0.5, 1]", "[3]", "[48]"],
]
SEP4 = ["[0]", "[[]]", "[[16, 32, 48, 64]]", "[3, 3, 3, 3]", "separable", "[2, 2, 2, 1]", "[16]"]
MOBILE = [
    ["[1]", "[[32]]", "[[8, 16, 32, 64], [16, 32, 64, 128], [24, 48, 96, 192]]", "[5, 3, 3, 3]",
     None, None, None, None, None, "[64]"],
    [*SEP4, "[1]", None, "[64, 96, 128]"],
    [*SEP4, "[0.5, 2, 4]", None, "[96]"],
    [*SEP4, "[0.5, 2]", None, "[128]"],
    [*SEP6, "[3, 3, 3, 3, 3, 3]", "separable", "[1, 2, 1, 2, 1, 2]", "[16]", "[0.5]", None, "[64, 96]"],
    [*SEP6, "[3, 3, 3, 3, 3, 3]", "separable", "[1, 2, 1, 2, 1, 2]", "[16]", "[2]", None, "[64]"],
    ["[0]", "[[]]", f"[{INVERTED}]", "[3, 3, 3, 3, 3, 3, 3]", "inverted_residual", "[1, 2, 1, 2, 1, 2, 1]",
     "[16]", "[0.5]", "[3]", "[64, 96]"],
]
SHEETS = {"edge_grid_blocks.xlsx": BLOCKS, "edge_grid_mobile.xlsx": MOBILE}
# The mobile workbook's `space` sheet (bcpareto search --config mobile --sampler tpe): the three
# block types, a stem and a stride-1 last block, 3-6 blocks, 64 and 96 px; name, low, high, choices
MOBILE_SPACE = [
    ("conv_blocks", 3, 6, None, "blocks (each halves the map but the last: last_stride)"),
    ("base_filters", None, None, "[8, 12, 16, 24, 32]", "filters of the first block"),
    ("growth", None, None, "[1.25, 1.5, 2]", "filters multiply by it per block"),
    ("first_kernel", None, None, "[3, 5]", "kernel of the first block"),
    ("kernel", None, None, "[3, 5]", "kernel of the other blocks"),
    ("dense_layers", 0, 1, None, "dense layers before the softmax"),
    ("dense_units", None, None, "[32, 64]", "neurons of the dense layer"),
    ("block", None, None, "[conv, separable, inverted_residual]", "block type"),
    ("image_size", None, None, "[64, 96]", "input side in pixels"),
    ("stem", None, None, "[0, 16]", "filters of a 3x3 stride-2 stem conv; 0: none"),
    ("last_stride", None, None, "[1, 2]", "1: the last block keeps the map's size"),
]
SPACES = {"edge_grid_mobile.xlsx": MOBILE_SPACE}


def main() -> None:
    for name, rows in SHEETS.items():
        workbook = openpyxl.Workbook()
        sheet = workbook.active
        sheet.title = "grid"
        sheet.append(HEADER)
        for row in rows:
            sheet.append(row)
        for column, width in zip("ABCDEFGHIJ", (13, 12, 34, 24, 18, 24, 7, 26, 10, 11)):
            sheet.column_dimensions[column].width = width
        if name in SPACES:
            space = workbook.create_sheet("space")
            space.append(["name", "low", "high", "log", "choices", "note"])
            for key, low, high, choices, note in SPACES[name]:
                space.append([key, low, high, None, choices, note])
            for column, width in zip("ABCDEF", (14, 6, 6, 5, 38, 56)):
                space.column_dimensions[column].width = width
        workbook.save(CONFIGS / name)
        print(f"wrote {CONFIGS / name}")


if __name__ == "__main__":
    main()
