"""Training on any Keras backend: KERAS_BACKEND checked up front, one numpy input pipeline, a
tiny real search on every installed backend, its TFLite figures filled later by `bcpareto edge`."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bcpareto.cli import cli
from bcpareto.data import Split, augment_batch, eval_dataset, training_dataset

from .conftest import BLOOD_CELLS, ROOT, needs_data

INSTALLED = [b for b in ("tensorflow", "jax", "torch") if importlib.util.find_spec(b) is not None]
FAST = ["--image-size", "32", "--epochs", "1", "--limit-per-class", "3"]


def _search(tmp_path: Path, tiny_grid: Path, *args: str) -> object:
    return CliRunner().invoke(cli, ["search", str(tiny_grid), *FAST, "--data-dir", str(BLOOD_CELLS),
                                    "--run-dir", str(tmp_path / "run"), *args])


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics_log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------- KERAS_BACKEND


def test_an_unknown_backend_exits_2_before_anything_is_created(
    tmp_path: Path, tiny_grid: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KERAS_BACKEND", "jaxx")
    result = _search(tmp_path, tiny_grid)
    assert result.exit_code == 2, result.output
    assert "KERAS_BACKEND='jaxx'" in result.output and "tensorflow, jax, torch" in result.output
    assert not (tmp_path / "run").exists()


def test_a_backend_that_is_not_installed_names_the_pip_command(
    tmp_path: Path, tiny_grid: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    result = _search(tmp_path, tiny_grid)
    assert result.exit_code == 2, result.output
    assert "torch is not installed" in result.output and "pip install 'bcpareto[torch]'" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


@pytest.mark.skipif("jax" not in INSTALLED, reason="jax not installed")
@pytest.mark.parametrize("option", [["--edge"], ["--max-int8-mb", "0.1"], ["--max-latency-ms", "5"]])
def test_tflite_options_need_tensorflow_in_the_training_process(
    tmp_path: Path, tiny_grid: Path, monkeypatch: pytest.MonkeyPatch, option: list[str],
) -> None:
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    result = _search(tmp_path, tiny_grid, *option)
    assert result.exit_code == 2, result.output
    assert "needs TensorFlow" in result.output and "KERAS_BACKEND=jax" in result.output
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- the input pipeline


def _split(n: int = 10, size: int = 12) -> Split:
    images = np.random.default_rng(1).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return Split("train", images, np.arange(n, dtype=np.int32) % 4, tuple(f"img{i}" for i in range(n)))


def test_training_batches_cover_every_image_once_per_epoch_and_reshuffle() -> None:
    split = _split(12)
    batches = training_dataset(split, batch_size=4, augment=(), seed=7)
    assert len(batches) == 3

    def epoch() -> list[int]:
        # unaugmented pixels are the images themselves: find each batch row's image
        seen = []
        for i in range(len(batches)):
            x, y = batches[i]
            assert x.dtype == np.float32
            for row, label in zip(x, y):
                index = int(np.flatnonzero((split.images == row.astype(np.uint8)).all(axis=(1, 2, 3)))[0])
                assert label == split.labels[index]
                seen.append(index)
        return seen

    first_batch = batches[0][0]
    first = epoch()
    batches.on_epoch_end()
    second = epoch()
    assert sorted(first) == sorted(second) == list(range(len(split)))
    assert first != second  # another order (the seeded permutations of epochs 0 and 1 differ)
    again = training_dataset(split, batch_size=4, augment=(), seed=7)
    np.testing.assert_array_equal(again[0][0], first_batch)  # the seed fixes the order


def test_training_batches_are_full_the_remainder_waits_for_another_epoch() -> None:
    batches = training_dataset(_split(10), batch_size=4, augment=(), seed=0)
    assert len(batches) == 2 and all(len(batches[i][1]) == 4 for i in range(2))
    assert len(training_dataset(_split(3), batch_size=4, augment=(), seed=0)[0][1]) == 3  # fewer than a batch


@pytest.mark.skipif("tensorflow" not in INSTALLED, reason="the TensorFlow feed")
def test_tensorflow_is_fed_the_same_batches_epoch_after_epoch() -> None:
    from bcpareto.data import fit_input

    batches = training_dataset(_split(12), batch_size=4, augment=("flip", "zoom"), seed=5)
    fed = [(x.numpy(), y.numpy()) for x, y in fit_input(batches, epochs=2)]
    assert len(fed) == 2 * len(batches)
    for k, (x, y) in enumerate(fed):
        want_x, want_y = batches.batch(k // len(batches), k % len(batches))
        np.testing.assert_array_equal(x, want_x)
        np.testing.assert_array_equal(y, want_y)


def test_the_same_seed_gives_the_same_augmented_batches_and_another_seed_others() -> None:
    split = _split(16)
    ops = ("flip", "rot90", "brightness", "contrast", "stain", "zoom")
    a = training_dataset(split, batch_size=8, augment=ops, seed=3)
    b = training_dataset(split, batch_size=8, augment=ops, seed=3)
    c = training_dataset(split, batch_size=8, augment=ops, seed=4)
    np.testing.assert_array_equal(a[1][0], b[1][0])  # asked in any order: the batch's own generator
    assert not np.allclose(a[1][0], c[1][0])
    assert a[0][0].min() >= 0 and a[0][0].max() <= 255


@pytest.mark.skipif("tensorflow" not in INSTALLED, reason="compares with TensorFlow's op")
def test_zoom_samples_its_window_as_tf_image_crop_and_resize_does() -> None:
    import tensorflow as tf

    from bcpareto.data import _crop_and_resize

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (6, 17, 17, 3)).astype(np.float32)
    side = rng.uniform(0.8, 1.0, (6, 1))
    corner = rng.random((6, 2)) * (1 - side)
    ours = _crop_and_resize(x, corner, side[:, 0])
    boxes = np.concatenate([corner, corner + side], axis=1)
    theirs = tf.image.crop_and_resize(x, boxes, tf.range(6), (17, 17)).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-2)


def test_augmentation_keeps_flat_images_flat_and_eval_batches_keep_order() -> None:
    flat = np.full((4, 8, 8, 3), 100, np.uint8)
    out = augment_batch(flat, ("flip", "rot90", "zoom"), np.random.default_rng(0))
    np.testing.assert_allclose(out, 100.0, atol=1e-3)  # symmetries and zoom move no grey level
    split = _split(10)
    batches = eval_dataset(split, batch_size=4)
    x = np.concatenate([batches[i][0] for i in range(len(batches))])
    np.testing.assert_array_equal(x, split.images.astype(np.float32))


# --------------------------------------------------------------------------- a real search per backend

# Runs `bcpareto search` under KERAS_BACKEND; for a backend other than TensorFlow, TensorFlow is
# made unimportable first, as on a GPU machine that has JAX or PyTorch only.
_RUNNER = """
import sys
backend, args = sys.argv[1], sys.argv[2:]
if backend != "tensorflow":
    class NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ImportError("tensorflow is not installed on this machine (test)")
    sys.meta_path.insert(0, NoTensorFlow())
from bcpareto.cli import cli
try:
    cli(args)
finally:
    print("tensorflow imported:", "tensorflow" in sys.modules)
"""


@needs_data
@pytest.mark.train
@pytest.mark.parametrize("backend", INSTALLED)
def test_a_tiny_search_trains_on_each_installed_backend(tmp_path: Path, tiny_grid: Path, backend: str) -> None:
    import os

    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("BCPARETO_STORAGE", None)
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, backend, "search", str(tiny_grid), *FAST, "--no-edge",
         "--data-dir", str(BLOOD_CELLS), "--run-dir", str(run_dir)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Backend: {backend}" in done.stdout
    if backend != "tensorflow":
        assert "tensorflow imported: False" in done.stdout
    rows = _rows(run_dir)
    assert [r["grid_id"] for r in rows] == ["0", "1"]
    for row in rows:
        assert row["backend"] == backend
        assert 0 <= float(row["test_accuracy"]) <= 1 and row.get("tflite_int8_mb", "") == ""
        assert (run_dir / "runs" / row["study"] / f"grid_{row['grid_id']}.keras").is_file()
    if backend == "tensorflow":
        return
    # the TFLite figures, later, in a TensorFlow process; then export as for any model
    filled = CliRunner().invoke(cli, ["edge", "--run-dir", str(run_dir), "--data-dir", str(BLOOD_CELLS)])
    assert filled.exit_code == 0, filled.output
    assert "Done: 2 model(s) measured" in filled.output
    for row in _rows(run_dir):
        assert row["backend"] == backend and float(row["tflite_int8_mb"]) > 0
        assert 0 <= float(row["int8_test_accuracy"]) <= 1
    exported = CliRunner().invoke(cli, ["export", "0", "--format", "tflite-int8", "--out", str(tmp_path / "out"),
                                        "--run-dir", str(run_dir)])
    assert exported.exit_code == 0, exported.output
