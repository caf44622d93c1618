"""Issue 29, sheet columns: a header that names no column stops the run (exit 2) instead of being
skipped, naming the file, sheet, cell and header, and the close column names; note columns and
the earlier version's spellings stay valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bcpareto.cli import cli
from bcpareto.gridspec import read_grid
from bcpareto.space import read_space

from .conftest import FIXTURES, ROOT, TINY_GRID, write_sheet

HEADER, ROW = TINY_GRID  # dense_layers, neurons, filters, kernel_sizes; two grid points

# header, the cell it sits in, what the message must suggest (None: nothing is close)
BAD_HEADERS = {
    "blok": ("E1", "did you mean block?"),
    "dropout": ("E1", None),  # (prune was unknown until the prune column came)
    "kernal size": ("E1", "did you mean kernel_sizes?"),
    "stide": ("E1", "strides"),
}


@pytest.mark.parametrize("header", sorted(BAD_HEADERS))
def test_an_unknown_grid_column_exits_2_naming_file_sheet_cell_and_close_names(
    tmp_path: Path, header: str,
) -> None:
    cell, suggestion = BAD_HEADERS[header]
    path = write_sheet(tmp_path / "grid.xlsx", [[*HEADER, header], [*ROW, "[separable]"]], title="Grid")
    result = CliRunner().invoke(cli, ["grid", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in (str(path), "sheet 'Grid'", f"cell {cell}", f"unknown column {header!r}"):
        assert fragment in result.output, result.output
    if suggestion:
        assert suggestion in result.output, result.output
    else:
        assert "did you mean" not in result.output, result.output
        assert "block, strides, stem, width" in result.output  # the known names instead


def test_the_unknown_column_is_reported_with_every_bad_cell(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "grid.xlsx", [[*HEADER, "blok"], ["x", *ROW[1:], "separable"]])
    result = CliRunner().invoke(cli, ["grid", str(path)])
    assert result.exit_code == 2, result.output
    assert "cell E1: unknown column 'blok' (did you mean block?)" in result.output
    assert "cell A2 (dense_layers)" in result.output  # collected, then raised once


def test_a_missing_column_names_the_misspelled_header_that_stands_for_it(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "grid.xlsx", [[*HEADER[:2], "filtres", HEADER[3]], ROW])
    result = CliRunner().invoke(cli, ["grid", str(path)])
    assert result.exit_code == 2, result.output
    assert "missing column(s) filters" in result.output
    assert "cell C1: unknown column 'filtres' (did you mean filters" in result.output


def test_a_second_copy_of_a_column_is_an_error_not_skipped(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "grid.xlsx", [[*HEADER, "Number of filters"], [*ROW, "[[64]]"]])
    result = CliRunner().invoke(cli, ["grid", str(path)])
    assert result.exit_code == 2, result.output
    assert "cell E1: 'Number of filters' is a second filters column (the first is cell C1)" in result.output


@pytest.mark.parametrize("note", ["note", "Notes", " Comment ", "# my own", "#"])
def test_note_columns_are_skipped(tmp_path: Path, note: str) -> None:
    path = write_sheet(tmp_path / "grid.xlsx", [[*HEADER, note], [*ROW, "anything at all"]])
    result = CliRunner().invoke(cli, ["grid", str(path)])
    assert result.exit_code == 0, result.output
    assert "2 grid points" in result.output


def test_a_valid_optional_header_with_odd_spacing_still_reads(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "grid.xlsx", [[*HEADER, "Strides "], [*ROW, "[2, 1, 2]"]])
    assert [p.block_strides for p in read_grid(path)] == [(2, 1), (2, 1, 2)]


SHIPPED = sorted(
    [ROOT / "hyper_parameters.xlsx", *(ROOT / "configs").glob("*.xlsx"), *FIXTURES.glob("*.xlsx"),
     *(ROOT / "benchmarks").rglob("*.xlsx"), *(ROOT / "experiments").rglob("*.xlsx")]
)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_and_earlier_sheet_still_reads(path: Path) -> None:
    """The seed's headers ('Dense layers', 'number of nuerons in dense layers', 'number of
    convolution layers ' with its trailing space) and the space sheets' 'note' column."""
    assert read_grid(path)
    read_space(path)  # None where the workbook has no space sheet


def _workbook(path: Path, space: list[list[object]]) -> Path:
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.title = "Grid"
    for row in TINY_GRID:
        workbook.active.append(row)
    sheet = workbook.create_sheet("space")
    for row in space:
        sheet.append(row)
    workbook.save(path)
    return path


SPACE_ROWS = [["conv_blocks", 2, 2], ["base_filters", 4, 64, "yes"], ["kernel", 3, 3]]
BAD_SPACE_HEADERS = {  # the header row, the bad cell, its header, the suggestion
    # the old reader skipped 'lg' and sampled base_filters on a linear scale, silently
    "lg": (["name", "low", "high", "lg", "note"], "D1", "lg", "did you mean log?"),
    "choises": (["Name", "Low", "High", "Log", "Choises"], "E1", "Choises", "did you mean choices?"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPACE_HEADERS))
def test_an_unknown_space_column_exits_2_before_anything_is_created(tmp_path: Path, case: str) -> None:
    header, cell, text, suggestion = BAD_SPACE_HEADERS[case]
    path = _workbook(tmp_path / "space.xlsx", [header, *SPACE_ROWS])
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["search", str(path), "--sampler", "tpe", "--n-trials", "1",
                                      "--run-dir", str(run_dir), "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == 2, result.output
    for fragment in (str(path), "sheet 'space'", f"cell {cell}", f"unknown column {text!r}", suggestion):
        assert fragment in result.output, result.output
    assert not run_dir.exists()


def test_a_space_sheet_with_a_note_column_still_reads(tmp_path: Path) -> None:
    path = _workbook(tmp_path / "space.xlsx", [["Name", "Low", "High", "Log", "Choices", "Notes"],
                                               ["conv_blocks", 2, 2, None, None, "fixed"],
                                               ["base_filters", 4, 8, "no", None, "why not"],
                                               ["kernel", None, None, None, 3]])
    space = read_space(path)
    assert space is not None and [p.name for p in space.parameters] == ["conv_blocks", "base_filters", "kernel"]
