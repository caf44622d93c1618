"""The space sheet: a good sheet, a workbook without one, and every kind of bad cell."""

from __future__ import annotations

from pathlib import Path

import pytest

from bcpareto.errors import GridSpecError
from bcpareto.gridspec import read_grid
from bcpareto.space import read_space

from .conftest import TINY_GRID, write_sheet, write_workbook

HEADER = ["Name", "Low", "High", "Log", "Choices", "notes"]  # A..F; notes are ignored
GOOD = [
    HEADER,
    ["conv_blocks", 3, 3, None, None, "fixed: three blocks"],  # row 2
    ["base_filters", 8, 64, "yes"],                              # row 3
    ["growth", 1.5, 2],                                          # row 4
    ["First Kernel", None, None, None, "[5, 7]"],                # row 5
    ["kernel", None, None, None, 3],                             # row 6: Excel's number cell
    ["dense_layers", 0, 2, "no"],                                # row 7
    ["dense_units", None, None, None, "[32, 64]"],               # row 8
    ["block", None, None, None, "[conv, sep]"],                  # row 9: an alias, no quotes
    ["width", 0.5, 1],                                           # row 10
    ["image_size", 48, 48],                                      # row 11
    ["stem", None, None, None, "[0, 16]"],                       # row 12
    ["last_stride", 1, 2],                                       # row 13
]


def replaced(row: int, cells: list[object] | None) -> list[list[object]]:
    """GOOD with sheet row `row` replaced by `cells` (None: the row removed)."""
    rows = [list(r) for r in GOOD]
    if cells is None:
        del rows[row - 1]
    else:
        rows[row - 1] = cells
    return rows


def test_good_sheet_reads_and_a_sample_becomes_a_grid_point(tmp_path: Path) -> None:
    path = write_workbook(tmp_path / "w.xlsx", GOOD)
    space = read_space(path)
    assert space is not None
    assert space.distributions() == {
        "conv_blocks": ("int", 3, 3, False),
        "base_filters": ("int", 8, 64, True),
        "growth": ("float", 1.5, 2.0, False),
        "first_kernel": ("categorical", (5, 7)),
        "kernel": ("categorical", (3,)),
        "dense_layers": ("int", 0, 2, False),
        "dense_units": ("categorical", (32, 64)),
        "block": ("categorical", ("conv", "separable")),
        "width": ("float", 0.5, 1.0, False),
        "image_size": ("int", 48, 48, False),
        "stem": ("categorical", (0, 16)),
        "last_stride": ("int", 1, 2, False),
    }
    sample = {"base_filters": 10, "growth": 1.5, "first_kernel": 7, "dense_layers": 2,
              "dense_units": 64, "block": "separable", "width": 0.5, "stem": 0, "last_stride": 2}
    point = space.point(sample, grid_id=5)  # conv_blocks, kernel, image_size are fixed
    assert point.grid_id == 5
    assert point.filters == (10, 15, 23)  # 10, 10 * 1.5, 10 * 2.25 = 22.5 rounded up
    assert point.kernel_sizes == (7, 3, 3)
    assert point.neurons == (64, 64) and point.dense_layers == 2
    assert (point.block, point.width, point.image_size) == ("separable", 0.5, 48)
    assert point.channels == (5, 8, 12)  # the width multiplier applies on top, as in the grid
    assert (point.strides, point.stem) == ((), 0)  # the earlier model: every block halves
    # a stem and a last block that keeps the map: issue 13's four-block separable net
    recipe = space.point({**sample, "stem": 16, "last_stride": 1}, grid_id=7)
    assert (recipe.stem, recipe.strides, recipe.block_strides) == (16, (2, 2, 1), (2, 2, 1))
    assert recipe.stem_channels == 8  # width 0.5 scales the stem too
    # no dense layers: the dense_units value plays no part
    assert space.point({**sample, "dense_layers": 0}, grid_id=6).neurons == ()
    # the grid sheet of the same workbook still reads as before
    assert len(read_grid(path)) == 2


def test_parameters_without_a_row_take_their_defaults(tmp_path: Path) -> None:
    rows = [["name", "low", "high", "choices"],
            ["conv_blocks", 2, 4], ["base_filters", 16, 16], ["kernel", None, None, "[3, 5]"]]
    space = read_space(write_workbook(tmp_path / "w.xlsx", rows, title="Space"))
    assert space is not None and list(space.distributions()) == ["conv_blocks", "base_filters", "kernel"]
    point = space.point({"conv_blocks": 4, "kernel": 5}, grid_id=0)
    assert point.filters == (16, 16, 16, 16)  # growth 1
    assert point.kernel_sizes == (5, 5, 5, 5)  # the first kernel is the kernel
    assert point.neurons == ()
    assert (point.block, point.width, point.image_size) == ("conv", 1.0, 0)
    assert (point.strides, point.stem) == ((), 0)


def test_bad_samples_raise_value_error(tmp_path: Path) -> None:
    space = read_space(write_workbook(tmp_path / "w.xlsx", GOOD))
    assert space is not None
    good = {"base_filters": 8, "growth": 2.0, "first_kernel": 5, "dense_layers": 1,
            "dense_units": 32, "block": "conv", "width": 1.0, "stem": 16, "last_stride": 1}
    assert space.point(good, grid_id=0).filters == (8, 16, 32)
    for bad, fragment in [
        ({**good, "base_filters": 65}, "base_filters = 65"),
        ({**good, "first_kernel": 3}, "first_kernel = 3"),
        ({**good, "block": "inverted_residual"}, "block"),
        ({**good, "colour": 1}, "'colour' is not a parameter"),
        ({**good, "stem": 8}, "stem = 8"),
        ({**good, "last_stride": 3}, "last_stride = 3"),
        ({k: v for k, v in good.items() if k != "growth"}, "no value for growth"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            space.point(bad, grid_id=0)


def test_a_workbook_without_a_space_sheet_gives_none_and_its_grid_reads(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "grid.xlsx", TINY_GRID)
    assert read_space(path) is None
    assert len(read_grid(path)) == 2


# Each case: the space sheet's rows, then what the message must contain; exactly one problem.
BAD_CELLS = {
    "unknown name": (replaced(4, ["filter_growth", 1.5, 2]),
                     ["cell A4 (name)", "'filter_growth' is not a parameter",
                      "one of conv_blocks, base_filters, growth, first_kernel"]),
    "blank name": (replaced(4, [None, 1.5, 2]), ["cell A4 (name)", "empty cell"]),
    "low above high": (replaced(3, ["base_filters", 64, 8]),
                       ["cell C3 (high)", "64", "expected high >= low"]),
    "log of zero": (replaced(7, ["dense_layers", 0, 2, "yes"]),
                    ["cell D7 (log)", "a log scale needs low > 0", "cell B7 (low) is 0"]),
    "fractional int bound": (replaced(3, ["base_filters", 8.5, 64]),
                             ["cell B3 (low)", "8.5 is not a whole number", "lower bound"]),
    "duplicate name": ([*GOOD, ["Conv Blocks", 2, 4]],
                       ["cell A14 (name)", "conv_blocks also has row 2", "one row per parameter"]),
    "negative stem": (replaced(12, ["stem", None, None, None, "[-16, 16]"]),
                      ["cell E12 (choices)", "-16, not a whole number, 0 (no stem) or more"]),
    "last stride 3": (replaced(13, ["last_stride", 1, 3]),
                      ["cell C13 (high)", "3 is not 1 or 2", "upper bound"]),
    "range and choices": (replaced(4, ["growth", 1, 2, None, "[1.5]"]),
                          ["cell E4 (choices)", "range and choices", "one or the other"]),
    "neither range nor choices": (replaced(4, ["growth"]), ["cell A4 (name)", "neither"]),
    "bad log word": (replaced(3, ["base_filters", 8, 64, "maybe"]),
                     ["cell D3 (log)", "'maybe' is not yes or no", "yes, no, true, false"]),
    "even kernel choice": (replaced(5, ["first_kernel", None, None, None, "[5, 6]"]),
                           ["cell E5 (choices)", "6, not an odd whole number"]),
    "unknown block": (replaced(9, ["block", None, None, None, "[conv, resnet]"]),
                      ["cell E9 (choices)", "'resnet' is not a block type"]),
    "kernel range": (replaced(6, ["kernel", 3, 7]), ["cell C6 (high)", "even sizes"]),
    "block range": (replaced(9, ["block", 1, 2]), ["cell B9 (low)", "choices, not a range"]),
    "image too small": (replaced(11, ["image_size", 4, 48]),
                        ["cell B11 (low)", "4 is not a whole number of pixels from 8 to 512"]),
    "image size range": (replaced(11, ["image_size", 48, 96]),
                         ["cell C11 (high)", "range of image sizes", "choices", "[48, 64]"]),
    "unclosed choices": (replaced(8, ["dense_units", None, None, None, "[32, 64"]),
                         ["cell E8 (choices)", "not a Python-style list"]),
    "repeated choice": (replaced(8, ["dense_units", None, None, None, "[32, 32.0]"]),
                        ["cell E8 (choices)", "repeats"]),
    "word bound": (replaced(10, ["width", "half", 1]), ["cell B10 (low)", "'half' is not a number"]),
    "half a range": (replaced(10, ["width", 0.5]), ["cell C10 (high)", "empty cell", "upper bound"]),
    "log on choices": (replaced(8, ["dense_units", None, None, "yes", "[32, 64]"]),
                       ["cell D8 (log)", "not to choices"]),
    "required row missing": (replaced(6, None), ["no row for kernel", "conv_blocks, base_filters"]),
    "dense units missing": (replaced(8, None), ["no row for dense_units", "row 7"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CELLS))
def test_a_bad_cell_names_file_sheet_and_cell(tmp_path: Path, case: str) -> None:
    rows, fragments = BAD_CELLS[case]
    path = write_workbook(tmp_path / "bad.xlsx", rows)
    with pytest.raises(GridSpecError) as err:
        read_space(path)
    message = str(err.value)
    assert message.startswith(f"{path}, sheet 'space':\n  "), message
    assert message.count("\n  ") == 1, message  # this problem and no other
    for fragment in fragments:
        assert fragment in message, message


SHEET_PROBLEMS = {
    "empty sheet": ([], ["the sheet is empty", "'name', 'low', 'high', 'log', 'choices'"]),
    "header only": ([HEADER], ["no parameter row under the header"]),
    "no name column": ([["parameter name", "low", "high"], ["kernel", 3, 3]],
                       ["row 1", "missing column(s) name", "'parameter name'"]),
    "no range or choices columns": ([["name", "log"], ["kernel", "no"]],
                                    ["row 1", "low and high, or choices"]),
}


@pytest.mark.parametrize("case", sorted(SHEET_PROBLEMS))
def test_a_sheet_without_usable_rows_names_file_and_sheet(tmp_path: Path, case: str) -> None:
    rows, fragments = SHEET_PROBLEMS[case]
    path = write_workbook(tmp_path / "bad.xlsx", rows)
    with pytest.raises(GridSpecError) as err:
        read_space(path)
    message = str(err.value)
    assert message.startswith(f"{path}, sheet 'space'"), message
    for fragment in fragments:
        assert fragment in message, message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    rows = replaced(6, None)  # no kernel row: GOOD's rows 7..11 move up to 6..10
    rows[2] = ["base_filters", 64, 8]  # row 3
    rows[3] = ["colour", 1, 2]  # row 4
    rows[7] = ["block", None, None, "perhaps", "[conv, resnet]"]  # row 8
    path = write_workbook(tmp_path / "bad.xlsx", rows)
    with pytest.raises(GridSpecError) as err:
        read_space(path)
    problems = str(err.value).split("\n  ")[1:]
    assert len(problems) == 5, err.value
    for fragment in ["cell C3 (high)", "cell A4 (name)", "cell D8 (log)", "cell E8 (choices)",
                     "no row for kernel"]:
        assert sum(fragment in p for p in problems) == 1, (fragment, err.value)


def test_a_file_that_is_not_a_workbook_is_a_grid_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "grid.xlsx"
    path.write_bytes(b"name,low,high\n")
    with pytest.raises(GridSpecError, match="not a readable .xlsx workbook"):
        read_space(path)
    with pytest.raises(GridSpecError, match="no such file"):
        read_space(tmp_path / "nope.xlsx")
