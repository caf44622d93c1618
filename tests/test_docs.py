"""The documentation stays true: README's commands run, its links and every docs/ path resolve.

Cheap checks, no training: the README's test command is `.ci/run`'s line, its command table names
exactly the CLI's commands, its "see a front" commands work on the shipped logs, and every
relative link and `docs/...` path in the Markdown, benchmarks, experiments and sources points at
a file, and so does every script or page of benchmarks/, experiments/ and tools/ that they name.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bcpareto.cli import cli

from .conftest import ROOT

README = ROOT / "README.md"
SCRIPT_FOLDERS = ("benchmarks", "experiments", "tools")  # scripts run from the checkout, not the package
MARKDOWN = sorted([
    README, ROOT / "CONTRIBUTING.md",
    *(ROOT / "docs").rglob("*.md"),
    *[page for folder in SCRIPT_FOLDERS for page in (ROOT / folder).glob("*.md")],
])
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
DOCS_PATH = re.compile(r"(?<![\w/.])docs/[\w./*\[\]-]+\.(?:csv|png|json|md|svg)")


def _readme_lines() -> list[str]:
    return README.read_text().splitlines()


def test_readme_is_short_and_self_contained() -> None:
    lines = _readme_lines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; the guide is docs/guide/"
    assert "../shared" not in README.read_text()


def test_readme_test_command_is_ci_runs_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    marker = next(i for i, line in enumerate(ci) if "README's test command, verbatim" in line)
    command = ci[marker + 1]
    assert f"    {command}" in _readme_lines(), f"README.md lacks .ci/run's test command: {command}"


def _cli_commands(group: click.Group = cli, prefix: str = "") -> set[str]:
    names = set()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            names |= _cli_commands(command, f"{prefix}{name} ")
        else:
            names.add(f"{prefix}{name}")
    return names


def test_readme_command_table_names_every_command() -> None:
    rows = [line for line in _readme_lines() if line.startswith("| `bcpareto ")]
    documented = set()
    for row in rows:
        words = row.split("`")[1].split()[1:]
        documented.add(" ".join(w for w in words[:2] if re.fullmatch(r"[a-z][a-z-]*", w)))
    documented = {name if name in _cli_commands() else name.split()[0] for name in documented}
    assert documented == _cli_commands()


def _readme_plot_commands() -> list[list[str]]:
    return [shlex.split(line.strip())[1:] for line in _readme_lines()
            if line.startswith("    bcpareto plot docs/")]


@pytest.mark.parametrize("args", _readme_plot_commands(), ids=lambda a: " ".join(a[1:]) or a[0])
def test_readme_front_commands_work_on_shipped_logs(args: list[str], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Hypervolume" in result.output
    assert (tmp_path / "pareto_front.png").is_file()


def test_readme_has_front_commands() -> None:
    assert _readme_plot_commands(), "README.md: no `bcpareto plot docs/...` command to try"


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links to nothing: {broken}"


def _docs_path_files() -> list[Path]:
    sources = [*[script for folder in SCRIPT_FOLDERS for script in (ROOT / folder).glob("*.py")],
               *(ROOT / "src" / "bcpareto").glob("*.py")]
    return sorted([*MARKDOWN, *sources])


@pytest.mark.parametrize("source", _docs_path_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_paths_exist(source: Path) -> None:
    """A `docs/...` path in text (a command, a figure) names a file, or a glob that matches one."""
    missing = [path for path in DOCS_PATH.findall(source.read_text())
               if not any(ROOT.glob(path)) and not (ROOT / path).exists()]
    assert not missing, f"{source.relative_to(ROOT)} names docs paths that do not exist: {missing}"


SCRIPT_PATH = re.compile(r"(?<![\w/.])(?:benchmarks|experiments|tools)/[\w/-]+\.(?:py|md)")


@pytest.mark.parametrize("source", [*_docs_path_files(), *sorted((ROOT / "configs").glob("*.toml")),
                                    *sorted((ROOT / "tests").glob("*.py"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_script_paths_exist(source: Path) -> None:
    """A script or page of benchmarks/, experiments/ or tools/ named in text exists: what moves
    between these folders (`git mv`) leaves no stale path behind."""
    missing = sorted({path for path in SCRIPT_PATH.findall(source.read_text()) if not (ROOT / path).exists()})
    assert not missing, f"{source.relative_to(ROOT)} names scripts that do not exist: {missing}"
