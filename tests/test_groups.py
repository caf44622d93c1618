"""Source groups: transformed copies of one real smear group together, different smears do not."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BCPARETO_DATA") or ROOT.parent / "shared" / "blood-cells")
needs_data = pytest.mark.skipif(not (DATA / "TRAIN").is_dir(), reason=f"real data set not at {DATA}")
cv2 = pytest.importorskip("cv2")

from bcpareto import groups  # noqa: E402

# Real TRAIN frames from four different source smears per class (checked by eye and by a
# full-data-set grouping); the first of each class is the one that gets copied.
SMEARS = {
    "EOSINOPHIL": ["_0_6149.jpeg", "_0_4747.jpeg", "_0_4574.jpeg", "_0_4431.jpeg"],
    "NEUTROPHIL": ["_100_5599.jpeg", "_100_9302.jpeg", "_108_9369.jpeg", "_110_2718.jpeg"],
}


def _rotate(image: np.ndarray, degrees: float, *, scale: float = 1.0) -> np.ndarray:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, scale)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Shift with black fill: the frame edge cuts part of the picture off."""
    h, w = image.shape[:2]
    return cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), borderValue=0)


COPIES = {  # the augmentations of the data set: turns, flips, shifts, small rotations, zoom
    "turn90": lambda im: np.ascontiguousarray(np.rot90(im)),
    "turn180": lambda im: np.ascontiguousarray(im[::-1, ::-1]),
    "fliplr": lambda im: np.ascontiguousarray(im[:, ::-1]),
    "flipud_rot12": lambda im: _rotate(np.ascontiguousarray(im[::-1]), 12),
    "shift": lambda im: _shift(im, 60, -35),
    "rot17_zoom": lambda im: _rotate(im, -17, scale=1.1),
}


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path


def _layout(root: Path) -> dict[str, dict[str, list[Path]]]:
    return {split: {c.name: sorted(c.glob("*.jpeg")) for c in sorted((root / split).iterdir())}
            for split in ("TRAIN", "TEST") if (root / split).is_dir()}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("BCPARETO_CACHE", str(folder))
    return folder


@pytest.fixture
def augmented(tmp_path: Path) -> Path:
    """Per class: the first smear and 6 transformed copies (4 in TRAIN, 2 in TEST, one of them
    byte-identical to the TRAIN original), and 3 other smears (one of them in TEST)."""
    root = tmp_path / "data"
    for cls, names in SMEARS.items():
        original = cv2.imread(str(DATA / "TRAIN" / cls / names[0]))
        _write(root / "TRAIN" / cls / "orig.jpeg", original)
        for i, (name, copy) in enumerate(COPIES.items()):
            _write(root / ("TRAIN" if i < 4 else "TEST") / cls / f"copy_{name}.jpeg", copy(original))
        shutil.copyfile(root / "TRAIN" / cls / "orig.jpeg", root / "TEST" / cls / "same_bytes.jpeg")
        for j, name in enumerate(names[1:]):
            split = "TEST" if j == 0 else "TRAIN"
            shutil.copyfile(DATA / "TRAIN" / cls / name, root / split / cls / f"other{j}.jpeg")
    return root


@needs_data
def test_copies_group_together_and_other_smears_do_not(augmented: Path, cache: Path) -> None:
    files = _layout(augmented)
    result = groups.find_groups(files)
    for cls in SMEARS:
        copies = sorted((augmented / "TRAIN" / cls).glob("copy_*")) + sorted((augmented / "TEST" / cls).glob("copy_*"))
        family = {result.group_of(p) for p in [augmented / "TRAIN" / cls / "orig.jpeg", *copies,
                                                augmented / "TEST" / cls / "same_bytes.jpeg"]}
        assert len(family) == 1, f"{cls}: the copies of one smear fell into {sorted(family)}"
        others = [augmented / s / cls / f"other{j}.jpeg" for j, s in enumerate(["TEST", "TRAIN", "TRAIN"])]
        other_groups = [result.group_of(p) for p in others]
        assert len(set(other_groups)) == 3 and family.isdisjoint(other_groups), (cls, family, other_groups)
        assert all(g.startswith(f"{cls}-") for g in family | set(other_groups))
    summary = result.summary()
    assert summary["grouping_found_nothing"] is False
    assert summary["groups"] == 2 * 4 and summary["singletons"] == 2 * 3
    # per class: 2 TEST copies + 1 byte-identical TEST file share the original's group
    assert summary["test_sharing_train"] == 2 * 3
    assert summary["test_sharing_train_byte_identical"] == 2 * 1
    assert summary["test_sharing_train_beyond_identical"] == 2 * 2
    eos = summary["per_class"]["EOSINOPHIL"]
    assert eos["group_size"] == {"min": 1, "median": 1.0, "max": 8}


@needs_data
def test_unrelated_images_are_each_their_own_group_and_the_summary_says_so(tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "plain"
    for cls, names in SMEARS.items():
        for i, name in enumerate(names):
            dest = root / ("TRAIN" if i % 2 == 0 else "TEST") / cls / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(DATA / "TRAIN" / cls / name, dest)
    result = groups.find_groups(_layout(root))
    summary = result.summary()
    assert summary["groups"] == summary["images"] == 8
    assert summary["grouping_found_nothing"] is True
    assert "every image is its own group" in summary["message"]
    assert summary["test_sharing_train"] == 0


def test_an_unreadable_file_is_its_own_group(tmp_path: Path, cache: Path) -> None:
    bad = tmp_path / "d" / "TRAIN" / "EOSINOPHIL" / "bad.jpeg"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a jpeg")
    result = groups.find_groups({"TRAIN": {"EOSINOPHIL": [bad]}})
    assert result.group_of(bad) == "EOSINOPHIL-0000"
    assert result.summary()["grouping_found_nothing"] is True


@needs_data
def test_results_and_features_are_cached(augmented: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_extract = groups._extract

    def counting(path: str) -> groups._Features:
        calls.append(path)
        return real_extract(path)

    monkeypatch.setattr(groups, "_extract", counting)
    files = _layout(augmented)
    n_files = sum(len(p) for by_class in files.values() for p in by_class.values())
    first = groups.find_groups(files)
    assert len(calls) == n_files

    again = groups.find_groups(files)  # whole result from the cache
    assert len(calls) == n_files and again.group == first.group

    subset = {"TRAIN": {cls: paths[:3] for cls, paths in files["TRAIN"].items()}}
    groups.find_groups(subset)  # a new file list: grouped anew, every feature from the cache
    assert len(calls) == n_files

    new = _write(augmented / "TRAIN" / "EOSINOPHIL" / "copy_new.jpeg",
                 _rotate(cv2.imread(str(augmented / "TRAIN" / "EOSINOPHIL" / "orig.jpeg")), 25))
    grown = groups.find_groups(_layout(augmented))  # one new file: one new extraction
    assert calls[n_files:] == [str(new.resolve())]
    assert grown.group_of(new) == grown.group_of(augmented / "TRAIN" / "EOSINOPHIL" / "orig.jpeg")


@needs_data
def test_contact_sheet_writes_one_row_per_group(augmented: Path, cache: Path, tmp_path: Path) -> None:
    from PIL import Image

    result = groups.find_groups(_layout(augmented))
    out = groups.contact_sheet(result, tmp_path / "sheet.png", n_groups=3, per_group=4, thumb=(80, 60))
    with Image.open(out) as sheet:
        assert sheet.size == (150 + 4 * 80, 3 * (60 + 4))


@needs_data
def test_data_check_reports_the_groups_and_draws_a_contact_sheet(
    augmented: Path, cache: Path, tmp_path: Path
) -> None:
    import json

    from click.testing import CliRunner

    from bcpareto.cli import cli

    for cls in ("LYMPHOCYTE", "MONOCYTE"):  # data check wants all four classes in both splits
        for split in ("TRAIN", "TEST"):
            (augmented / split / cls).mkdir(parents=True)
            shutil.copyfile(sorted((DATA / split / cls).iterdir())[0], augmented / split / cls / "a.jpeg")
    sheet = tmp_path / "sheet.png"
    result = CliRunner().invoke(cli, ["data", "check", str(augmented), "--json", "--contact-sheet", str(sheet)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)["source_groups"]
    for cls in SMEARS:  # two transformed copies and one byte-identical copy of a TRAIN smear
        assert summary["per_class"][cls]["test_sharing_train"] == 3
        assert summary["per_class"][cls]["test_sharing_train_byte_identical"] == 1
    assert sheet.is_file() and sheet.stat().st_size > 0
    table = CliRunner().invoke(cli, ["data", "check", str(augmented)]).output
    assert "Source groups" in table and "TEST sharing a smear with TRAIN" in table
    assert "Source groups" not in CliRunner().invoke(cli, ["data", "check", str(augmented), "--no-groups"]).output
