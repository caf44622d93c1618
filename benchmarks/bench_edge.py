"""Float32 against int8 TFLite for the models on the front of a real search.

Reads a metrics_log.csv written by `bcpareto search` with edge metrics on (the default) and,
for each model on the front (maximise test_accuracy, minimise tflite_int8_mb), prints the
float32 and int8 TFLite sizes and CPU latencies (LiteRT interpreter, 1 thread, median), their
ratios, and the accuracy change on the same TEST images. The figures come from the search
itself, measured per model as the CSV's columns describe; this script only reads them.

    bcpareto search configs/edge_grid.xlsx --run-dir runs/edge     # default preset, real data
    python benchmarks/bench_edge.py runs/edge/metrics_log.csv [--all]
"""

from __future__ import annotations

import argparse
import csv
import platform
from pathlib import Path

import numpy as np

from bcpareto.pareto import nondominated_mask, to_costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path)
    parser.add_argument("--all", action="store_true", help="every model, not only the front")
    parser.add_argument("--study", help="only rows of this study (default: the last study in the file)")
    args = parser.parse_args()

    with open(args.csv, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("tflite_int8_mb")]
    if not rows:
        raise SystemExit(f"{args.csv}: no rows with edge metrics (search with --edge)")
    study = args.study or rows[-1]["study"]
    rows = [r for r in rows if r["study"] == study]
    values = np.array([[float(r["test_accuracy"]), float(r["tflite_int8_mb"])] for r in rows])
    front = nondominated_mask(to_costs(values, directions=["max", "min"]))
    chosen = [r for r, on in zip(rows, front) if on or args.all]
    chosen.sort(key=lambda r: float(r["tflite_int8_mb"]))

    print(f"Study {study}: {len(rows)} models, {int(front.sum())} on the front "
          f"(test_accuracy vs tflite_int8_mb); {rows[0]['test_split']}, n_test {rows[0]['n_test']}; "
          f"latency: LiteRT, {rows[0]['latency_num_threads']} thread, median; machine: "
          f"{platform.machine()}, {platform.system()}\n")
    print("| grid_id | n_params | fp32 MB | int8 MB | size ratio | fp32 ms | int8 ms | latency ratio "
          "| test acc (Keras fp32) | int8 test acc | change |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in chosen:
        fp32_mb, int8_mb = float(r["tflite_fp32_mb"]), float(r["tflite_int8_mb"])
        fp32_ms, int8_ms = float(r["fp32_latency_ms"]), float(r["latency_ms"])
        acc, int8_acc = float(r["test_accuracy"]), float(r["int8_test_accuracy"])
        print(f"| {r['grid_id']} | {int(r['n_params']):,} | {fp32_mb:.3f} | {int8_mb:.3f} | "
              f"{fp32_mb / int8_mb:.2f}x | {fp32_ms:.3f} | {int8_ms:.3f} | {fp32_ms / int8_ms:.2f}x | "
              f"{acc:.3f} | {int8_acc:.3f} | {100 * (int8_acc - acc):+.1f} pt |")


if __name__ == "__main__":
    main()
