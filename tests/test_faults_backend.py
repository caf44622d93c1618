"""Issue 29, KERAS_BACKEND: bcpareto reads ' TensorFlow ' as tensorflow, and so must Keras (which
reads the variable itself, as written, when it loads) and the worker processes; an unknown value
exits 2 naming KERAS_BACKEND and the backends, before Keras loads."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bcpareto
from bcpareto.backends import BACKENDS, check_backend

from .conftest import write_sheet

SRC = str(Path(bcpareto.__file__).resolve().parents[1])
TINY = [["dense_layers", "neurons", "filters", "kernel_sizes"], ["[1]", "[[8]]", "[[4, 8]]", "[3, 3]"]]


def _bcpareto(cwd: Path, *args: str, backend: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": backend}
    return subprocess.run([sys.executable, "-m", "bcpareto", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("raw", [" TensorFlow ", "TENSORFLOW", "tensorflow\t", ""])
def test_the_checked_name_is_written_back_for_keras_and_the_workers(
    monkeypatch: pytest.MonkeyPatch, raw: str,
) -> None:
    monkeypatch.setenv("KERAS_BACKEND", raw)
    assert check_backend() == "tensorflow"
    assert os.environ["KERAS_BACKEND"] == "tensorflow"
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ['KERAS_BACKEND'])"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == "tensorflow"  # what a worker of --workers N inherits


def test_an_unset_variable_stays_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert check_backend() == "tensorflow"
    assert "KERAS_BACKEND" not in os.environ


@pytest.mark.slow  # starts a bcpareto process
@pytest.mark.parametrize("raw", ["tensorflow2", "jaxx", " pytorch "])
def test_an_unknown_backend_exits_2_naming_the_variable_and_the_backends(tmp_path: Path, raw: str) -> None:
    write_sheet(tmp_path / "tiny.xlsx", TINY)
    result = _bcpareto(tmp_path, "grid", "tiny.xlsx", "--h5", "--image-size", "32", backend=raw)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"KERAS_BACKEND={raw!r}" in result.stderr and ", ".join(BACKENDS) in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # imports TensorFlow in a new process (builds two tiny models, no training)
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="tensorflow not installed")
def test_a_spaced_capitalised_backend_builds_models_in_a_real_process(tmp_path: Path) -> None:
    """Before the fix, bcpareto accepted ' TensorFlow ' and Keras then raised 'Unable to import
    backend' on the first model (in a search: every point recorded failed)."""
    write_sheet(tmp_path / "tiny.xlsx", TINY)
    result = _bcpareto(tmp_path, "grid", "tiny.xlsx", "--h5", "--image-size", "32", backend=" TensorFlow ")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Unable to import backend" not in result.stderr
    lines = result.stdout.splitlines()
    assert "h5_mb" in lines[1] and len(lines) == 3, result.stdout  # header + one row per point
