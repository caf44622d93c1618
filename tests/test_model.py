"""Model building: analytic costs agree with Keras; the earlier sizes reproduce; collapse is caught."""

from __future__ import annotations

import csv

import pytest

from bcpareto.config import load_config
from bcpareto.errors import TrialFailed
from bcpareto.gridspec import GridPoint, read_grid
from bcpareto.model import build_model, cost, h5_size_mb, min_image_size
from bcpareto.trial import compile_model

from .conftest import FIXTURES


@pytest.mark.slow  # builds the 24 seed models at 224 px
def test_all_24_earlier_sizes_reproduce_within_0_1_percent() -> None:
    config = load_config("seed")
    points = read_grid(FIXTURES / "seed_hyper_paremetes.xlsx")
    with open(FIXTURES / "seed_metrics_log_epoch_10.csv") as handle:
        logged = [float(r["model_size(MB)"]) for r in csv.DictReader(handle)]
    for point, expected in zip(points, logged, strict=True):
        model = build_model(point, config=config)
        compile_model(model, config, steps_per_epoch=1)
        measured = h5_size_mb(model)
        assert abs(measured - expected) / expected < 1e-3, (point.grid_id, measured, expected)
        assert model.count_params() == cost(point, image_size=224, channels=1, padding="valid").n_params


@pytest.mark.parametrize("preset,size", [("default", 64), ("default", 96), ("seed", 224)])
def test_analytic_params_match_keras(preset: str, size: int) -> None:
    config = load_config(preset, image_size=size)
    point = GridPoint(grid_id=0, filters=(6, 10, 12), kernel_sizes=(5, 3, 3), neurons=(20, 7))
    model = build_model(point, config=config)
    measured = cost(point, image_size=size, channels=config.channels, padding=config.padding)
    assert model.count_params() == measured.n_params
    assert model.output_shape == (None, 4)


def test_macs_of_a_one_block_model_by_hand() -> None:
    point = GridPoint(grid_id=0, filters=(8,), kernel_sizes=(3,), neurons=(16,))
    c = cost(point, image_size=32, channels=3, padding="same")
    assert c.macs == 32 * 32 * 3 * 3 * 3 * 8 + 8 * 16 + 16 * 4
    assert c.feature_sizes == (16,)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_feature_map_collapse_is_reported_with_the_minimum_size(padding: str) -> None:
    point = GridPoint(grid_id=7, filters=(4, 4, 4, 4, 4, 4), kernel_sizes=(7, 5, 5, 3, 3, 3), neurons=(8,))
    need = min_image_size(point, padding=padding)
    cost(point, image_size=need, channels=3, padding=padding)  # builds at the minimum
    with pytest.raises(TrialFailed, match=f"grid point 7.*at least {need} px"):
        cost(point, image_size=need - 1, channels=3, padding=padding)
