"""Where the bytes of a small int8 TFLite file go, and the int8 size of every point of a sheet.

Builds each model untrained, with random BatchNorm statistics (see _like_trained), converts it
to full-integer int8 with bcpareto's own converter (calibrated on random pixels), and splits the
flatbuffer into:

  weights      int8 kernel bytes (conv, depthwise, dense)
  biases       int32 bias bytes (BatchNorm is folded into them)
  other data   any other constant buffer (shapes, metadata such as the runtime version)
  quant        per-tensor quantisation records: float32 scales + int64 zero points (per channel
               for kernels and biases, so a c-channel layer writes 12 bytes per channel twice)
  names        tensor, signature and metadata strings
  structure    the rest: flatbuffer tables, vtables, op and tensor index lists, alignment

and prints, for comparison, the file re-serialised without its strings (flatbuffer_utils.strip_strings).

    PYTHONPATH=src python experiments/probe_blocks.py                      # the issue's 14,460-parameter net
    PYTHONPATH=src python experiments/probe_blocks.py configs/edge_grid_blocks.xlsx   # every point's int8 size

Measured (TensorFlow 2.21, edge preset, 64 px): the 14,460-parameter separable net's int8 file is
38,304 bytes (the same net trained for one epoch: 0.0367 MiB = ~38,480): int8 weights 12,600
(32.9%), int32 biases 1,856 (4.8%), quantisation records 11,412 (29.8%: 951 scales, 24 bytes per
output channel of every conv and depthwise layer, for its kernel and its bias), strings 5,852
(15.3%), flatbuffer structure 6,464 (16.9%), other 120. Per-tensor instead of per-channel weight
quantisation (converter._experimental_disable_per_channel) gives 27,392 bytes, and without strings
20,960 (accuracy not measured). The plain 27,316-parameter net: 38,904 bytes, 69% weights.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bcpareto.config import load_config
from bcpareto.gridspec import GridPoint, read_grid
from bcpareto.model import build_model, cost

# The issue's first probe: a 3x3 stride-2 stem and six depthwise-separable blocks, 14,460 params.
ISSUE_PROBE = GridPoint(0, (16, 24, 32, 48, 64, 64), (3,) * 6, (), block="separable",
                        strides=(1, 2, 1, 2, 1, 2), stem=16)


def int8_bytes(point: GridPoint, *, config: Any) -> bytes:
    import keras

    from bcpareto.export import convert

    model = build_model(point, config=config)
    _like_trained(model)
    shape = (32, config.image_size, config.image_size, config.channels)
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    tflite = convert(model, precision="int8", representative_images=pixels)
    keras.backend.clear_session()
    return tflite


def _like_trained(model: Any) -> None:
    """Give every BatchNorm layer distinct statistics, as training does.

    A fresh BatchNorm (gamma 1, beta 0, mean 0, variance 1) folds into all-zero biases, which
    the converter stores more compactly than a trained model's: 14% smaller files than the
    trained ones in a smoke run. Random statistics reproduce the trained size.
    """
    import keras

    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = (w.shape for w in layer.get_weights())
            layer.set_weights([rng.uniform(0.5, 1.5, gamma), rng.normal(0, 0.1, beta),
                               rng.normal(0, 0.1, mean), rng.uniform(0.5, 1.5, variance)])


def breakdown(tflite: bytes) -> dict[str, int]:
    """Bytes of the int8 flatbuffer by kind (they add up to the file size)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    kinds = {"weights": 0, "biases": 0, "other data": 0, "quant": 0, "names": 0}
    counts = {"ops": 0, "tensors": 0, "constant tensors": 0, "quantised channels": 0}
    seen: set[int] = set()
    for subgraph in model.subgraphs:
        counts["ops"] += len(subgraph.operators)
        counts["tensors"] += len(subgraph.tensors)
        kinds["names"] += len(subgraph.name or b"")
        for tensor in subgraph.tensors:
            kinds["names"] += len(tensor.name or b"")
            q = tensor.quantization
            if q is not None:
                n_scale = 0 if q.scale is None else len(q.scale)
                n_zero = 0 if q.zeroPoint is None else len(q.zeroPoint)
                kinds["quant"] += 4 * n_scale + 8 * n_zero
                kinds["quant"] += 4 * (0 if q.min is None else len(q.min)) + 4 * (0 if q.max is None else len(q.max))
                counts["quantised channels"] += n_scale
            data = model.buffers[tensor.buffer].data if tensor.buffer else None
            if data is None or tensor.buffer in seen:
                continue
            seen.add(tensor.buffer)
            counts["constant tensors"] += 1
            if tensor.type == schema.TensorType.INT8:
                kinds["weights"] += len(data)
            elif tensor.type == schema.TensorType.INT32 and len(tensor.shape) == 1 and q is not None and q.scale is not None:
                kinds["biases"] += len(data)
            else:
                kinds["other data"] += len(data)
    for index, buffer in enumerate(model.buffers):
        if index not in seen and buffer.data is not None:
            kinds["other data"] += len(buffer.data)
    for meta in model.metadata or []:
        kinds["names"] += len(meta.name or b"")
    for signature in model.signatureDefs or []:
        kinds["names"] += len(signature.signatureKey or b"")
        for tensor_map in (signature.inputs or []) + (signature.outputs or []):
            kinds["names"] += len(tensor_map.name or b"")
    kinds["structure"] = len(tflite) - sum(kinds.values())
    stripped = bytearray(tflite)
    stripped_model = flatbuffer_utils.read_model_from_bytearray(stripped)
    flatbuffer_utils.strip_strings(stripped_model)
    repacked = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    return {
        "file": len(tflite),
        **kinds,
        **counts,
        "repacked": len(flatbuffer_utils.convert_object_to_bytearray(repacked)),
        "stripped": len(flatbuffer_utils.convert_object_to_bytearray(stripped_model)),
    }


def ops_histogram(tflite: bytes) -> dict[str, int]:
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    names: dict[str, int] = {}
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
            names[name] = names.get(name, 0) + 1
    return names


def _report(point: GridPoint, *, config: Any) -> None:
    c = cost(point, image_size=config.image_size, channels=config.channels, padding=config.padding)
    tflite = int8_bytes(point, config=config)
    parts = breakdown(tflite)
    print(f"{point.describe()}: {c.n_params:,} parameters, {c.macs / 1e6:.2f} M multiply-adds at "
          f"{config.image_size} px")
    print(f"  int8 .tflite: {parts['file']:,} bytes; {parts['ops']} ops, {parts['tensors']} tensors "
          f"({parts['constant tensors']} constant), {parts['quantised channels']:,} quantisation scales")
    for kind in ("weights", "biases", "other data", "quant", "names", "structure"):
        print(f"  {kind:<11} {parts[kind]:>8,} bytes  {parts[kind] / parts['file']:6.1%}")
    per_tensor = (parts["file"] - parts["weights"] - parts["biases"]) / parts["tensors"]
    print(f"  not weights or biases: {parts['file'] - parts['weights'] - parts['biases']:,} bytes = "
          f"{per_tensor:.0f} bytes per tensor; without strings (strip_strings, repacked): "
          f"{parts['stripped']:,} bytes (the same file repacked: {parts['repacked']:,})")
    print("  ops:", ", ".join(f"{n} {k}" for k, n in sorted(ops_histogram(tflite).items())))


def _sheet_table(path: Path, *, config: Any) -> None:
    print(f"{path} at {config.image_size} px (preset '{config.name}'), int8 sizes of untrained models:")
    print(f"{'id':>3}  {'model':<86} {'n_params':>9} {'MMACs':>7} {'int8_KB':>8} {'weights%':>8}")
    for point in read_grid(path):
        c = cost(point, image_size=config.image_size, channels=config.channels, padding=config.padding)
        parts = breakdown(int8_bytes(point, config=config))
        print(f"{point.grid_id:>3}  {point.describe():<86} {c.n_params:>9,} {c.macs / 1e6:>7.1f} "
              f"{parts['file'] / 1024:>8.1f} {parts['weights'] / parts['file']:>8.0%}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sheet", nargs="?", type=Path, help="a grid sheet: every point's int8 size")
    parser.add_argument("--config", default="edge", help="preset (default: edge, 64 px)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    config = load_config(args.config)
    if args.sheet:
        _sheet_table(args.sheet, config=config)
        return
    _report(ISSUE_PROBE, config=config)
    plain = GridPoint(0, (8, 16, 32, 64), (3, 3, 3, 3), (32,))  # the edge grid's smallest plain model
    _report(plain, config=config)


if __name__ == "__main__":
    main()
