"""Data audit and download: bcpareto.audit and the `bcpareto data` commands.

Every test works on copies in tmp dirs: a few real images per class and split from the real data
set (BCPARETO_DATA, else ../shared/blood-cells; generated JPEGs where it is missing) plus bad
files made here.
Download tests run the real kagglehub code with no network: its cache is a tmp dir laid out the
way kagglehub lays it out, and HTTPS goes through a proxy on a 127.0.0.1 port nobody listens on.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from bcpareto.audit import audit_dataset, render_table
from bcpareto.cli import cli
from bcpareto.dataset import CLASSES, cross_split_duplicates, file_digests, find_split
from bcpareto.download import find_images_dir
from bcpareto.errors import DataError

from .conftest import BLOOD_CELLS as REAL_DATA
from .conftest import needs_data

SPLITS = ("TRAIN", "TEST", "TEST_SIMPLE")
PER_CLASS = {"TRAIN": 3, "TEST": 2, "TEST_SIMPLE": 1}


def _real_images(split: str, cls: str) -> Iterator[Path]:
    folder = REAL_DATA / split / cls
    return iter(sorted(folder.iterdir())) if folder.is_dir() else iter(())


def _make_dataset(root: Path) -> Path:
    """A tiny data set with no duplicates: real images where available, else generated ones."""
    seen: set[str] = set()
    for split in SPLITS:
        for ci, cls in enumerate(CLASSES):
            folder = root / split / cls
            folder.mkdir(parents=True)
            sources = _real_images(split, cls)
            for i in range(PER_CLASS[split]):
                for src in sources:
                    data = src.read_bytes()
                    if hashlib.sha256(data).hexdigest() not in seen:
                        break
                else:  # no real copy here: a generated image, unique by its colour
                    image = Image.new("RGB", (32, 24), (ci * 60, SPLITS.index(split) * 80, i * 40))
                    image.save(folder / f"_gen_{i}.jpeg", format="JPEG")
                    continue
                seen.add(hashlib.sha256(data).hexdigest())
                (folder / src.name).write_bytes(data)
    return root


def _tree(root: Path) -> list[tuple[str, int]]:
    return sorted((p.relative_to(root).as_posix(), p.lstat().st_mtime_ns) for p in root.rglob("*"))


def _first(folder: Path) -> Path:
    return sorted(folder.iterdir())[0]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return _make_dataset(tmp_path / "blood-cells")


def _check(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["data", "check", *args])
    assert not isinstance(result.exception, (AttributeError, TypeError, KeyError)), result.output
    return result.exit_code, result.output


# --------------------------------------------------------------------------- clean data


def test_clean_subset_is_usable(dataset: Path) -> None:
    before = _tree(dataset)
    report = audit_dataset(dataset)
    assert report.usable, report.problems
    assert {s.name: s.n_images for s in report.splits} == {"TRAIN": 12, "TEST": 8, "TEST_SIMPLE": 4}
    assert all(d.total == 0 for d in report.duplicates)
    code, output = _check(str(dataset))
    assert code == 0, output
    assert "Result: usable" in output and "TRAIN" in output
    code, output = _check(str(dataset), "--json")
    assert code == 0, output
    assert json.loads(output)["usable"] is True
    assert _tree(dataset) == before  # the audit writes nothing


def test_find_split_returns_sorted_images_per_class(dataset: Path) -> None:
    (dataset / "TRAIN" / "EOSINOPHIL" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (dataset / "TRAIN" / "EOSINOPHIL" / "Thumbs.db").write_bytes(b"x")
    split = find_split(dataset / "TRAIN")
    assert list(split) == list(CLASSES)
    for cls, paths in split.items():
        assert len(paths) == 3 and paths == sorted(paths)
        assert all(p.parent.name == cls and p.suffix == ".jpeg" for p in paths)


def test_file_digests_match_for_identical_bytes(dataset: Path) -> None:
    a = _first(dataset / "TRAIN" / "EOSINOPHIL")
    b = dataset / "TEST" / "MONOCYTE" / "copy.jpeg"
    shutil.copyfile(a, b)
    c = _first(dataset / "TRAIN" / "LYMPHOCYTE")
    digests = file_digests([a, b, c], workers=2)
    assert digests[a] == digests[b] != digests[c]


# --------------------------------------------------------------------------- bad files and duplicates


@pytest.fixture
def messy(dataset: Path) -> Path:
    """The tiny data set plus one of each bad file and duplicates made here."""
    train, test = dataset / "TRAIN", dataset / "TEST"
    good = _first(train / "EOSINOPHIL").read_bytes()
    (train / "EOSINOPHIL" / "truncated.jpeg").write_bytes(good[: len(good) // 2])
    (train / "LYMPHOCYTE" / "not_an_image.jpeg").write_text("a CSV export, renamed\n1,2,3\n")
    (train / "EOSINOPHIL" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    with Image.open(_first(train / "MONOCYTE")) as image:
        image.save(train / "MONOCYTE" / "as_png.PNG", format="PNG")
    Image.new("CMYK", (320, 240), (0, 128, 0, 0)).save(test / "NEUTROPHIL" / "cmyk.jpeg", format="JPEG")
    Image.new("L", (320, 240), 128).save(test / "EOSINOPHIL" / "gray.jpeg", format="JPEG")
    Image.new("RGB", (5, 3), 255).save(test / "LYMPHOCYTE" / "tiny.jpg", format="JPEG")
    # duplicates: TRAIN -> TEST same class, TRAIN -> TEST other class, and within TRAIN
    shutil.copyfile(_first(train / "NEUTROPHIL"), test / "NEUTROPHIL" / "zz_dup_same.jpeg")
    shutil.copyfile(_first(train / "LYMPHOCYTE"), test / "MONOCYTE" / "zz_dup_cross.jpeg")
    shutil.copyfile(_first(train / "MONOCYTE"), train / "MONOCYTE" / "zz_dup_within.jpeg")
    return dataset


def test_audit_finds_bad_files_modes_and_duplicates(messy: Path) -> None:
    report = audit_dataset(messy, workers=2)
    train, test = report.split("TRAIN"), report.split("TEST")
    assert train.truncated == ("TRAIN/EOSINOPHIL/truncated.jpeg",)
    assert train.non_image == ("TRAIN/LYMPHOCYTE/not_an_image.jpeg",)
    assert train.unreadable == () and test.truncated == ()
    assert train.stray == ("TRAIN/EOSINOPHIL/.DS_Store",)
    assert train.images == {"EOSINOPHIL": 4, "LYMPHOCYTE": 4, "MONOCYTE": 5, "NEUTROPHIL": 3}
    assert train.formats.get("PNG") == 1
    assert test.modes.get("CMYK") == 1 and test.modes.get("L") == 1
    assert test.sizes.get("5x3") == 1 and test.unreadable == ()

    assert not report.usable
    assert len(report.problems) == 2
    assert any(p.startswith(str(messy / "TRAIN/EOSINOPHIL/truncated.jpeg")) for p in report.problems)
    assert any("not_an_image.jpeg: non-image" in p for p in report.problems)
    assert any("not RGB (CMYK 1, L 1)" in w for w in report.warnings)

    across = report.duplicate("TRAIN", "TEST")
    assert across is not None
    assert across.counts == {"EOSINOPHIL": 0, "LYMPHOCYTE": 0, "MONOCYTE": 1, "NEUTROPHIL": 1}
    assert across.cross_class == 1
    assert across.cross_class_pairs[0][0] == "TEST/MONOCYTE/zz_dup_cross.jpeg"
    within = report.duplicate("TRAIN", "TRAIN")
    assert within is not None and within.files == ("TRAIN/MONOCYTE/zz_dup_within.jpeg",)
    assert within.cross_class == 0

    # JSON round trip holds the same facts
    data = json.loads(json.dumps(report.to_dict()))
    assert data["usable"] is False
    assert data["splits"]["TRAIN"]["truncated"] == ["TRAIN/EOSINOPHIL/truncated.jpeg"]


def test_cross_split_duplicates_are_the_test_copies(messy: Path) -> None:
    dups = cross_split_duplicates(find_split(messy / "TRAIN"), find_split(messy / "TEST"), workers=2)
    assert dups == {messy / "TEST/NEUTROPHIL/zz_dup_same.jpeg", messy / "TEST/MONOCYTE/zz_dup_cross.jpeg"}


def test_check_cli_on_bad_files_exits_1_and_names_them(messy: Path) -> None:
    before = _tree(messy)
    code, output = _check(str(messy))
    assert code == 1, output
    assert "truncated.jpeg: truncated" in output
    assert "not_an_image.jpeg: non-image" in output
    assert "NOT usable: 2 problem(s)" in output
    assert "conflicting labels" in output  # the cross-class duplicate
    code, output = _check(str(messy), "--json")
    assert code == 1
    assert json.loads(output)["duplicates"][0]["first"] == "TRAIN"
    assert _tree(messy) == before


def test_render_table_lists_duplicate_counts(messy: Path) -> None:
    table = render_table(audit_dataset(messy))
    row = next(line for line in table.splitlines() if line.startswith("TEST in TRAIN"))
    assert row.split() == ["TEST", "in", "TRAIN", "0", "0", "1", "1", "2", "1"]


# --------------------------------------------------------------------------- bad folders


def _remove_class(root: Path) -> Path:
    shutil.rmtree(root / "TEST" / "MONOCYTE")
    return root / "TEST" / "MONOCYTE"


def _empty_class(root: Path) -> Path:
    folder = root / "TRAIN" / "LYMPHOCYTE"
    for p in folder.iterdir():
        p.unlink()
    (folder / ".DS_Store").write_bytes(b"x")  # stray files do not count as images
    return folder


def _lowercase_class(root: Path) -> Path:
    (root / "TRAIN" / "EOSINOPHIL").rename(root / "TRAIN" / "eosinophil")
    return root / "TRAIN" / "EOSINOPHIL"


def _remove_split(root: Path) -> Path:
    shutil.rmtree(root / "TEST")
    return root / "TEST"


@pytest.mark.parametrize(
    "damage, expected",
    [
        (_remove_class, "class folder missing"),
        (_empty_class, "class folder holds no images"),
        (_lowercase_class, "found 'eosinophil'"),
        (_remove_split, "split folder missing"),
    ],
)
def test_check_cli_names_the_bad_folder(dataset: Path, damage, expected: str) -> None:
    folder = damage(dataset)
    before = _tree(dataset)
    code, output = _check(str(dataset))
    assert code == 1, output
    assert f"{folder}: " in output and expected in output, output
    assert _tree(dataset) == before


@pytest.mark.parametrize("damage", [_remove_class, _empty_class, _lowercase_class])
def test_find_split_raises_naming_the_class_folder(dataset: Path, damage) -> None:
    folder = damage(dataset)
    with pytest.raises(DataError, match=str(folder)):
        find_split(folder.parent)


def test_find_split_raises_for_missing_or_file_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"{tmp_path / 'TRAIN'}: split folder not found"):
        find_split(tmp_path / "TRAIN")
    (tmp_path / "TEST").write_text("")
    with pytest.raises(DataError, match="not a folder"):
        find_split(tmp_path / "TEST")


def _not_a_data_set(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "holiday").mkdir()
    (tmp_path / "holiday" / "beach.jpeg").write_bytes(b"x")
    return tmp_path, "not a blood-cell data set"


def _split_instead_of_root(tmp_path: Path) -> tuple[Path, str]:
    root = _make_dataset(tmp_path / "bc")
    return root / "TRAIN", f"pass its parent {root}"


def _parent_of_images(tmp_path: Path) -> tuple[Path, str]:
    root = _make_dataset(tmp_path / "dataset2-master" / "dataset2-master" / "images")
    return tmp_path, f"did you mean {root}"


def _missing_dir(tmp_path: Path) -> tuple[Path, str]:
    return tmp_path / "nowhere", "data directory not found"


def _a_file(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "file.txt").write_text("x")
    return tmp_path / "file.txt", "not a folder"


@pytest.mark.parametrize(
    "make", [_not_a_data_set, _split_instead_of_root, _parent_of_images, _missing_dir, _a_file]
)
def test_check_cli_exits_2_when_dir_is_not_a_data_set(tmp_path: Path, make) -> None:
    root, expected = make(tmp_path)
    before = _tree(tmp_path)
    code, output = _check(str(root))
    assert code == 2, output
    assert str(root) in output and expected in output, output
    assert _tree(tmp_path) == before


def test_check_cli_defaults_to_env_then_data_blood_cells(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BCPARETO_DATA", str(dataset))
    code, output = _check()
    assert code == 0, output
    assert f"Data set: {dataset}" in output
    monkeypatch.delenv("BCPARETO_DATA")
    code, output = _check()
    assert code == 2, output
    assert "data/blood-cells: data directory not found" in output


# --------------------------------------------------------------------------- download (no network)

HANDLE_DIR = ("datasets", "paultimothymooney", "blood-cells")


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No network, no credentials, an empty kagglehub cache; returns the cache folder.

    HTTPS goes through a "proxy" on a 127.0.0.1 port that is bound but never listens, so every
    connection kagglehub makes is refused at once, on machines with internet too.
    """
    cache = tmp_path / "kagglehub-cache"
    cache.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{dead.getsockname()[1]}"
        for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy)
        for name in ("NO_PROXY", "no_proxy", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HOME", str(home))  # no ~/.kaggle/access_token
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))  # no kaggle.json
        monkeypatch.setenv("KAGGLEHUB_CACHE", str(cache))
        monkeypatch.delenv("KAGGLE_API_ENVIRONMENT", raising=False)  # the real endpoint, via the proxy
        monkeypatch.delenv("BCPARETO_DATA", raising=False)  # else a data set there means "nothing to download"
        monkeypatch.chdir(tmp_path)
        yield cache


def _cache_version(cache: Path, version: int, *, with_images: bool = True) -> Path:
    """Lay out one downloaded version the way kagglehub does: versions/<n>/ plus <n>.complete."""
    base = cache.joinpath(*HANDLE_DIR)
    unpacked = base / "versions" / str(version)
    (unpacked / "dataset-master" / "dataset-master" / "JPEGImages").mkdir(parents=True)
    (unpacked / "dataset-master" / "dataset-master" / "labels.csv").write_text("Image,Category\n")
    images = unpacked / "dataset2-master" / "dataset2-master" / "images"
    if with_images:
        _make_dataset(images)
    (base / f"{version}.complete").touch()
    return images


def _download(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["data", "download", *args])
    assert not isinstance(result.exception, (AttributeError, TypeError, KeyError, NameError)), result.output
    return result.exit_code, result.output


@pytest.mark.slow  # kagglehub retries through a dead proxy: up to minutes
def test_download_uses_kagglehub_cache_when_offline(offline: Path, tmp_path: Path) -> None:
    _cache_version(offline, 5)
    images = _cache_version(offline, 6)
    code, output = _download()
    assert code == 0, output
    dest = tmp_path / "data" / "blood-cells"
    assert dest.is_symlink() and dest.resolve() == images.resolve()
    assert f"BCPARETO_DATA={images.resolve()}" in output
    code, output = _download()  # again: already there, nothing to do
    assert code == 0, output
    code, output = _check()  # the default data directory is now the downloaded one
    assert code == 0, output


def test_download_to_dest(offline: Path, tmp_path: Path) -> None:
    images = _cache_version(offline, 6)
    dest = tmp_path / "elsewhere" / "bc"
    code, output = _download("--dest", str(dest))
    assert code == 0, output
    assert dest.resolve() == images.resolve()


def test_download_fails_offline_with_manual_steps(offline: Path, tmp_path: Path) -> None:
    code, output = _download()
    assert code == 1, output
    assert "cannot reach Kaggle" in output
    assert "Manual steps" in output and "dataset2-master/dataset2-master/images" in output
    assert "data/blood-cells" in output and "BCPARETO_DATA" in output
    assert not (tmp_path / "data").exists()


def test_download_refuses_existing_dest(offline: Path, tmp_path: Path) -> None:
    _cache_version(offline, 6)
    dest = tmp_path / "data" / "blood-cells"
    dest.mkdir(parents=True)
    (dest / "mine.txt").write_text("keep me")
    code, output = _download()
    assert code == 1, output
    assert f"{Path('data/blood-cells')}: already exists" in output
    assert [p.name for p in dest.iterdir()] == ["mine.txt"]


def test_download_without_images_folder_names_the_download(offline: Path, tmp_path: Path) -> None:
    _cache_version(offline, 6, with_images=False)
    code, output = _download()
    assert code == 1, output
    assert str(offline.joinpath(*HANDLE_DIR, "versions", "6")) in output
    assert "no folder holding TRAIN and TEST" in output
    assert not (tmp_path / "data").exists()


def test_find_images_dir_prefers_dataset2_master(tmp_path: Path) -> None:
    for name in ("a-copy", "dataset2-master/dataset2-master/images"):
        for split in ("TRAIN", "TEST"):
            (tmp_path / name / split).mkdir(parents=True)
    assert find_images_dir(tmp_path) == tmp_path / "dataset2-master/dataset2-master/images"


# --------------------------------------------------------------------------- the real data set


@pytest.mark.slow  # reads all 12.5k images
@needs_data
def test_check_real_data_set() -> None:
    code, output = _check(str(REAL_DATA), "--json")
    assert code == 0, output[-2000:]
    data = json.loads(output)
    assert {name: s["n_images"] for name, s in data["splits"].items()} == {
        "TRAIN": 9957,
        "TEST": 2480,
        "TEST_SIMPLE": 71,
    }
    across = next(d for d in data["duplicates"] if (d["first"], d["second"]) == ("TRAIN", "TEST"))
    assert across["total"] > 0
    assert data["problems"] == []
