"""Packaging: what pyproject.toml ships (the wheel itself is built and run by .ci/run)."""

from __future__ import annotations

import tomllib

from .conftest import ROOT


def test_every_subpackage_is_listed_in_pyproject() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(path.parent.relative_to(ROOT / "src").parts)
        for path in (ROOT / "src" / "bcpareto").rglob("__init__.py")
    }
    assert found | {"bcpareto.configs"} == set(setuptools["packages"])
    assert setuptools["package-dir"]["bcpareto.configs"] == "configs"


def test_every_preset_and_grid_sheet_is_package_data() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["bcpareto.configs"]
    shipped = {p.name for pattern in patterns for p in (ROOT / "configs").glob(pattern)}
    data = {p.name for p in (ROOT / "configs").iterdir() if p.is_file() and p.suffix != ".py"}
    assert data and shipped == data
