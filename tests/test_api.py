"""The public API: `import bcpareto` stays light, and docs/guide/api.md's example runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bcpareto

from .conftest import ROOT, needs_data

GUIDE = ROOT / "docs" / "guide" / "api.md"


def test_the_api_is_what_the_package_exports() -> None:
    import bcpareto.search  # noqa: F401 - a submodule import must not shadow an API function

    assert set(bcpareto.__all__) == {"compare", "front", "judge", "load_sheet", "plot", "read_run", "run_search",
                                     "__version__"}
    assert all(callable(getattr(bcpareto, name)) for name in bcpareto.__all__ if name != "__version__")


def test_importing_bcpareto_loads_neither_tensorflow_nor_pandas_nor_matplotlib() -> None:
    out = subprocess.run([sys.executable, "-c", "import sys, bcpareto; print(sorted(m for m in "
                          "('tensorflow', 'keras', 'pandas', 'matplotlib', 'optuna') if m in sys.modules))"],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.stdout.strip() == "[]"


def test_front_of_a_small_table() -> None:
    mask = bcpareto.front([[1.0, 0.8], [2.0, 0.9], [3.0, 0.85]], directions=["min", "max"])
    assert mask.tolist() == [True, True, False]


@needs_data
@pytest.mark.train
def test_the_guides_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    (code,) = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    for name in ("hyper_parameters.xlsx", "docs"):  # the example's paths are the repository's
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(GUIDE), "exec"), {"__name__": "__example__"})
    out = capsys.readouterr().out
    assert "6 of 6 fold models" in out and "A - B =" in out
    assert (tmp_path / "api-example" / "pareto_outputs" / "pareto_front.png").is_file()
