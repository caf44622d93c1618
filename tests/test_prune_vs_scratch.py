"""experiments/prune_vs_scratch.py's pure logic: the sheet it plans and how it pairs the models."""

from __future__ import annotations

from pathlib import Path

from experiments import prune_vs_scratch as pvs

from bcpareto.gridspec import GridPoint, read_grid
from bcpareto.model import cost

from .conftest import write_sheet

PARENTS = [
    GridPoint(0, (8, 16), (3, 3), (), block="separable", stem=8),
    GridPoint(1, (8, 8, 12), (3, 3, 3), (6,), block="inverted_residual", strides=(1, 1, 2), stem=8, expansion=3),
    GridPoint(2, (6, 12), (5, 3), (10,), width=1.5),
]


def test_the_planned_sheet_reads_back_as_pruned_points_and_their_same_size_twins(tmp_path: Path) -> None:
    planned = pvs.plan(PARENTS, [0.25, 0.5, 0.75], image_size=32, channels=3, padding="same")
    assert len(planned) == 2 * 3 * len(PARENTS)
    sheet = write_sheet(tmp_path / "pairs.xlsx", [pvs.HEADER] + [pvs.sheet_rows(p) for p in planned])
    points = read_grid(sheet)
    assert points == planned
    found = pvs.pairs(points, image_size=32, channels=3, padding="same")
    assert found == [(i, i + 1) for i in range(0, len(points), 2)]
    for pruned, twin in found:
        sizes = [cost(points[g], image_size=32, channels=3, padding="same").n_params for g in (pruned, twin)]
        assert sizes[0] == sizes[1] and points[twin].prune is None
