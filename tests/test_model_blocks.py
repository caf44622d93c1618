"""Block types in the grid: the sheet's optional columns, exact costs, int8 conversion, training."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from bcpareto.cli import cli
from bcpareto.config import load_config
from bcpareto.errors import GridSpecError, TrialFailed
from bcpareto.gridspec import GridPoint, read_grid
from bcpareto.model import build_model, cost, min_image_size

from .blocks import POINTS
from .conftest import BLOOD_CELLS, needs_data, write_sheet



def _independent_macs(model: Any) -> int:
    """Multiply-adds per image from the built model's own layer shapes and kernels."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw, c_in, multiplier = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += h * w * kh * kw * c_in * multiplier
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, c_in, c_out = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += h * w * kh * kw * c_in * c_out
        elif isinstance(layer, keras.layers.Dense):
            c_in, c_out = layer.kernel.shape
            total += c_in * c_out
    return int(total)


# --- exact costs ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(POINTS))
@pytest.mark.parametrize("padding,size", [("same", 64), ("same", 33), ("valid", 72)])
@pytest.mark.slow
def test_params_and_macs_match_keras_for_every_block_type(name: str, padding: str, size: int) -> None:
    point = POINTS[name]
    config = load_config("edge", image_size=size, padding=padding)
    model = build_model(point, config=config)
    measured = cost(point, image_size=size, channels=3, padding=padding)
    assert model.count_params() == measured.n_params
    assert _independent_macs(model) == measured.macs
    assert model.output_shape == (None, 4)


def test_inverted_residual_adds_the_input_exactly_where_the_shape_is_kept() -> None:
    import keras

    point = POINTS["inverted_residual"]  # stem 8 -> blocks 8 (s2), 8 (s1: skip), 16 (s2), 16 (s1: skip)
    model = build_model(point, config=load_config("edge", image_size=32))
    adds = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert adds == ["block2_add", "block4_add"]
    expands = [layer.name for layer in model.layers if layer.name.endswith("_expand")]
    assert len(expands) == 4
    no_expansion = build_model(POINTS["inverted_residual_t1"], config=load_config("edge", image_size=32))
    assert not [layer for layer in no_expansion.layers if layer.name.endswith("_expand")]


def test_separable_block_costs_by_hand() -> None:
    # 32 px RGB -> depthwise 3x3 stride 2 (16x16) -> pointwise 8 -> dense 4
    point = GridPoint(0, (8,), (3,), (), block="separable")
    c = cost(point, image_size=32, channels=3, padding="same")
    assert c.n_params == 9 * 3 + 4 * 3 + 3 * 8 + 4 * 8 + (8 + 1) * 4
    assert c.macs == 16 * 16 * (9 * 3 + 3 * 8) + 8 * 4
    assert c.feature_sizes == (16,)


def test_width_multiplies_filters_and_stem_with_rounding() -> None:
    point = GridPoint(0, (8, 10, 3), (3, 3, 3), (4,), stem=12, width=0.25)
    assert point.channels == (2, 3, 1) and point.stem_channels == 3  # 2.5 rounds up, 0.75 -> 1


@pytest.mark.parametrize("name", sorted(POINTS))
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_feature_map_collapse_is_reported_with_the_minimum_size(name: str, padding: str) -> None:
    point = POINTS[name]
    need = min_image_size(point, padding=padding)
    cost(point, image_size=need, channels=3, padding=padding)  # builds at the minimum
    if need == 1:  # strided 'same' convolutions never reach zero
        assert padding == "same" and point.block != "conv"
        return
    with pytest.raises(TrialFailed, match=f"grid point {point.grid_id}.*at least {need} px"):
        cost(point, image_size=need - 1, channels=3, padding=padding)


def test_collapse_in_the_stem_names_the_stem() -> None:
    point = GridPoint(3, (8,), (3,), (), block="separable", stem=8)
    with pytest.raises(TrialFailed, match="collapses in the stem at 2 px.*at least 7 px"):
        cost(point, image_size=2, channels=3, padding="valid")


def test_a_plain_point_names_only_the_earlier_columns() -> None:
    point = GridPoint(4, (4, 8), (3, 3), (8,))
    assert list(point.params()) == ["grid_id", "dense_layers", "neurons", "filters", "kernel_sizes"]
    assert point.describe() == "filters [4,8] k [3,3], dense [8]"
    ir = GridPoint(4, (4, 8), (3, 3), (8,), block="inverted_residual", strides=(1, 2), stem=8, width=0.5)
    assert ir.params() == {
        "grid_id": 4, "dense_layers": 1, "neurons": "[8]", "filters": "[4,8]", "kernel_sizes": "[3,3]",
        "block": "inverted_residual", "strides": "[1,2]", "stem": 8, "width": 0.5, "expansion": 6,
    }
    assert ir.describe() == ("inverted_residual filters [4,8] k [3,3] strides [1,2] stem 8 width 0.5 "
                             "expansion 6, dense [8]")


# --- int8 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["conv_stem_strides_width", "separable", "inverted_residual"])
@pytest.mark.slow
def test_int8_conversion_stays_full_integer(name: str) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from bcpareto.edge import convert

    model = build_model(POINTS[name], config=load_config("edge", image_size=32))
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    tflite = convert(model, precision="int8", representative_images=images)
    interpreter = Interpreter(model_content=tflite)
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    assert interpreter.get_output_details()[0]["dtype"] == np.uint8
    float_tensors = [t["name"] for t in interpreter.get_tensor_details() if t["dtype"] == np.float32]
    assert not float_tensors, float_tensors


# --- the sheet --------------------------------------------------------------------------------

HEADER = ["dense_layers", "neurons", "filters", "kernel_sizes", "block", "strides", "stem", "width", "expansion",
          "image_size"]
PLAIN = ["[1]", "[[8]]", "[[4, 8], [8, 16]]", "[3, 3]"]


def test_optional_columns_cross_block_stem_width_and_expansion(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "g.xlsx", [
        HEADER,
        [*PLAIN, "[conv, inverted_residual]", "[1, 2]", "[0, 8]", "[1, 0.5]", "[2, 6]"],
        [*PLAIN],  # blank optional cells: the earlier model
    ])
    points = read_grid(path)
    # conv: 2 filter lists x 2 stems x 2 widths; inverted_residual: the same x 2 expansions; plain: 2
    assert len(points) == 8 + 16 + 2 and [p.grid_id for p in points] == list(range(26))
    assert [(p.block, p.filters, p.stem, p.width) for p in points[:3]] == [
        ("conv", (4, 8), 0, 1.0), ("conv", (4, 8), 0, 0.5), ("conv", (4, 8), 8, 1.0)]
    assert {p.expansion for p in points[:8]} == {6}  # only inverted_residual blocks expand
    assert [(p.filters, p.stem, p.width, p.expansion) for p in points[8:11]] == [
        ((4, 8), 0, 1.0, 2), ((4, 8), 0, 1.0, 6), ((4, 8), 0, 0.5, 2)]
    assert all(p.strides == (1, 2) for p in points[:24])
    assert points[24] == GridPoint(24, (4, 8), (3, 3), (8,)) and points[25].filters == (8, 16)


def test_image_size_column_crosses_innermost_and_wins_over_the_preset(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "g.xlsx", [
        HEADER,
        [*PLAIN, "[separable]", None, None, "[1, 2]", None, "[48, 64]"],
        [*PLAIN],  # no image size: the preset's
    ])
    points = read_grid(path)
    assert [(p.filters, p.width, p.image_size) for p in points[:4]] == [
        ((4, 8), 1.0, 48), ((4, 8), 1.0, 64), ((4, 8), 2.0, 48), ((4, 8), 2.0, 64)]
    assert len(points) == 8 + 2 and points[8].image_size == 0 and "image_size" not in points[8].params()
    assert points[1].params()["image_size"] == 64 and "image_size 64" in points[1].describe()
    config = load_config("edge", image_size=32)  # --image-size 32: the sheet's cells still win
    assert config.at(points[0]).image_size == 48 and config.at(points[8]) is config
    model = build_model(points[0], config=config)
    assert tuple(model.input_shape) == (None, 48, 48, 3)
    at_48 = cost(points[0], image_size=48, channels=3, padding="same")
    assert model.count_params() == at_48.n_params
    result = CliRunner().invoke(cli, ["grid", str(path), "--config", "edge", "--json"])
    assert result.exit_code == 0, result.output
    import json

    macs = [p["macs"] for p in json.loads(result.output)["points"]]
    assert macs[0] == at_48.macs and macs[1] == cost(points[1], image_size=64, channels=3, padding="same").macs


def test_an_image_size_too_small_for_a_point_is_caught_before_training(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "g.xlsx", [HEADER, [*PLAIN[:2], "[[4, 8, 8, 8]]", "[3, 3, 3, 3]",
                                                      None, None, None, None, None, "[8, 64]"]])
    result = CliRunner().invoke(cli, ["search", str(sheet), "--config", "edge", "--data-dir", str(tmp_path),
                                      "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "grid point 0" in result.output and "8/64 px" in result.output
    assert not (tmp_path / "run").exists()


def test_block_words_need_no_quotes_and_excel_numbers_are_lists(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "g.xlsx", [
        ["Dense Layers", "Neurons", "Filters", "Kernel Sizes", "Block Type", "Stride", "Stem filters",
         "Width multiplier", "Expansion ratio"],
        [*PLAIN, "Inverted-Residual", "[2, 2, 2,]", 16, 0.75, 4],
        [*PLAIN, "['separable', plain,]", None, None, None, None],
    ])
    points = read_grid(path)
    assert [p.block for p in points] == ["inverted_residual"] * 2 + ["separable"] * 2 + ["conv"] * 2
    assert points[0].stem == 16 and points[0].width == 0.75 and points[0].expansion == 4
    assert all(p.strides == () for p in points)  # all 2: the default, one spelling per model


def test_an_earlier_sheet_with_block_columns_left_blank_is_unchanged(tmp_path: Path) -> None:
    old = write_sheet(tmp_path / "old.xlsx", [HEADER[:4], PLAIN])
    new = write_sheet(tmp_path / "new.xlsx", [HEADER, [*PLAIN, "conv", "[2, 2]", "[0]", "[1]", None]])
    assert read_grid(old) == read_grid(new)
    assert [list(p.params()) for p in read_grid(new)] == [list(GridPoint(0, (1,), (1,), (1,)).params())] * 2


def test_zero_dense_layers_put_the_softmax_after_the_pooling(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "g.xlsx", [HEADER[:4], ["[0, 1]", "[[], [8]]", "[[4, 8]]", "[3, 3]"]])
    points = read_grid(path)
    assert [p.neurons for p in points] == [(), (8,)] and points[0].dense_layers == 0
    assert points[0].params()["neurons"] == "[]"
    model = build_model(points[0], config=load_config("edge", image_size=32))
    assert model.count_params() == cost(points[0], image_size=32, channels=3, padding="same").n_params


@pytest.mark.parametrize("dense,neurons,fragments", [
    ("[-1]", "[[8]]", ["cell A2", "-1, not a non-negative integer"]),
    ("[1]", "[[]]", ["cell B2", "list 1 has 0 entries but its dense-layer count is 1"]),
    ("[0]", "[[8]]", ["cell B2", "list 1 has 1 entries but its dense-layer count is 0"]),
])
def test_bad_zero_dense_cells_exit_2(tmp_path: Path, dense: str, neurons: str, fragments: list[str]) -> None:
    path = write_sheet(tmp_path / "bad.xlsx", [HEADER[:4], [dense, neurons, "[[4, 8]]", "[3, 3]"]])
    result = CliRunner().invoke(cli, ["grid", str(path)])
    assert result.exit_code == 2, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


BAD_CELLS = {
    "unknown block": (4, "[conv, resnet]", ["cell E2 (block)", "'resnet' is not a block type",
                                            "conv, separable, inverted_residual"]),
    "block number": (4, 3, ["cell E2 (block)", "not a list of block types"]),
    "block empty list": (4, "[]", ["cell E2", "names no block type"]),
    "block twice": (4, "[conv, plain]", ["cell E2", "'plain' appears twice"]),
    "block empty entry": (4, "[conv,, separable]", ["cell E2", "empty entry"]),
    "block bracket": (4, "[conv, separable", ["cell E2", "unbalanced brackets"]),
    "stride 3": (5, "[2, 3]", ["cell F2 (strides)", "3, not a stride of 1 or 2", "each 1 or 2"]),
    "short strides": (5, "[2]", ["cell F2 (strides)", "1 strides", "expected at least 2"]),
    "stride text": (5, "[2, x]", ["cell F2", "not a Python-style list"]),
    "negative stem": (6, "[-1]", ["cell G2 (stem)", "-1, not 0 or a positive integer"]),
    "fractional stem": (6, 8.5, ["cell G2 (stem)", "8.5"]),
    "zero width": (7, "[0.5, 0]", ["cell H2 (width)", "0, not a positive number"]),
    "width word": (7, "wide", ["cell H2 (width)", "not a Python-style list"]),
    "repeated width": (7, "[1, 1.0]", ["cell H2 (width)", "repeats"]),
    "zero expansion": (8, "[0]", ["cell I2 (expansion)", "not a positive integer"]),
    "fractional expansion": (8, "[2.5]", ["cell I2 (expansion)", "2.5"]),
    "tiny image": (9, "[48, 4]", ["cell J2 (image_size)", "4, not a whole number of pixels from 8 to 512",
                                  "e.g. [48, 64]"]),
    "huge image": (9, 1024, ["cell J2 (image_size)", "1024"]),
    "fractional image": (9, "[47.5]", ["cell J2 (image_size)", "47.5"]),
    "image word": (9, "large", ["cell J2 (image_size)", "not a Python-style list"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CELLS))
def test_a_bad_block_cell_exits_2_naming_file_sheet_and_cell(tmp_path: Path, case: str) -> None:
    column, value, fragments = BAD_CELLS[case]
    row: list[object] = [*PLAIN, "[conv, inverted_residual]", None, None, None, None, None]
    row[column] = value
    path = write_sheet(tmp_path / "bad.xlsx", [HEADER, row], title="Grid")
    result = CliRunner().invoke(cli, ["grid", str(path)])
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and "sheet 'Grid'" in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_an_expansion_without_an_inverted_residual_block_is_an_error(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "bad.xlsx", [HEADER, [*PLAIN, "[separable]", None, None, None, "[4]"]])
    with pytest.raises(GridSpecError, match=r"cell I2 \(expansion\).*blocks are separable"):
        read_grid(path)


def test_every_bad_block_cell_is_reported_at_once(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "bad.xlsx", [
        HEADER,
        [*PLAIN, "[conv]", "[2, 9]", None, None, None],
        ["x", *PLAIN[1:], "[dense]", None, "[-3]", "[0]", None],
    ])
    with pytest.raises(GridSpecError) as err:
        read_grid(path)
    for ref in ("cell F2", "cell A3", "cell E3", "cell G3", "cell H3"):
        assert ref in str(err.value), str(err.value)


def test_grid_command_prints_block_models_with_their_costs(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "g.xlsx", [HEADER, [*PLAIN, "[separable]", "[1, 2]", "[8]", None, None]])
    result = CliRunner().invoke(cli, ["grid", str(path), "--config", "edge"])
    assert result.exit_code == 0, result.output
    for point in read_grid(path):
        assert f"{cost(point, image_size=64, channels=3, padding='same').n_params:,}" in result.output


# --- training ---------------------------------------------------------------------------------


@needs_data
@pytest.mark.train
@pytest.mark.parametrize("name", ["separable_stem_width", "inverted_residual"])
def test_a_block_model_trains_and_measures_on_real_images(name: str) -> None:
    from bcpareto.data import load_data
    from bcpareto.trial import train_and_evaluate

    config = load_config("edge", image_size=32, epochs=1, latency_runs=2)
    data = load_data(BLOOD_CELLS, image_size=32, color_mode="rgb", cell_crop=config.cell_crop,
                     limit_per_class=4)
    result = train_and_evaluate(POINTS[name], config=config, data=data, verbose=0)
    row = result.row
    assert row["block"] == POINTS[name].block and row["epochs"] == 1
    assert row["n_params"] == cost(POINTS[name], image_size=32, channels=3, padding="same").n_params
    assert 0 <= row["test_accuracy"] <= 1 and 0 <= row["int8_test_accuracy"] <= 1
    # no int8 < fp32 here: at ~1-5k parameters per-op quantisation records outweigh the weights
    assert row["tflite_int8_mb"] > 0 and row["tflite_fp32_mb"] > 0


@needs_data
@pytest.mark.train
def test_search_logs_block_columns_only_for_block_models(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "g.xlsx", [
        HEADER,
        ["[1]", "[[8]]", "[[4, 8]]", "[3, 3]"],
        ["[1]", "[[8]]", "[[4, 8]]", "[3, 3]", "separable", "[1, 2]", "[8]", None, None],
    ])
    args = ["search", "--no-edge", str(sheet), "--config", "edge", "--image-size", "32", "--epochs", "1",
            "--limit-per-class", "4", "--data-dir", str(BLOOD_CELLS), "--run-dir", str(tmp_path / "run")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "separable filters [4,8] k [3,3] strides [1,2] stem 8" in result.output
    with open(tmp_path / "run" / "metrics_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["grid_id"], r["block"], r["strides"], r["stem"]) for r in rows] == [
        ("0", "", "", ""), ("1", "separable", "[1,2]", "8")]


@needs_data
@pytest.mark.train
def test_one_search_trains_each_point_at_its_own_image_size(tmp_path: Path) -> None:
    """Two sizes in one sheet: each model is built, trained, converted and logged at its own size,
    on the same images and split; the TFLite files lose their names under the blocks preset."""
    sheet = write_sheet(tmp_path / "g.xlsx", [
        HEADER, ["[0]", "[[]]", "[[4, 8]]", "[3, 3]", "separable", None, "[8]", None, None, "[32, 40]"]])
    args = ["search", str(sheet), "--config", "blocks", "--epochs", "1", "--limit-per-class", "4",
            "--data-dir", str(BLOOD_CELLS), "--run-dir", str(tmp_path / "run")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "image sizes of this grid: 32 px, 40 px" in result.output
    with open(tmp_path / "run" / "metrics_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["grid_id"], r["image_size"]) for r in rows] == [("0", "32"), ("1", "40")]
    assert rows[0]["n_test"] == rows[1]["n_test"] and rows[0]["n_val"] == rows[1]["n_val"]
    assert int(rows[1]["macs"]) > int(rows[0]["macs"]) and rows[0]["n_params"] == rows[1]["n_params"]
    from ai_edge_litert.interpreter import Interpreter

    for grid_id, side in ((0, 32), (1, 40)):
        tflite = next((tmp_path / "run" / "runs").glob(f"*/grid_{grid_id}_int8.tflite")).read_bytes()
        interpreter = Interpreter(model_content=tflite)
        assert tuple(interpreter.get_input_details()[0]["shape"]) == (1, side, side, 3)
        assert not interpreter.get_signature_list() and b"pixels" not in tflite  # names stripped
    for fmt in ("tflite-int8", "tflite-fp32"):
        out = tmp_path / fmt
        result = CliRunner().invoke(cli, ["export", "1", "--format", fmt, "--out", str(out),
                                          "--run-dir", str(tmp_path / "run")])
        assert result.exit_code == 0, result.output
        import json

        card = json.loads((out / "model_card.json").read_text())
        assert card["input"]["shape"][-3:-1] == [40, 40] and card["training_config"]["image_size"] == 40
        assert b"pixels" not in next(out.glob("*.tflite")).read_bytes()  # fp32 converted anew: stripped too


@pytest.mark.slow  # TFLite conversions of real models (TensorFlow's converter: 5-25 s each)
def test_stripping_names_shrinks_the_file_and_changes_no_output() -> None:
    from ai_edge_litert.interpreter import Interpreter

    from bcpareto.edge import convert

    config = load_config("edge", image_size=32)
    model = build_model(POINTS["separable_stem_width"], config=config)
    pixels = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    named = convert(model, precision="int8", representative_images=pixels)
    stripped = convert(model, precision="int8", representative_images=pixels, strip_names=True)
    assert len(named) - len(stripped) > 1000 and b"pixels" in named and b"pixels" not in stripped
    outputs = []
    for flatbuffer in (named, stripped):
        interpreter = Interpreter(model_content=flatbuffer)
        interpreter.allocate_tensors()
        given, taken = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        answers = []
        for image in pixels[:4]:
            interpreter.set_tensor(given["index"], image[None])
            interpreter.invoke()
            answers.append(interpreter.get_tensor(taken["index"]).copy())
        outputs.append(np.concatenate(answers))
    np.testing.assert_array_equal(outputs[0], outputs[1])


@pytest.mark.slow  # TFLite conversions of real models (TensorFlow's converter: 5-25 s each)
@pytest.mark.parametrize("name", ["separable_stem_width", "inverted_residual", "conv"])
def test_per_tensor_int8_has_one_scale_per_weight_tensor_and_a_smaller_file(name: str) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from bcpareto.edge import convert, evaluate_tflite

    config = load_config("edge", image_size=32)
    model = build_model(POINTS[name], config=config)
    pixels = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    per_channel = convert(model, precision="int8", representative_images=pixels)
    per_tensor = convert(model, precision="int8", representative_images=pixels, per_tensor=True)
    assert len(per_tensor) < len(per_channel)

    def most_scales(flatbuffer: bytes) -> int:
        interpreter = Interpreter(model_content=flatbuffer)
        return max(len(d["quantization_parameters"]["scales"]) for d in interpreter.get_tensor_details())

    assert most_scales(per_channel) > 1 and most_scales(per_tensor) == 1
    scored = evaluate_tflite(per_tensor, images=pixels, labels=np.zeros(16, dtype=int))
    assert scored["probabilities"].shape == (16, 4)
    np.testing.assert_allclose(scored["probabilities"].sum(axis=1), 1.0, atol=0.05)  # a softmax, dequantised


@pytest.mark.slow  # TFLite conversions of real models (TensorFlow's converter: 5-25 s each)
@pytest.mark.parametrize("verbose", [False, True])
def test_converter_and_interpreter_lines_show_only_with_verbose(capfd, monkeypatch, verbose: bool) -> None:
    from bcpareto.edge import convert, load_interpreter
    from bcpareto.quiet import VERBOSE_ENV

    monkeypatch.setenv(VERBOSE_ENV, "1" if verbose else "0")
    model = build_model(POINTS["separable"], config=load_config("edge", image_size=32))
    pixels = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    capfd.readouterr()
    load_interpreter(convert(model, precision="int8", representative_images=pixels), num_threads=1)
    err = capfd.readouterr().err
    assert ("fully_quantize" in err) is verbose, err
