"""Packed training (packed.py): members unpack to exactly build_model's model with the same
predictions, for every block type, on TensorFlow and JAX; a member never learns from its
held-out fold; train_packed records each member as a standalone training would.

The library has no command yet (the search's ``--pack`` comes later): these tests call it."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from bcpareto.config import TrainConfig
from bcpareto.data import DataSplits, Split
from bcpareto.gridspec import GridPoint
from bcpareto.model import build_model, cost

from .conftest import ROOT
from .blocks import POINTS as BLOCK_POINTS

# Every block type and shape feature (tests/blocks.py), plus an inverted residual
# without a stem: its first expansion conv reads the shared input, its second block adds.
POINTS = {**BLOCK_POINTS,
          "inverted_residual_no_stem": GridPoint(6, (8, 8), (3, 3), (6,), block="inverted_residual",
                                                 strides=(1, 1), expansion=2)}
SIZE = 32
JAX = importlib.util.find_spec("jax") is not None


def _randomise_batchnorm(packed: Any, seed: int = 5) -> None:
    """Non-trivial gamma, beta and moving statistics, so BatchNorm's unpacking is tested too."""
    rng = np.random.default_rng(seed)
    for layer in packed.layers:
        if layer is not None and type(layer).__name__ == "MaskedBatchNorm":
            for variable in (layer.gamma, layer.beta, layer.moving_mean):
                variable.assign(rng.normal(0, 0.5, variable.shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, variable.shape).astype("float32"))


def equivalence(name: str, *, members: int = 3) -> dict[str, Any]:
    """Max |packed member - unpacked model| over a batch, in inference and (dropout off) in
    training mode on the member's own images; also run by the JAX test in a subprocess."""
    from bcpareto.packed import pack, packed_predict, unpack

    point = POINTS[name]
    config = TrainConfig(image_size=SIZE)
    packed = pack(point, config=config, seeds=[11 + i for i in range(members)])
    _randomise_batchnorm(packed)
    x = np.random.default_rng(0).uniform(0, 255, (12, SIZE, SIZE, 3)).astype("float32")
    together = packed_predict(packed, x)
    inference, layers_equal, params = [], [], []
    for i in range(members):
        model = unpack(packed, i)
        inference.append(float(np.abs(np.asarray(model.predict(x, verbose=0)) - together[:, i]).max()))
        twin = build_model(point, config=config)
        # (the conv family's layers have Keras' numbered names, new in every model: not compared)
        layers_equal.append([(type(a).__name__, [w.shape for w in a.weights]) for a in model.layers]
                            == [(type(b).__name__, [w.shape for w in b.weights]) for b in twin.layers])
        params.append(model.count_params())
    # training mode, dropout off: member i's batch statistics over its own images only
    quiet = dataclasses.replace(config, conv_dropout=0.0, dense_dropout=0.0)
    packed = pack(point, config=quiet, seeds=[11 + i for i in range(members)])
    _randomise_batchnorm(packed)
    mask = np.random.default_rng(1).random((len(x), members)) < 0.6
    mask[:2] = True
    trained = np.asarray(packed.model({"pixels": x, "mask": mask.astype("float32")}, training=True))
    training = []
    for i in range(members):
        own = mask[:, i]
        alone = np.asarray(unpack(packed, i)(x[own], training=True))
        training.append(float(np.abs(alone - trained[own, i]).max()))
    return {"inference": inference, "training": training, "layers_equal": layers_equal, "params": params,
            "n_params": cost(point, image_size=SIZE, channels=3, padding="same").n_params,
            "members_differ": float(np.abs(together[:, 0] - together[:, 1]).max())}


def _check(result: dict[str, Any]) -> None:
    assert max(result["inference"]) < 1e-5, result
    assert max(result["training"]) < 1e-4, result
    assert all(result["layers_equal"]), result
    assert set(result["params"]) == {result["n_params"]}, result
    assert result["members_differ"] > 1e-3, result  # other seeds, other weights: the test can fail


# one case in the fast tier (about 3 s); the others build and run 5 more models each: slow
@pytest.mark.parametrize("name", [n if n == "conv_stem_strides_width" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(POINTS)])
def test_every_member_unpacks_to_the_standalone_model_with_the_same_predictions(name: str) -> None:
    _check(equivalence(name))


def _in_jax(code: str) -> Any:
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT,
                          timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # a JAX process: its start and one compile per model
@pytest.mark.skipif(not JAX, reason="jax not installed")
def test_every_member_unpacks_alike_on_jax() -> None:
    results = _in_jax("import json; from tests.test_packed import POINTS, equivalence; "
                      "print(json.dumps({n: equivalence(n, members=2) for n in POINTS}))")
    assert set(results) == set(POINTS)
    for name, result in results.items():
        assert result["layers_equal"], name
        _check(result)


# --------------------------------------------------------------------------- training


def _data(*, n: int = 48, folds: int = 3, seed: int = 0) -> DataSplits:
    """Random 32 px images with folds, as load_data gives them under validation "cv"."""
    rng = np.random.default_rng(seed)

    def split(name: str, size: int) -> Split:
        return Split(name, rng.integers(0, 256, (size, SIZE, SIZE, 3), dtype=np.uint8),
                     (np.arange(size) % 4).astype(np.int32), tuple(f"{name}/{i}.jpeg" for i in range(size)))

    train = split("TRAIN", n)
    return DataSplits(train, split("val", 0), split("TEST", 8), "TRAIN grouped 3-fold CV", "TEST", 0,
                      folds=((np.arange(n) // 4) % folds).astype(np.int16))


TRAIN_CONFIG = TrainConfig(image_size=SIZE, epochs=1, batch_size=8, validation="cv", folds=3, edge_metrics=False)


def held_out(name: str) -> dict[str, float]:
    """Train members holding out folds 0 and 1 twice: the second time one image of fold 0 has
    another label and other pixels. Max weight change per member (also run under JAX)."""
    from bcpareto.packed import members_for, train_packed

    point = POINTS[name]
    weights = []
    for changed in (False, True):
        data = _data()
        if changed:
            image = int(np.flatnonzero(data.folds == 0)[0])
            data.train.labels[image] = (data.train.labels[image] + 1) % 4
            data.train.images[image] = 255 - data.train.images[image]
        members = members_for(point, config=TRAIN_CONFIG, data=data, repeats=[0, 1])
        results = train_packed(point, members, config=TRAIN_CONFIG, data=data, verbose=0)
        weights.append([[np.asarray(w) for w in r.model.weights] for r in results])
    return {f"member{i}": max(float(np.abs(a - b).max()) for a, b in zip(weights[0][i], weights[1][i]))
            for i in range(2)}


@pytest.mark.train
@pytest.mark.parametrize("name", ["conv_stem_strides_width", "inverted_residual"])
def test_a_member_never_learns_from_its_held_out_fold(name: str) -> None:
    change = held_out(name)
    assert change["member0"] < 1e-6, change  # the image is in its held-out fold
    assert change["member1"] > 1e-4, change  # it trains on it: the change shows


@pytest.mark.train
@pytest.mark.skipif(not JAX, reason="jax not installed")
def test_a_member_never_learns_from_its_held_out_fold_on_jax() -> None:
    change = _in_jax("import json; from tests.test_packed import held_out; "
                     "print(json.dumps(held_out('separable_stem_width')))")
    assert change["member0"] < 1e-6 and change["member1"] > 1e-4, change


@pytest.mark.train
def test_train_packed_records_each_member_as_a_standalone_training_does(tmp_path: Any) -> None:
    from bcpareto.packed import members_for, train_packed
    from bcpareto.runs import _keras_path

    point = POINTS["separable_stem_width"]
    config = dataclasses.replace(TRAIN_CONFIG, edge_metrics=True, latency_runs=2)
    data = _data()
    members = members_for(point, config=config, data=data, repeats=[0, 1, 2])
    assert [(m.fold, m.seed) for m in members] == [(0, 3), (1, 1003), (2, 2003)]
    results = train_packed(point, members, config=config, data=data, model_dir=tmp_path, verbose=0)
    for fold, member in enumerate(results):
        row, predictions = member.result.row, member.result.predictions
        held = data.folds == fold
        assert (row["fold"], row["n_folds"], row["repeat"], row["pack"]) == (fold, 3, fold, 3)
        assert (row["n_train"], row["n_val"], row["n_test"]) == (int((~held).sum()), int(held.sum()), 8)
        assert row["n_params"] == member.model.count_params() == cost(point, image_size=SIZE, channels=3,
                                                                      padding="same").n_params
        # validation: the packed member's accuracy on its fold = the unpacked model's
        assert predictions.val_paths == tuple(np.array(data.train.paths)[held])
        assert row["val_accuracy"] == pytest.approx(
            float((predictions.val.argmax(axis=1) == data.train.labels[held]).mean()))
        assert len(member.result.curve["val_accuracy"]) == config.epochs
        assert row["tflite_int8_mb"] > 0 and member.result.predictions.test_int8 is not None
        assert member.result.model_path == _keras_path(tmp_path, point.grid_id, repeat=fold)
        assert member.result.model_path.exists()
