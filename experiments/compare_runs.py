"""Do two or more runs of the same grid give the same front, within run-to-run noise?

Reads metrics_log.csv files of one grid trained with the same preset (other seeds, other code,
other machines: e.g. `search --repeats 2`, or a run before and after a speed change) and prints,
per run: the front chosen on validation (val_accuracy up, tflite_int8_mb down), its grid ids,
its hypervolume on validation and on TEST (int8 TEST accuracy of the same models) against one
reference point shared by every run, the volume of the run's own front on int8 TEST (every
finished model judged on TEST: what the run found, an optimistic figure since TEST picks), and
the mean accuracies. Runs of different samplers compare too (tpe against the grid). Then, for each pair of runs, the
per-model paired difference of TEST accuracy (mean, mean absolute, largest) over the grid ids both
hold. A repeat of a run (`--repeats`) is a run of its own here (column `repeat`).

    python experiments/compare_runs.py docs/results/2026-11-26-edge-grouped/edge_grouped_metrics_log.csv runs/edge/metrics_log.csv
    python experiments/compare_runs.py runs/quick/metrics_log.csv --json out.json   # its repeats
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bcpareto.pareto import default_reference, hypervolume, nondominated_mask, to_costs  # noqa: E402

SIZE, VAL, TEST, INT8 = "tflite_int8_mb", "val_accuracy", "test_accuracy", "int8_test_accuracy"


def runs_of(paths: list[Path]) -> dict[str, pd.DataFrame]:
    """One table per (file, repeat), finished models only, indexed by grid id."""
    runs = {}
    for path in paths:
        table = pd.read_csv(path)
        if "status" in table:
            table = table[table["status"].isna()]
        table = table.dropna(subset=[SIZE, VAL, TEST, INT8])
        repeats = table["repeat"] if "repeat" in table else pd.Series(0, index=table.index)
        for repeat, part in table.groupby(repeats):
            name = f"{path}" + (f" (repeat {int(repeat)})" if repeats.nunique() > 1 else "")
            runs[name] = part.set_index("grid_id").sort_index()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path, nargs="+")
    parser.add_argument("--json", type=Path, help="write every figure here too")
    args = parser.parse_args()
    runs = runs_of(args.csv)
    if len(runs) < 2:
        raise SystemExit(f"need two runs to compare, found {len(runs)} in {', '.join(map(str, args.csv))}")
    every = pd.concat(runs.values())  # one reference point for every run: bcpareto plot's default rule
    ref_val = default_reference(to_costs(every[[SIZE, VAL]].to_numpy(float), directions=["min", "max"]))
    ref_int8 = default_reference(to_costs(every[[SIZE, INT8]].to_numpy(float), directions=["min", "max"]))
    ref_size, ref_acc = float(ref_val[0]), {VAL: float(-ref_val[1]), INT8: float(-ref_int8[1])}

    out: dict = {"reference": {"size": ref_size, **ref_acc}, "runs": {}, "pairs": []}
    print(f"Reference point shared by every run: {SIZE} {ref_size:.4f}, {VAL} {ref_acc[VAL]:.4f}, "
          f"{INT8} {ref_acc[INT8]:.4f}\n")
    print(f"| run | models | front (grid ids, chosen on validation) | HV validation | HV int8 TEST of the "
          f"front | HV int8 TEST, front on TEST | mean {VAL} | mean {TEST} | best {INT8} at <= 0.1 MB |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, run in runs.items():
        costs = to_costs(run[[SIZE, VAL]].to_numpy(float), directions=["min", "max"])
        front = run[nondominated_mask(costs)]
        hv_val = hypervolume(to_costs(front[[SIZE, VAL]].to_numpy(float), directions=["min", "max"]),
                             ref=[ref_size, -ref_acc[VAL]])
        hv_test = hypervolume(to_costs(front[[SIZE, INT8]].to_numpy(float), directions=["min", "max"]),
                              ref=[ref_size, -ref_acc[INT8]])
        on_test = to_costs(run[[SIZE, INT8]].to_numpy(float), directions=["min", "max"])
        hv_test_front = hypervolume(on_test[nondominated_mask(on_test)], ref=[ref_size, -ref_acc[INT8]])
        small = run[run[SIZE] <= 0.1]
        best = float(small[INT8].max()) if len(small) else float("nan")
        figures = {"models": len(run), "front": [int(g) for g in front.index], "hv_val": hv_val,
                   "hv_int8_test": hv_test, "hv_int8_test_front_on_test": hv_test_front,
                   "mean_val": float(run[VAL].mean()),
                   "mean_test": float(run[TEST].mean()), "best_int8_test_at_0.1MB": best}
        out["runs"][name] = figures
        print(f"| {name} | {len(run)} | {figures['front']} | {hv_val:.4f} | {hv_test:.4f} | "
              f"{hv_test_front:.4f} | {figures['mean_val']:.3f} | {figures['mean_test']:.3f} | {best:.3f} |")

    print("\n| runs | common models | mean TEST difference (first - second) | mean abs | largest abs |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for (a, ra), (b, rb) in itertools.combinations(runs.items(), 2):
        common = ra.index.intersection(rb.index)
        if not len(common):  # e.g. a sampler's models against the grid's
            continue
        diff = ra.loc[common, TEST].to_numpy(float) - rb.loc[common, TEST].to_numpy(float)
        pair = {"a": a, "b": b, "common": len(common), "mean": float(diff.mean()),
                "mean_abs": float(np.abs(diff).mean()), "max_abs": float(np.abs(diff).max())}
        out["pairs"].append(pair)
        print(f"| {a} vs {b} | {len(common)} | {pair['mean']:+.3f} | {pair['mean_abs']:.3f} | {pair['max_abs']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
