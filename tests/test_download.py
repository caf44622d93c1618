"""`bcpareto data download` when the data set is already there: exit 0, no Kaggle.

A tiny fake data set (TRAIN and TEST, the four class folders, a few small JPEGs written with
Pillow) stands for the real one; kagglehub's download function is replaced by one that fails the
test if called, so "without contacting Kaggle" is checked, not assumed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from bcpareto.audit import audit_dataset
from bcpareto.cli import cli
from bcpareto.dataset import CLASSES
from bcpareto.download import present_dataset

PER_CLASS = 2


def _fake_dataset(root: Path) -> Path:
    """TRAIN/ and TEST/ with one folder per class, each holding PER_CLASS distinct small JPEGs."""
    for si, split in enumerate(("TRAIN", "TEST")):
        for ci, cls in enumerate(CLASSES):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(PER_CLASS):
                colour = (40 + ci * 50, 30 + si * 90, 20 + i * 60)
                Image.new("RGB", (32, 24), colour).save(folder / f"{cls}_{i}.jpeg", format="JPEG")
    return root


@pytest.fixture
def no_kaggle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder, with no BCPARETO_DATA, and fail on any call to kagglehub."""
    import kagglehub

    def refuse(*args: object, **kwargs: object) -> str:
        pytest.fail(f"kagglehub.dataset_download{args} was called although the data set is present")

    monkeypatch.setattr(kagglehub, "dataset_download", refuse)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub-cache"))
    monkeypatch.delenv("BCPARETO_DATA", raising=False)  # CI sets it to the real data set
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _download(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["data", "download", *args])
    bug = (AttributeError, TypeError, KeyError, NameError)
    assert not isinstance(result.exception, bug), result.output
    return result.exit_code, result.output


def test_fake_dataset_is_a_usable_data_set(tmp_path: Path) -> None:
    """The fake layout passes the same audit as the real data set, so the tests below mean it."""
    report = audit_dataset(_fake_dataset(tmp_path / "bc"))
    assert report.usable, report.problems


def test_data_at_default_dest_needs_no_download(no_kaggle: Path) -> None:
    _fake_dataset(no_kaggle / "data" / "blood-cells")
    code, output = _download()
    assert code == 0, output
    assert f"Data set ready: {Path('data/blood-cells')}" in output
    assert "BCPARETO_DATA=" in output


def test_data_at_bcpareto_data_needs_no_download(
    no_kaggle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = _fake_dataset(tmp_path / "elsewhere" / "images")
    monkeypatch.setenv("BCPARETO_DATA", str(images))
    code, output = _download()
    assert code == 0, output
    assert str(images) in output
    assert not (no_kaggle / "data").exists()  # nothing linked or copied


def test_data_at_explicit_dest_needs_no_download(no_kaggle: Path, tmp_path: Path) -> None:
    images = _fake_dataset(tmp_path / "mine")
    code, output = _download("--dest", str(images))
    assert code == 0, output
    assert str(images) in output


def test_link_to_data_at_dest_needs_no_download(no_kaggle: Path, tmp_path: Path) -> None:
    images = _fake_dataset(tmp_path / "images")
    dest = no_kaggle / "data" / "blood-cells"
    dest.parent.mkdir()
    dest.symlink_to(images, target_is_directory=True)
    code, output = _download()
    assert code == 0, output
    assert dest.is_symlink() and dest.resolve() == images.resolve()


def test_dest_that_is_not_a_data_set_is_still_refused(no_kaggle: Path) -> None:
    dest = no_kaggle / "data" / "blood-cells"
    (dest / "TRAIN").mkdir(parents=True)
    (dest / "mine.txt").write_text("keep me")
    code, output = _download()
    assert code == 1, output
    assert f"{Path('data/blood-cells')}: already exists" in output
    assert sorted(p.name for p in dest.iterdir()) == ["TRAIN", "mine.txt"]


def test_broken_bcpareto_data_still_downloads(
    no_kaggle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BCPARETO_DATA that is not a data set does not count: kagglehub is asked (offline here)."""
    import kagglehub
    import requests

    images = _fake_dataset(tmp_path / "images")
    for path in (images / "TEST" / "MONOCYTE").iterdir():
        path.unlink()
    monkeypatch.setenv("BCPARETO_DATA", str(images))
    calls: list[str] = []

    def offline(handle: str, *args: object, **kwargs: object) -> str:
        calls.append(handle)
        raise requests.ConnectionError("no network in this test")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    code, output = _download()
    assert code == 1, output
    assert calls and "cannot reach Kaggle" in output and "Manual steps" in output
    assert not (no_kaggle / "data").exists()


@pytest.mark.parametrize(
    "damage",
    ["no TEST", "no class folder", "empty class folder", "a file, not a folder"],
)
def test_present_dataset_rejects_incomplete_layouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    monkeypatch.delenv("BCPARETO_DATA", raising=False)
    root = _fake_dataset(tmp_path / "bc")
    assert present_dataset(root) == root
    if damage == "no TEST":
        for path in sorted((root / "TEST").rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        (root / "TEST").rmdir()
    elif damage == "no class folder":
        for path in (root / "TRAIN" / "LYMPHOCYTE").iterdir():
            path.unlink()
        (root / "TRAIN" / "LYMPHOCYTE").rmdir()
    elif damage == "empty class folder":
        for path in (root / "TRAIN" / "EOSINOPHIL").iterdir():
            path.unlink()
    else:
        root = tmp_path / "a-file"
        root.write_text("not a folder")
    assert present_dataset(root) is None


def test_present_dataset_prefers_dest_then_bcpareto_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = _fake_dataset(tmp_path / "dest")
    other = _fake_dataset(tmp_path / "other")
    monkeypatch.setenv("BCPARETO_DATA", str(other))
    assert present_dataset(dest) == dest
    assert present_dataset(tmp_path / "missing") == other
