"""Distillation (`search --teacher`): the loss, the soft-target cache, the pipeline, the CLI."""

from __future__ import annotations

import csv
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bcpareto import distill
from bcpareto.cli import cli
from bcpareto.config import Teacher, load_config, resolve_preset
from bcpareto.data import Split, training_dataset
from bcpareto.errors import ConfigError

from .conftest import BLOOD_CELLS, TINY_GRID, needs_data, write_sheet

TEACHER = np.array([[0.7, 0.2, 0.05, 0.05], [0.1, 0.1, 0.1, 0.7], [0.25, 0.25, 0.25, 0.25]], np.float32)
LABELS = np.array([0, 3, 1])


def _loss(y_true: np.ndarray, y_pred: np.ndarray, **kwargs: float) -> np.ndarray:
    return np.asarray(distill.distillation_loss(**kwargs)(y_true, y_pred))


def _reference_kl(teacher: np.ndarray, student: np.ndarray, t: float) -> np.ndarray:
    """T^2 KL(softmax(log teacher / T) || softmax(log student / T)), in plain numpy."""
    def soften(p: np.ndarray) -> np.ndarray:
        z = np.exp(np.log(p) / t)
        return z / z.sum(axis=1, keepdims=True)

    pt, ps = soften(teacher), soften(student)
    return t**2 * (pt * np.log(pt / ps)).sum(axis=1)


def test_weight_0_is_cross_entropy_on_the_labels() -> None:
    student = np.array([[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], [0.6, 0.2, 0.1, 0.1]], np.float32)
    y = distill.training_targets(LABELS, TEACHER)
    assert y.shape == (3, 8) and (y[:, :4].argmax(1) == LABELS).all()
    got = _loss(y, student, temperature=4.0, weight=0.0)
    np.testing.assert_allclose(got, -np.log(student[np.arange(3), LABELS]), rtol=1e-5)
    # validation batches carry plain labels: cross-entropy whatever the weight
    np.testing.assert_allclose(_loss(LABELS.reshape(-1, 1), student, temperature=4.0, weight=1.0), got, rtol=1e-5)


def test_weight_1_is_the_tempered_kl_and_pulls_towards_the_teacher() -> None:
    y = distill.training_targets(LABELS, TEACHER)
    far = np.array([[0.1, 0.1, 0.1, 0.7], [0.7, 0.1, 0.1, 0.1], [0.97, 0.01, 0.01, 0.01]], np.float32)
    for t in (1.0, 4.0):
        np.testing.assert_allclose(_loss(y, far, temperature=t, weight=1.0), _reference_kl(TEACHER, far, t),
                                   rtol=1e-4)
    losses = [_loss(y, (1 - a) * far + a * TEACHER, temperature=4.0, weight=1.0) for a in (0, 0.5, 0.9, 1)]
    assert all((a > b).all() for a, b in itertools.pairwise(losses))  # closer to the teacher: lower
    np.testing.assert_allclose(losses[-1], 0.0, atol=1e-5)  # the teacher's own outputs: nothing to learn
    mixed = _loss(y, far, temperature=4.0, weight=0.5)
    np.testing.assert_allclose(mixed, 0.5 * _loss(y, far, temperature=4.0, weight=0.0)
                               + 0.5 * _loss(y, far, temperature=4.0, weight=1.0), rtol=1e-5)


def test_accuracy_reads_the_label_in_either_form() -> None:
    student = np.eye(4, dtype=np.float32)[[0, 2, 1]]
    expected = [1.0, 0.0, 1.0]
    np.testing.assert_allclose(distill.label_accuracy(distill.training_targets(LABELS, TEACHER), student), expected)
    np.testing.assert_allclose(distill.label_accuracy(LABELS.reshape(-1, 1), student), expected)


def test_augmented_images_keep_their_own_soft_target() -> None:
    # each image is one flat grey level (its index), unchanged by flips and turns
    n = 40
    images = np.repeat(np.arange(n, dtype=np.uint8), 8 * 8 * 3).reshape(n, 8, 8, 3)
    soft = np.random.default_rng(0).dirichlet(np.ones(4), n).astype(np.float32)
    split = Split("train", images, np.arange(n) % 4, tuple(f"img{i}" for i in range(n)))
    targets = distill.training_targets(split.labels, soft)
    seen = 0
    batches = training_dataset(split, batch_size=7, augment=("flip", "rot90"), seed=3, targets=targets)
    for x, y in (batches[i] for i in range(len(batches))):
        index = x[:, 0, 0, 0].astype(int)
        np.testing.assert_allclose(y, targets[index])
        seen += len(index)
    assert seen == n // 7 * 7  # full batches of 7 (the remainder waits for the next epoch)


def _tiny_teacher(tmp_path: Path, *, image_size: int = 16, name: str = "teacher.keras") -> Path:
    from bcpareto.gridspec import read_grid
    from bcpareto.model import build_model

    point = read_grid(write_sheet(tmp_path / "t.xlsx", TINY_GRID))[0]
    model = build_model(point, config=load_config("default", image_size=image_size))
    model.save(tmp_path / name)
    return tmp_path / name


def test_soft_targets_run_the_teacher_once_then_read_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCPARETO_CACHE", str(tmp_path / "cache"))
    path = _tiny_teacher(tmp_path)
    teacher = distill.resolve_teacher(str(path), run_dir=tmp_path)
    assert teacher.label == "teacher.keras" and len(teacher.sha256) == 12
    calls = []
    real = distill._predict
    monkeypatch.setattr(distill, "_predict", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    split = Split("train", images, np.arange(10) % 4, tuple(f"img{i}" for i in range(10)))

    first = distill.soft_targets(teacher, split)
    assert first.shape == (10, 4) and np.allclose(first.sum(axis=1), 1, atol=1e-5) and len(calls) == 1
    second = distill.soft_targets(teacher, split)
    assert len(calls) == 1 and np.array_equal(first, second)  # from the cache
    assert len(list((tmp_path / "cache" / "teacher").glob("*.npy"))) == 1
    other = Split("train", images[::-1].copy(), split.labels, split.paths)  # same paths, other pixels
    distill.soft_targets(teacher, other)
    assert len(calls) == 2


def test_fingerprint_holds_the_teacher_digest_and_ignores_distillation_without_one() -> None:
    plain = load_config("default")
    assert load_config("default", distill_weight=0.9).fingerprint() == plain.fingerprint()
    a = Teacher(label="0", path="/x/grid_0.keras", sha256="abc")
    with_a = load_config("default", teacher=a)
    assert with_a.fingerprint() != plain.fingerprint()
    assert load_config("default", teacher=Teacher("m.keras", "/y/m.keras", "abc")).fingerprint() == with_a.fingerprint()
    assert load_config("default", teacher=Teacher("0", a.path, "def")).fingerprint() != with_a.fingerprint()
    assert load_config("default", teacher=a, distill_weight=0.1).fingerprint() != with_a.fingerprint()


@pytest.mark.parametrize(("line", "message"), [
    ('distill_weight = 1.5', "distill_weight = 1.5: expected a number in [0, 1]"),
    ('distill_weight = "half"', "distill_weight = 'half': expected a number in [0, 1]"),
    ('distill_temperature = 0', "distill_temperature = 0: expected a number in (0, 100]"),
    ('distill_temperature = true', "distill_temperature = True: expected a number in (0, 100]"),
    ('teacher = "runs/x/grid_0.keras"', "set the teacher with `search --teacher`"),
])
def test_bad_distillation_keys_are_named(tmp_path: Path, line: str, message: str) -> None:
    preset = tmp_path / "p.toml"
    preset.write_text(line + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(preset))
    assert message in str(info.value)


def csv_rows(tmp_path: Path) -> list[dict[str, str]]:
    with open(tmp_path / "run" / "metrics_log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _search(tmp_path: Path, grid: Path, *extra: str) -> tuple[int, str]:
    args = ["search", "--no-edge", str(grid), "--image-size", "32", "--epochs", "1", "--limit-per-class", "4",
            "--data-dir", str(BLOOD_CELLS), "--run-dir", str(tmp_path / "run"), *extra]
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


def _fake_run_dir(tmp_path: Path, model: Path, studies: dict[str, bool]) -> Path:
    """run/runs/<study>/grid_0.{keras,json} for each study; True: trained with a teacher."""
    for study, distilled in studies.items():
        folder = tmp_path / "run" / "runs" / study
        folder.mkdir(parents=True)
        shutil.copy(model, folder / "grid_0.keras")
        teacher = {"label": "0", "path": "x", "sha256": "abc"} if distilled else None
        (folder / "grid_0.json").write_text(json.dumps({"row": {}, "config": {"teacher": teacher}}))
    return tmp_path / "run"


def test_a_bare_grid_id_is_the_one_study_that_was_not_distilled(tmp_path: Path) -> None:
    run = _fake_run_dir(tmp_path, _tiny_teacher(tmp_path), {"plain-a": False, "plain-b": False, "students": True})
    with pytest.raises(ConfigError) as info:
        distill.resolve_teacher("0", run_dir=run)
    assert "trained in 2 studies" in str(info.value)
    assert "--teacher plain-a/0, --teacher plain-b/0" in str(info.value)
    picked = distill.resolve_teacher("plain-b/0", run_dir=run)
    assert picked.label == "plain-b/0" and picked.path == str(run / "runs" / "plain-b" / "grid_0.keras")
    shutil.rmtree(run / "runs" / "plain-b")
    assert distill.resolve_teacher("0", run_dir=run).path.endswith("plain-a/grid_0.keras")  # students skipped
    assert distill.resolve_teacher("students/0", run_dir=run).path.endswith("students/grid_0.keras")
    with pytest.raises(ConfigError, match="no finished trial for grid point 0 under .* in study 'nope'"):
        distill.resolve_teacher("nope/0", run_dir=run)


@pytest.mark.parametrize(("spec", "message"), [
    ("3", "no finished trial for grid point 3"),
    ("ambiguous", "grid point 0 was trained in 2 studies"),
    ("missing.keras", "expected the grid id of a finished trial"),
    ("notes.txt", "expected the grid id of a finished trial"),
    ("broken.keras", "is not a Keras model file"),
    ("small.keras", "the teacher takes 16x16x3 inputs but the students train on 32x32x3"),
])
def test_bad_teacher_exits_2_and_creates_nothing(tmp_path: Path, tiny_grid: Path, spec: str, message: str) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "broken.keras").write_text("not a zip")
    if spec == "small.keras":
        _tiny_teacher(tmp_path, image_size=16, name="small.keras")
    if spec == "ambiguous":
        _fake_run_dir(tmp_path, _tiny_teacher(tmp_path, image_size=32), {"a": False, "b": False})
        spec = "0"
    if spec.endswith((".keras", ".txt")):
        spec = str(tmp_path / spec)
    before = sorted(tmp_path.rglob("*"))
    code, output = _search(tmp_path, tiny_grid, "--teacher", spec)
    assert code == 2, output
    assert message in output and "--teacher" in output and "Traceback" not in output
    assert sorted(tmp_path.rglob("*")) == before  # no run dir, study, CSV or cache


@needs_data
@pytest.mark.train
@pytest.mark.slow
def test_students_of_a_finished_grid_point_log_the_teacher(
    tmp_path: Path, tiny_grid: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCPARETO_CACHE", str(tmp_path / "cache"))
    code, output = _search(tmp_path, tiny_grid)
    assert code == 0, output
    weight0 = tmp_path / "w0.toml"  # the default preset, distillation weight 0: plain training
    lines = [x for x in resolve_preset("default").read_text().splitlines() if not x.startswith("distill_weight")]
    weight0.write_text("\n".join(lines) + "\ndistill_weight = 0.0\n")
    code, output = _search(tmp_path, tiny_grid, "--teacher", "0")
    assert code == 0, output
    assert "Teacher: 0 (" in output and "2/2 grid points completed" in output
    # grid point 0 is now in two studies, teacher's and students': a bare id means the teacher's
    code, output = _search(tmp_path, tiny_grid, "--teacher", "0", "--config", str(weight0))
    assert code == 0, output
    rows = csv_rows(tmp_path)
    assert len(rows) == 6 and len({r["study"] for r in rows}) == 3
    plain, student, control = rows[:2], rows[2:4], rows[4:]
    assert all(r["teacher"] == "" and r["distill_weight"] == "" for r in plain)
    assert [(r["teacher"], r["distill_weight"], r["distill_temperature"]) for r in student] == [("0", "0.5", "4.0")] * 2
    assert {(r["teacher"], r["distill_weight"]) for r in control} == {("0", "0.0")}
    assert all(0 <= float(r["val_accuracy"]) <= 1 for r in student)
    # weight 0 with a teacher is the plain run: the teacher runs before the student's seed is set
    for a, b in zip(plain, control):
        assert float(a["test_accuracy"]) == pytest.approx(float(b["test_accuracy"]))
        assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), rel=1e-3)
    # the saved student is a plain model: it loads (and compiles) without bcpareto's loss
    import keras

    folder = tmp_path / "run" / "runs" / student[0]["study"]
    loaded = keras.saving.load_model(folder / "grid_0.keras")
    assert loaded.output_shape == (None, 4) and loaded.loss == "sparse_categorical_crossentropy"
    # two studies of students, one teacher: its soft targets were computed once
    cached = list(Path(distill.cache_dir(), "teacher").glob("*.npy"))
    assert len(cached) == 1


def test_copies_of_a_teacher_are_one_teacher(tmp_path: Path) -> None:
    path = _tiny_teacher(tmp_path)
    copy = tmp_path / "copy.keras"
    shutil.copy(path, copy)
    a = distill.resolve_teacher(str(path), run_dir=tmp_path)
    b = distill.resolve_teacher(str(copy), run_dir=tmp_path)
    assert a.sha256 == b.sha256 and a.label != b.label
    assert load_config("default", teacher=a).fingerprint() == load_config("default", teacher=b).fingerprint()
