"""Issue 29, artefacts: a trained model's files are checked against the digests its record holds
before `export`, `refine` or `--teacher` use them, and a replaced, garbage, truncated or deleted file
is named (exit 2, nothing created); `edge` measures every good model and lists the bad ones (exit 1).

One tiny real search (3 grid points, 4 images per class, 32 px, 1 epoch, no edge metrics) is
trained once per module; `bcpareto edge` fills a copy of it with int8 files. Each test works on
its own copy. The commands that must refuse run as real processes (they stop before TensorFlow)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import bcpareto
from bcpareto.cli import cli

from .conftest import TINY_GRID, copy_subset, needs_data, write_sheet

pytestmark = [needs_data, pytest.mark.train]

SRC = str(Path(bcpareto.__file__).resolve().parents[1])
THREE = [*TINY_GRID, ["[1]", "[[4]]", "[[4]]", "[3]"]]  # grid points 0, 1, 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """{"data", "sheet", "plain" (trained --no-edge), "edge" (the same, after `bcpareto edge`)}."""
    base = tmp_path_factory.mktemp("artefacts")
    data = copy_subset(base / "blood-cells", per_class=4)
    sheet = write_sheet(base / "three.xlsx", THREE)
    with pytest.MonkeyPatch.context() as env:  # the autouse fixture is per test, this is per module
        env.setenv("BCPARETO_CACHE", str(base / "cache"))
        env.setenv("BCPARETO_WORKERS", "1")
        plain = base / "plain"
        result = CliRunner().invoke(cli, ["search", str(sheet), "--no-edge", "--image-size", "32", "--epochs",
                                          "1", "--data-dir", str(data), "--run-dir", str(plain)])
        assert result.exit_code == 0, result.output
        shutil.copytree(plain, base / "edge")
        result = CliRunner().invoke(cli, ["edge", "--run-dir", str(base / "edge"), "--data-dir", str(data)])
        assert result.exit_code == 0, result.output
        assert "Done: 3 model(s) measured" in result.output
    yield {"data": data, "sheet": sheet, "plain": plain, "edge": base / "edge"}


def _copy(runs: dict[str, Path], which: str, tmp_path: Path) -> tuple[Path, Path]:
    """(a copy of run `which`, its study folder)."""
    run = shutil.copytree(runs[which], tmp_path / which)
    (folder,) = (run / "runs").iterdir()
    return run, folder


def _bcpareto(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC, "TF_CPP_MIN_LOG_LEVEL": "3", "BCPARETO_WORKERS": "1"}
    return subprocess.run([sys.executable, "-m", "bcpareto", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_records_hold_the_digest_of_every_file_and_edge_adds_the_int8_file(runs: dict[str, Path]) -> None:
    import hashlib

    for which, names in (("plain", {".keras", "_predictions.npz"}),
                         ("edge", {".keras", "_int8.tflite", "_predictions.npz"})):
        (folder,) = (runs[which] / "runs").iterdir()
        for gid in range(3):
            digests = json.loads((folder / f"grid_{gid}.json").read_text())["artefacts"]
            assert set(digests) == {f"grid_{gid}{n}" for n in names}, which
            for name, want in digests.items():
                data = (folder / name).read_bytes()
                assert want == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def test_export_refuses_an_int8_file_copied_from_another_point(runs: dict[str, Path], tmp_path: Path) -> None:
    """The issue's case: `cp grid_1_int8.tflite grid_0_int8.tflite; export 0` shipped point 1's file."""
    run, folder = _copy(runs, "edge", tmp_path)
    shutil.copy(folder / "grid_1_int8.tflite", folder / "grid_0_int8.tflite")
    before = _tree(tmp_path)
    done = _bcpareto(tmp_path, "export", "0", "--run-dir", str(run), "--out", "out")
    assert done.returncode == 2, done.stderr
    assert "grid_0_int8.tflite: replaced or edited since it was written" in done.stderr
    assert "the record grid_0.json expects" in done.stderr and "Restore the file" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "out").exists() and _tree(tmp_path) == before
    ok = CliRunner().invoke(cli, ["export", "1", "--run-dir", str(run), "--out", str(tmp_path / "out1")])
    assert ok.exit_code == 0, ok.output  # the other point is sound (in this process: TensorFlow is loaded)
    assert (tmp_path / "out1" / "model_int8.tflite").read_bytes() == (folder / "grid_1_int8.tflite").read_bytes()


def _garbage_keras(folder: Path) -> tuple[str, str]:
    (folder / "grid_0.keras").write_bytes(os.urandom(700))
    return "grid_0.keras", "truncated or replaced since it was written (700 bytes"


def _truncated_json(folder: Path) -> tuple[str, str]:
    path = folder / "grid_0.json"
    path.write_bytes(path.read_bytes()[:200])
    return "grid_0.json", "the model's record is not valid JSON"


def _deleted_keras(folder: Path) -> tuple[str, str]:
    (folder / "grid_0.keras").unlink()
    return "grid_0.keras", "missing (its record grid_0.json lists it)"


FAULTS = {"garbage .keras": _garbage_keras, "truncated grid_0.json": _truncated_json,
          "deleted .keras": _deleted_keras}


def _command(name: str, run: Path, runs: dict[str, Path]) -> list[str]:
    return {
        "export": ["export", "0", "--run-dir", str(run), "--out", "out"],
        "refine": ["refine", "0", "--epochs", "1", "--run-dir", str(run), "--data-dir", str(runs["data"])],
        "--teacher": ["search", str(runs["sheet"]), "--teacher", "0", "--image-size", "32", "--epochs", "1",
                      "--run-dir", str(run), "--data-dir", str(runs["data"]), "--study", "students"],
    }[name]


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("command", ["export", "refine", "--teacher"])
def test_a_bad_file_is_named_and_nothing_is_created(
    runs: dict[str, Path], tmp_path: Path, command: str, fault: str
) -> None:
    run, folder = _copy(runs, "edge", tmp_path)
    name, how = FAULTS[fault](folder)
    before = _tree(tmp_path)
    done = _bcpareto(tmp_path, *_command(command, run, runs))
    assert done.returncode == 2, done.stderr
    assert f"{folder / name}: {how}" in done.stderr
    assert "Restore" in done.stderr and "--study NEW_NAME" in done.stderr
    if command == "--teacher":
        assert done.stderr.startswith("Error: --teacher 0: ")
    assert "Traceback" not in done.stderr + done.stdout and "File not found" not in done.stderr
    assert _tree(tmp_path) == before  # no export folder, no new trial, no new study, same CSV
    assert not (tmp_path / "out").exists()


def _without_digests(folder: Path) -> None:
    """Records as runs before digests wrote them."""
    for path in folder.glob("grid_*.json"):
        record = json.loads(path.read_text())
        del record["artefacts"]
        path.write_text(json.dumps(record))


def test_records_without_digests_are_used_and_only_unreadable_files_refused(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    run, folder = _copy(runs, "edge", tmp_path)
    _without_digests(folder)
    shutil.copy(folder / "grid_1_int8.tflite", folder / "grid_2_int8.tflite")  # undetectable without digests
    ok = CliRunner().invoke(cli, ["export", "2", "--run-dir", str(run), "--out", str(tmp_path / "old")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "old" / "model_card.json").is_file()

    (folder / "grid_0.keras").write_text("not a model")
    done = _bcpareto(tmp_path, "export", "0", "--run-dir", str(run), "--out", "out0")
    assert done.returncode == 2, done.stderr
    assert f"{folder / 'grid_0.keras'}: unreadable: not a Keras model file" in done.stderr
    (folder / "grid_0_int8.tflite").write_bytes(b"\0" * 64)
    with zipfile.ZipFile(folder / "grid_1.keras", "w") as archive:  # a sound zip Keras cannot load
        archive.writestr("config.json", "{}")
    for gid, name, how in ((0, "grid_0_int8.tflite", "unreadable: not a TFLite file"),
                           (1, "grid_1.keras", "unreadable as a Keras model")):  # found by Keras itself
        done = CliRunner().invoke(cli, ["export", str(gid), "--run-dir", str(run), "--out", str(tmp_path / "out")])
        assert done.exit_code == 2, done.output
        assert f"{folder / name}: {how}" in done.output and "Traceback" not in done.output
        assert not (tmp_path / "out").exists()


def test_edge_measures_the_good_models_and_lists_the_bad_ones(runs: dict[str, Path], tmp_path: Path) -> None:
    run, folder = _copy(runs, "plain", tmp_path)
    (folder / "grid_1.keras").write_bytes(b"PK\x03\x04 garbage")
    result = CliRunner().invoke(cli, ["edge", "--run-dir", str(run), "--data-dir", str(runs["data"])])
    assert result.exit_code == 1, result.output
    assert "grid point 1: not measured" in result.output
    assert "Done: 2 model(s) measured" in result.output
    assert "1 model(s) not measured, their files are bad:" in result.output
    assert f"{folder / 'grid_1.keras'}: truncated or replaced since it was written" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in folder.glob("*_int8.tflite")) == ["grid_0_int8.tflite", "grid_2_int8.tflite"]
    with open(run / "metrics_log.csv", newline="") as handle:
        measured = {r["grid_id"]: r["tflite_int8_mb"] for r in csv.DictReader(handle)}
    assert measured["1"] == "" and measured["0"] and measured["2"]
    # the two measured models export as any other; the bad one is still named
    ok = CliRunner().invoke(cli, ["export", "2", "--run-dir", str(run), "--out", str(tmp_path / "out2")])
    assert ok.exit_code == 0, ok.output
    again = CliRunner().invoke(cli, ["edge", "--run-dir", str(run), "--data-dir", str(runs["data"]), "--json"])
    assert again.exit_code == 1
    assert json.loads(again.stdout)["not_measured"][0].startswith("grid point 1 of study")
