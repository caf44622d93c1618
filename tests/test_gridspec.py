"""The grid sheet: the earlier file read as-is, a clean spelling, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bcpareto.cli import cli
from bcpareto.errors import GridSpecError
from bcpareto.gridspec import read_grid

from .conftest import FIXTURES, ROOT, write_sheet


def test_seed_sheet_expands_to_24_points_in_the_earlier_loop_order() -> None:
    points = read_grid(FIXTURES / "seed_hyper_paremetes.xlsx")
    assert len(points) == 24
    assert [p.grid_id for p in points] == list(range(24))
    # dense pair outer, filter list inner; kernels zipped with each filter list
    assert points[0].neurons == (250, 300) and points[0].filters == (70, 80, 100, 140, 180, 220)
    assert points[3].filters == (128, 150, 180, 200, 256) and points[3].kernel_sizes == (7, 5, 5, 3, 3)
    assert points[4].neurons == (380, 430, 477) and points[4].dense_layers == 3
    assert points[12].neurons == (70, 95, 120, 100, 4)  # tab characters in the cell
    assert points[23].neurons == (300, 250, 200, 180, 175, 160, 150)


def test_repository_sheet_is_the_earlier_grid() -> None:
    assert read_grid(ROOT / "hyper_parameters.xlsx") == read_grid(FIXTURES / "seed_hyper_paremetes.xlsx")


def test_clean_header_spelling_and_several_rows(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "g.xlsx", [
        ["Dense_Layers", "Neurons", "Filters", "Kernel_Sizes"],
        ["[1, 2]", "[[8], [8, 4]]", "[[4, 8]]", "[3, 3]"],
        ["[1]", "[[16]]", "[[4], [8]]", "[5]"],
    ])
    points = read_grid(path)
    assert [p.grid_id for p in points] == [0, 1, 2, 3]
    assert points[1].neurons == (8, 4) and points[3].filters == (8,) and points[3].kernel_sizes == (5,)


HEADER = ["dense_layers", "neurons", "filters", "kernel_sizes"]
GOOD = ["[1, 2]", "[[8], [8, 4]]", "[[4, 8]]", "[3, 3]"]

BAD_SHEETS = {
    "missing column": ([HEADER[:3], GOOD[:3]], ["kernel_sizes", "row 1"]),
    "not a list": ([HEADER, ["3", *GOOD[1:]]], ["cell A2", "dense_layers", "not a non-empty list"]),
    "number cell": ([HEADER, [3, *GOOD[1:]]], ["cell A2", "is not a list"]),
    "neuron length": ([HEADER, ["[1, 2]", "[[8], [8, 4, 2]]", *GOOD[2:]]],
                      ["cell B2", "list 2 has 3 entries but its dense-layer count is 2"]),
    "list count": ([HEADER, ["[1, 2, 3]", *GOOD[1:]]], ["cell B2", "2 neuron lists", "3 dense-layer counts"]),
    "non-positive": ([HEADER, [GOOD[0], GOOD[1], "[[4, 0]]", GOOD[3]]], ["cell C2", "0, not a positive integer"]),
    "non-integer": ([HEADER, [GOOD[0], GOOD[1], GOOD[2], "[3, 2.5]"]], ["cell D2", "2.5"]),
    "short kernels": ([HEADER, [GOOD[0], GOOD[1], GOOD[2], "[3]"]], ["cell D2", "expected at least 2"]),
    "garbage": ([HEADER, [GOOD[0], "[[8], [8, 4]", *GOOD[2:]]], ["cell B2", "not a Python-style list"]),
    "empty sheet": ([], ["empty"]),
    "header only": ([HEADER], ["no data row"]),
}


@pytest.mark.parametrize("case", sorted(BAD_SHEETS))
def test_bad_sheet_exits_2_naming_file_sheet_and_cell(tmp_path: Path, case: str) -> None:
    rows, fragments = BAD_SHEETS[case]
    path = write_sheet(tmp_path / "bad.xlsx", rows, title="Grid")
    result = CliRunner().invoke(cli, ["grid", str(path)])
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and "sheet 'Grid'" in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_every_bad_cell_is_reported_at_once(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "bad.xlsx", [HEADER, ["x", "[[8], [8, 4]]", "[[4, -1]]", "[3, 3]"]])
    with pytest.raises(GridSpecError) as err:
        read_grid(path)
    assert "cell A2" in str(err.value) and "cell C2" in str(err.value)


@pytest.mark.parametrize("content", [b"dense_layers,neurons\n1,2\n", b""])
def test_a_file_that_is_not_xlsx_exits_2(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "grid.xlsx"
    path.write_bytes(content)
    result = CliRunner().invoke(cli, ["grid", str(path)])
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and "xlsx" in result.output


def test_missing_sheet_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["grid", str(tmp_path / "nope.xlsx")])
    assert result.exit_code == 2 and "no such file" in result.output


@pytest.mark.slow  # builds the 24 seed models at 224 px
def test_grid_command_prints_every_point_with_sizes_matching_the_earlier_log() -> None:
    import csv

    result = CliRunner().invoke(
        cli, ["grid", str(FIXTURES / "seed_hyper_paremetes.xlsx"), "--config", "seed", "--h5"]
    )
    assert result.exit_code == 0, result.output
    lines = [l for l in result.output.splitlines() if l[:3].strip().isdigit()]
    assert len(lines) == 24
    # the fixture README's parameter range of the earlier grid
    assert "1,104,115" in lines[12] and "2,606,799" in lines[18]
    with open(FIXTURES / "seed_metrics_log_epoch_10.csv") as handle:
        logged = [float(r["model_size(MB)"]) for r in csv.DictReader(handle)]
    printed = [float(line.split()[-1]) for line in lines]
    assert all(abs(p - e) / e < 1e-3 for p, e in zip(printed, logged, strict=True)), (printed, logged)
