"""Structured pruning (prune.py): the pruned model's architecture, its copied weights, and a pruned
grid point through `bcpareto search`. The sheet's `prune` cells are checked here too, through the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bcpareto.cli import cli
from bcpareto.config import TrainConfig
from bcpareto.gridspec import GridPoint
from bcpareto.model import cost, pruned_point

from .conftest import needs_data, write_sheet
from .searches import _preset, _rows, _search

CONFIG = TrainConfig(image_size=32)

# One point per block type at 32 px, with what pruning must get right: a conv block without a
# BatchNorm (the first), separable blocks whose depthwise conv sees removed channels, inverted-
# residual blocks with skip connections (to the stem, to each other, to the image), one whose
# rounding would add a skip (8 -> 7 channels: 4 and 4 at 0.5, so it keeps 5), and dense heads.
POINTS = {
    "conv": GridPoint(grid_id=0, filters=(8, 12, 12), kernel_sizes=(3, 3, 3), neurons=(10,),
                      strides=(2, 1, 2)),
    "separable": GridPoint(grid_id=1, filters=(8, 12, 12), kernel_sizes=(3, 3, 3), neurons=(10, 6),
                           block="separable", strides=(2, 1, 2), stem=8),
    "inverted_residual": GridPoint(grid_id=2, filters=(8, 8, 7, 12, 12), kernel_sizes=(3,) * 5,
                                   neurons=(), block="inverted_residual", strides=(1, 1, 1, 2, 1),
                                   stem=8, expansion=3),
    "inverted_residual_t1": GridPoint(grid_id=3, filters=(3, 8, 8), kernel_sizes=(3, 3, 3), neurons=(6,),
                                      block="inverted_residual", strides=(1, 2, 1), expansion=1, width=1.5),
}


def _parent(point: GridPoint, seed: int = 0) -> object:
    """The point's model with every weight random, BatchNorm statistics included (as if trained)."""
    from bcpareto.model import build_model

    model = build_model(point, config=CONFIG)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if type(layer).__name__ == "BatchNormalization":
            n = weights[0].shape[0]
            weights = [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.3, n), rng.normal(0, 0.3, n),
                       rng.uniform(0.5, 2.0, n)]
        else:
            weights = [rng.normal(0, 0.3, w.shape) for w in weights]
        layer.set_weights([np.asarray(w, dtype=np.float32) for w in weights])
    return model


def _images(n: int = 6) -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 255, (n, 32, 32, 3)).astype(np.float32)


def _logits(model: object, x: np.ndarray) -> np.ndarray:
    """The outputs before the softmax (the probabilities of a random net saturate)."""
    import keras

    head = model.get_layer("probabilities")
    features = keras.Model(model.inputs, head.input)([x])
    return np.asarray(features) @ head.get_weights()[0] + head.get_weights()[1]


@pytest.mark.parametrize("name", sorted(POINTS))
def test_keeping_every_channel_gives_the_parents_outputs(name: str) -> None:
    from bcpareto.prune import prune_model

    point = POINTS[name]
    parent = _parent(point)
    child = prune_model(parent, replace(point, prune=1.0), config=CONFIG)
    assert child.count_params() == parent.count_params()
    x = _images()
    np.testing.assert_allclose(_logits(child, x), _logits(parent, x), rtol=1e-4, atol=1e-4)


def _zero_pruned_channels(parent: object, child: object) -> int:
    """Set to zero the scale and shift of the channels the child lacks (the last ones of every
    layer), in the BatchNorm after each conv or dense layer, or the filters where none follows."""
    layers, removed = parent.layers, 0
    child_widths = [getattr(c, "filters", None) or getattr(c, "units", None) for c in child.layers]
    for i, layer in enumerate(layers):
        kind = type(layer).__name__
        if kind not in ("Conv2D", "Dense") or layer.name == "probabilities":
            continue
        full = layer.filters if kind == "Conv2D" else layer.units
        kept = child_widths[i]
        if kept == full:
            continue
        removed += full - kept
        norm = None
        for nxt in layers[i + 1:]:
            if type(nxt).__name__ in ("Conv2D", "Dense", "DepthwiseConv2D", "Add"):
                break
            if type(nxt).__name__ == "BatchNormalization":
                norm = nxt
                break
        if norm is not None:
            gamma, beta, mean, var = norm.get_weights()
            gamma[kept:] = 0
            beta[kept:] = 0
            norm.set_weights([gamma, beta, mean, var])
        else:
            weights = layer.get_weights()
            weights[0][..., kept:] = 0
            weights[1][kept:] = 0
            layer.set_weights(weights)
    return removed


@pytest.mark.parametrize("name", sorted(POINTS))
def test_removing_channels_of_zero_scale_keeps_the_outputs(name: str) -> None:
    """Network slimming's premise, exactly: a channel whose BatchNorm scale and shift are 0 carries
    nothing, so a model without it computes the same (the constants it leaves downstream, after
    a depthwise conv's BatchNorm, are folded into the next BatchNorm)."""
    from bcpareto.model import build_model
    from bcpareto.prune import prune_model

    point = replace(POINTS[name], prune=0.5)
    parent = _parent(point.parent, seed=2)
    removed = _zero_pruned_channels(parent, build_model(point, config=CONFIG))
    assert removed > 0
    x = _images()
    before = _logits(parent, x)
    child = prune_model(parent, point, config=CONFIG)
    np.testing.assert_allclose(_logits(child, x), before, rtol=1e-4, atol=1e-4)
    assert child.count_params() < parent.count_params()


@pytest.mark.parametrize("name", sorted(POINTS))
@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.8])
def test_the_pruned_models_parameters_are_the_target_from_the_kept_widths(name: str, fraction: float) -> None:
    from bcpareto.model import build_model
    from bcpareto.prune import prune_model

    point = replace(POINTS[name], prune=fraction)
    child = prune_model(_parent(point.parent), point, config=CONFIG)
    plain = pruned_point(point, image_size=32, channels=3, padding="same")
    assert child.count_params() == cost(point, image_size=32, channels=3, padding="same").n_params
    assert child.count_params() == build_model(plain, config=CONFIG).count_params()
    def keep(n: int) -> int:
        return max(1, int(n * fraction + 0.5))

    # every width times the fraction (a block tied to its input by a skip, or kept off one, within 1)
    assert all(abs(kept - keep(full)) <= 1 for kept, full in zip(plain.channels, point.parent.channels))
    assert plain.neurons == tuple(keep(n) for n in point.neurons)
    assert plain.stem == (keep(point.parent.stem_channels) if point.stem else 0)


def test_a_new_skip_connection_is_never_made() -> None:
    """8 -> 7 channels at stride 1 has no skip; halved, both would be 4 and add: it keeps 5."""
    point = replace(POINTS["inverted_residual"], prune=0.5)
    plain = pruned_point(point, image_size=32, channels=3, padding="same")
    assert plain.stem == 4 and plain.channels == (4, 4, 5, 6, 6)


@pytest.mark.slow
def test_the_pruned_int8_file_is_smaller_and_evaluates() -> None:
    from bcpareto.edge import convert, evaluate_tflite
    from bcpareto.prune import prune_model

    point = replace(POINTS["separable"], prune=0.5)
    parent = _parent(point.parent)
    child = prune_model(parent, point, config=CONFIG)
    x = _images(8)
    sizes = [len(convert(m, precision="int8", representative_images=x)) for m in (parent, child)]
    assert sizes[1] < sizes[0]
    out = evaluate_tflite(convert(child, precision="int8", representative_images=x), images=x,
                          labels=np.zeros(8, dtype=int), num_threads=1)
    assert out["probabilities"].shape == (8, 4)


PRUNE_GRID = [
    ["dense_layers", "neurons", "filters", "kernel_sizes", "block", "stem", "prune"],
    ["[1]", "[[8]]", "[[8, 8]]", "[3, 3]", "separable", "[8]", "[0.5]"],
]


@pytest.mark.parametrize("cell,fragment", [
    ("[0]", "the list has 0, not a fraction of channels kept in (0, 1]"),
    ("[1.5]", "the list has 1.5, not a fraction of channels kept in (0, 1]"),
    ("[-0.5]", "the list has -0.5, not a fraction"),
    ("['half']", "the list has 'half', not a number"),
    ("half", "'half' is not a Python-style list"),
    ("[0.5, 0.5]", "repeats 0.5"),
])
def test_a_bad_prune_cell_is_named_and_exits_2(tmp_path: Path, cell: str, fragment: str) -> None:
    sheet = write_sheet(tmp_path / "grid.xlsx", [PRUNE_GRID[0], [*PRUNE_GRID[1][:-1], cell]])
    result = CliRunner().invoke(cli, ["grid", str(sheet)])
    assert result.exit_code == 2, result.output
    assert "cell G2 (prune)" in result.output and fragment in result.output
    assert "(0, 1]" in result.output and "Traceback" not in result.output


def test_the_grid_shows_a_pruned_points_size(tmp_path: Path) -> None:
    rows = [PRUNE_GRID[0], [*PRUNE_GRID[1][:-1], "[0.5, 1]"]]
    result = CliRunner().invoke(cli, ["grid", str(write_sheet(tmp_path / "grid.xlsx", rows)),
                                      "--image-size", "32", "--json"])
    assert result.exit_code == 0, result.output
    half, whole = json.loads(result.output)["points"]
    assert half["prune"] == 0.5 and whole["prune"] == 1.0
    assert half["n_params"] < whole["n_params"]


@pytest.mark.train
@needs_data
def test_a_pruned_search_writes_its_parent_and_schedule(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "grid.xlsx", PRUNE_GRID)
    preset = _preset(tmp_path, "image_size = 32\nepochs = 2\nbatch_size = 8\nlatency_runs = 2\n")
    result = _search(tmp_path, sheet, preset=str(preset))
    assert result.exit_code == 0, result.output
    (row,) = _rows(tmp_path / "run")
    assert float(row["prune"]) == 0.5
    assert int(row["parent_n_params"]) > int(row["n_params"])
    assert int(row["parent_epochs"]) == 2 and int(row["prune_finetune_epochs"]) == 1
    assert int(row["n_params"]) == cost(replace(GridPoint(0, (8, 8), (3, 3), (8,), block="separable", stem=8),
                                                prune=0.5), image_size=32, channels=3, padding="same").n_params
    import keras

    from bcpareto.edge import evaluate_tflite

    (int8,) = sorted((tmp_path / "run").rglob("*.tflite"))
    out = evaluate_tflite(int8.read_bytes(), images=_images(4), labels=np.zeros(4, dtype=int), num_threads=1)
    assert out["probabilities"].shape == (4, 4) and float(row["tflite_int8_mb"]) > 0
    (saved,) = sorted((tmp_path / "run").rglob("*.keras"))
    assert keras.saving.load_model(saved, compile=False).count_params() == int(row["n_params"])
