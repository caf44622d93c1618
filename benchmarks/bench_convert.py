"""TFLite conversion per model: one SavedModel export per precision (before) against one export
shared by fp32, fp16 and int8 (edge.convert_all, what measure_edge does now).

Every model a search measures is converted three times; this times those conversions for grid
points of configs/edge_grid.xlsx (and configs/edge_grid_blocks.xlsx) at the edge preset's size,
on untrained models (conversion time does not depend on the weight values), checks that both ways
give the same bytes, and reports the median of --runs runs of each, alternating.

    python benchmarks/bench_convert.py [--grid-ids 0 6 7] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from _machine import cpu_name  # benchmarks/_machine.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid-ids", type=int, nargs="+", default=[0, 6, 7])
    parser.add_argument("--blocks-ids", type=int, nargs="*", default=[13],
                        help="grid ids of configs/edge_grid_blocks.xlsx (separable and inverted residual)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import numpy as np

    from bcpareto.quiet import import_tensorflow

    import_tensorflow()  # TensorFlow's start-up logs hidden, as the bcpareto command hides them
    from bcpareto.config import load_config
    from bcpareto.edge import convert, convert_all
    from bcpareto.gridspec import read_grid
    from bcpareto.model import build_model

    print(f"Machine: {cpu_name()}, {os.cpu_count()} cores, {platform.system()}, Python "
          f"{platform.python_version()}; {args.runs} runs each, alternating, median")
    print("\n| model | params | 3 exports (s) | 1 shared export (s) | saved | same bytes |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    cases = [("edge_grid.xlsx", "edge", g) for g in args.grid_ids]
    cases += [("edge_grid_blocks.xlsx", "blocks", g) for g in args.blocks_ids]
    for sheet, preset, grid_id in cases:
        config = load_config(preset)
        point = read_grid(ROOT / "configs" / sheet)[grid_id]
        config = config.at(point)
        model = build_model(point, config=config)
        pixels = np.random.default_rng(0).integers(
            0, 256, (200, config.image_size, config.image_size, config.channels), dtype=np.uint8)
        strip = config.strip_tflite_names
        separate_s, shared_s = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            separate = {p: convert(model, precision=p, strip_names=strip,
                                   representative_images=pixels if p == "int8" else None)
                        for p in ("fp32", "fp16", "int8")}
            separate_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            shared = convert_all(model, representative_images=pixels, strip_names=strip)
            shared_s.append(time.perf_counter() - start)
        before, after = statistics.median(separate_s), statistics.median(shared_s)
        print(f"| {sheet} grid {grid_id} ({point.block}) | {model.count_params():,} | {before:.2f} | {after:.2f} "
              f"| {1 - after / before:.0%} | {'yes' if separate == shared else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
