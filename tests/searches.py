"""Helpers for tests that run a tiny search in-process (click's CliRunner) and read it back.

Shared by the strategy, halving, refine, edge-fill and storage tests: a 32-px one-epoch preset,
a small space sheet, `_search` (3 real images per class), the run's metrics_log.csv rows and its
Optuna study, and a sampler stuck on one model. Not a test file: no test file imports another
(CONTRIBUTING.md, "Test layout").
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from bcpareto.cli import cli

from .conftest import BLOOD_CELLS

FAST = """\
image_size = 32
epochs = 1
batch_size = 8
edge_metrics = false
"""
# Small nets that build at 32 px: 1-2 blocks of 4 or 8 filters, conv or separable.
SPACE = [
    ["name", "low", "high", "log", "choices"],
    ["conv_blocks", 1, 2],
    ["base_filters", None, None, None, "[4, 8]"],
    ["kernel", None, None, None, "[3]"],
    ["dense_layers", None, None, None, "[0]"],
    ["block", None, None, None, "[conv, separable]"],
]


def _preset(tmp_path: Path, text: str = FAST) -> Path:
    path = tmp_path / "fast.toml"
    path.write_text(text)
    return path


def _search(tmp_path: Path, sheet: Path, *args: str, preset: str | None = None) -> Any:
    return CliRunner().invoke(cli, [
        "search", str(sheet), "--config", preset or str(_preset(tmp_path)), "--limit-per-class", "3",
        "--data-dir", str(BLOOD_CELLS), "--run-dir", str(tmp_path / "run"), *args,
    ])


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics_log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def stuck_sampler() -> Any:
    """A sampler that always proposes the same model (each parameter's first choice or low
    bound): a converged TPE over a small space, taken to the limit."""
    import optuna

    class Stuck(optuna.samplers.BaseSampler):
        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return {}

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
            return {}

        def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
            return distribution.choices[0] if hasattr(distribution, "choices") else distribution.low

    return Stuck()


def _study(run_dir: Path) -> Any:
    import optuna

    storage = f"sqlite:///{run_dir / 'bcpareto.db'}"
    [name] = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)

