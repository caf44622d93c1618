"""Transient failures stay transient (issue 29, item 6): a full disk while a model is saved stops
the search with a message, marks that model as the environment's failure, and a plain rerun
trains it; a model's own failure (NaN loss, too big) stays failed."""

from __future__ import annotations

import errno
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from bcpareto import search
from bcpareto.cli import cli

from .conftest import BLOOD_CELLS, needs_data


@pytest.mark.parametrize("exc, expected", [
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (OSError(errno.EROFS, "Read-only file system"), True),
    (RuntimeError("wrapped"), False),
    (MemoryError(), False),
    (OSError(errno.ENOENT, "No such file"), False),
])
def test_environment_faults_are_told_apart_from_a_models_own(exc: BaseException, expected: bool) -> None:
    assert search.environment_fault(exc) is expected
    try:
        raise RuntimeError("saving failed") from exc
    except RuntimeError as chained:
        assert search.environment_fault(chained) is expected  # found through the cause


def test_tensorflows_disk_full_counts_but_its_out_of_memory_does_not() -> None:
    ResourceExhaustedError = type("ResourceExhaustedError", (Exception,), {})  # noqa: N806 - TF's name
    assert search.environment_fault(ResourceExhaustedError("write failed: No space left on device"))
    assert not search.environment_fault(ResourceExhaustedError("OOM when allocating tensor"))


@needs_data
@pytest.mark.train
def test_a_full_disk_stops_the_search_and_a_rerun_trains_the_model(
    tmp_path: Path, tiny_grid: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["search", str(tiny_grid), "--config", "quick", "--data-dir", str(BLOOD_CELLS),
            "--limit-per-class", "6", "--epochs", "1", "--image-size", "32", "--no-edge"]
    real = search.save_record
    calls = []

    def full_disk(*a, **k):
        calls.append(1)
        if len(calls) == 2:  # the second model's record: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(search, "save_record", full_disk)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert "The machine, not the model, failed" in result.output and "run the same command again" in result.output
    assert "Traceback" not in result.output
    assert len(pd.read_csv(tmp_path / "metrics_log.csv")) == 1  # the first model is kept

    monkeypatch.setattr(search, "save_record", real)  # space freed
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "Done: 2/2 grid points completed" in again.output and "1 trained now" in again.output
    assert sorted(pd.read_csv(tmp_path / "metrics_log.csv")["grid_id"]) == [0, 1]
