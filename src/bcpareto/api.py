"""The Python API: what `bcpareto` does on the command line, as functions for a notebook.

Each function imports what it needs when called, so `import bcpareto` stays instant (no
TensorFlow, pandas or matplotlib until used). docs/guide/api.md shows them in one example, which
tests/test_api.py runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .cvreport import CvReport
    from .gridspec import GridPoint
    from .report import PlotReport
    from .search import SearchSummary


def load_sheet(path: str | Path) -> list[GridPoint]:
    """The grid points of a hyper_parameters.xlsx-style sheet (cell-precise errors)."""
    from .gridspec import read_grid

    return read_grid(path)


def run_search(sheet: str | Path | None = None, *, preset: str = "quick", data_dir: str | Path | None = None,
           run_dir: str | Path = ".", repeats: int = 1, **overrides: Any) -> SearchSummary:
    """`bcpareto search` in this process (one worker): train every point of ``sheet`` (the
    preset's sheet when None) not yet in the study; ``overrides`` are preset keys
    (``epochs=1``, ``image_size=32``, ``limit_per_class=6``, ``validation="cv"``, ``folds=3``...)."""
    from .config import load_config, resolve_grid
    from .dataset import default_data_dir
    from .gridspec import read_grid
    from .request import SearchRequest
    from .search import run_search as search

    config = load_config(preset, **overrides)
    path = Path(sheet) if sheet is not None else resolve_grid(config)
    request = SearchRequest(points=tuple(read_grid(path)), config=config, grid_name=path.name,
                            data_dir=Path(data_dir) if data_dir else default_data_dir(), run_dir=Path(run_dir),
                            repeats=repeats)
    return search(request, echo=lambda line: None)


def read_run(csv: str | Path) -> pd.DataFrame:
    """A metrics_log.csv (ours or the earlier version's) as a DataFrame."""
    import pandas as pd

    return pd.read_csv(csv)


def front(values: Any, *, directions: list[str]) -> np.ndarray:
    """The non-dominated rows of ``values`` (n, k): a boolean mask; directions "min"/"max" per column."""
    from . import pareto

    return pareto.nondominated_mask(pareto.to_costs(values, directions=directions))


def plot(csv: str | Path | list[str | Path], *, out_dir: str | Path = "pareto_outputs", **objectives: Any) -> PlotReport:
    """`bcpareto plot` of one or more CSVs (x=, y=, z= as COLUMN[:min|max]); writes the figure and front CSV."""
    from .report import plot_report

    paths = [csv] if isinstance(csv, (str, Path)) else list(csv)
    return plot_report(paths, out_dir=out_dir, **objectives)


def judge(csv: str | Path, **options: Any) -> CvReport:
    """The intervals of a run with kept predictions (`bcpareto plot` of a CV run): ``.table`` has one
    row per model (cv_accuracy with _se/_lo/_hi, TEST intervals, p_front), ``.choices`` the one-SE
    choice per size budget."""
    from .cvreport import cv_report

    return cv_report(Path(csv), **options)


def compare(csv: str | Path, a: int, b: int) -> str:
    """`bcpareto compare`: grid points A and B in words and numbers, paired over source smears."""
    from .cvreport import compare as compare_models
    from .cvreport import cv_report

    return compare_models(cv_report(Path(csv)), a, b)
