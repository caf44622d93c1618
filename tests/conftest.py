"""Shared test helpers: tiny grid sheets, small real data subsets, a CLI runner."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # the seed's files; see its README.md
BLOOD_CELLS = Path(os.environ.get("BCPARETO_DATA") or SHARED / "blood-cells")
CLASSES = ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL")

needs_data = pytest.mark.skipif(
    not (BLOOD_CELLS / "TRAIN").is_dir(), reason=f"real data set not at {BLOOD_CELLS}"
)


def write_sheet(path: Path, rows: list[list[object]], *, title: str = "Sheet1") -> Path:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


def write_workbook(
    path: Path, space: list[list[object]], *, grid: list[list[object]] | None = None,
    title: str = "space",
) -> Path:
    """The grid sheet first, the space sheet second (as a user's workbook has them)."""
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.title = "Grid"
    for row in TINY_GRID if grid is None else grid:
        workbook.active.append(row)
    sheet = workbook.create_sheet(title)
    for row in space:
        sheet.append(row)
    workbook.save(path)
    return path


# Two grid points that build at 32 px with 'same' padding.
TINY_GRID = [
    ["dense_layers", "neurons", "filters", "kernel_sizes"],
    ["[1]", "[[8]]", "[[4, 8], [4, 8, 8]]", "[3, 3, 3]"],
]


@pytest.fixture()
def tiny_grid(tmp_path: Path) -> Path:
    return write_sheet(tmp_path / "tiny.xlsx", TINY_GRID)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoded-image cache shared by the session's tests, never the user's ~/.cache."""
    monkeypatch.setenv("BCPARETO_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    # one search process unless a test asks for workers (--workers auto starts one per core)
    monkeypatch.setenv("BCPARETO_WORKERS", "1")


def copy_subset(dest: Path, *, per_class: int = 3, splits: tuple[str, ...] = ("TRAIN", "TEST")) -> Path:
    """A small real data set: the first `per_class` images of each class and split."""
    for split in splits:
        for name in CLASSES:
            folder = dest / split / name
            folder.mkdir(parents=True)
            for src in sorted((BLOOD_CELLS / split / name).iterdir())[:per_class]:
                shutil.copy(src, folder / src.name)
    return dest


PG_URL = os.environ.get("BCPARETO_TEST_PG_URL")  # .ci/postgres.sh starts a server and exports it


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 real images per class and split, copied once per test module (for search processes)."""
    if not (BLOOD_CELLS / "TRAIN").is_dir():
        pytest.skip(f"real data set not at {BLOOD_CELLS}")
    return copy_subset(tmp_path_factory.mktemp("data") / "blood-cells", per_class=4)


@pytest.fixture()
def pg_url() -> str:
    """The PostgreSQL server's URL; skipped without one, except under CI."""
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("BCPARETO_TEST_PG_URL is unset under CI: .ci/run must start "
                        "PostgreSQL with `eval \"$(bash .ci/postgres.sh)\"`")
        pytest.skip("BCPARETO_TEST_PG_URL unset: start a server with eval \"$(bash .ci/postgres.sh)\"")
    if not os.environ.get("CI"):
        pytest.importorskip("psycopg2", reason="pip install 'bcpareto[postgres]'")
    return PG_URL


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that trains a real model is slow by definition: `-m "not slow"` leaves it out."""
    for item in items:
        if item.get_closest_marker("train") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
