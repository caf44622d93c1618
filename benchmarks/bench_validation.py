"""Does validation predict TEST? Figures for issue 16 from one or more metrics_log.csv files.

For each CSV (one search, e.g. `bcpareto search --config edge`):

- mean |val_accuracy - test_accuracy| over its models (and the mean signed gap);
- Spearman rank correlation between val_accuracy and test_accuracy;
- choosing on validation at a size budget: for every budget B (each model's int8 size), the
  model with the best val_accuracy among those of size <= B, against the best TEST accuracy
  among the same models; the worst and mean shortfall in TEST points over all budgets.

    python benchmarks/bench_validation.py docs/results/2026-11-26-edge/edge_metrics_log.csv docs/results/2026-11-26-edge-grouped/edge_grouped_metrics_log.csv

numpy and the csv module only; runs in a second.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (as Spearman's rho needs)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def choice_shortfall(size: np.ndarray, val: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Per budget (each size): best TEST among models within it minus TEST of the val-chosen one."""
    gaps = []
    for budget in np.unique(size):
        inside = size <= budget
        chosen = np.flatnonzero(inside)[np.argmax(val[inside])]
        gaps.append(test[inside].max() - test[chosen])
    return np.array(gaps)


def report(path: Path, *, size_column: str) -> dict[str, float | str | int]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    val = np.array([float(r["val_accuracy"]) for r in rows])
    test = np.array([float(r["test_accuracy"]) for r in rows])
    size = np.array([float(r[size_column]) for r in rows])
    shortfall = choice_shortfall(size, val, test)
    return {
        "csv": str(path),
        "models": len(rows),
        "val_split": rows[0].get("val_split", "?"),
        "test_split": rows[0].get("test_split", "?"),
        "mean_abs_gap_points": 100 * float(np.mean(np.abs(val - test))),
        "mean_gap_points": 100 * float(np.mean(val - test)),
        "max_abs_gap_points": 100 * float(np.max(np.abs(val - test))),
        "spearman": spearman(val, test),
        "worst_choice_shortfall_points": 100 * float(shortfall.max()),
        "mean_choice_shortfall_points": 100 * float(shortfall.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="+", type=Path)
    parser.add_argument("--size", default="tflite_int8_mb", help="size column for the budgets")
    args = parser.parse_args()
    for path in args.csv:
        r = report(path, size_column=args.size)
        print(f"{r['csv']}: {r['models']} models; validation: {r['val_split']}; TEST: {r['test_split']}")
        print(f"  mean |val - test| {r['mean_abs_gap_points']:.1f} points (signed {r['mean_gap_points']:+.1f}, "
              f"max {r['max_abs_gap_points']:.1f}); Spearman rho {r['spearman']:.2f}")
        print(f"  chosen on validation within a {args.size} budget: TEST shortfall against the best "
              f"on TEST, worst {r['worst_choice_shortfall_points']:.1f} points, mean "
              f"{r['mean_choice_shortfall_points']:.1f}")


if __name__ == "__main__":
    main()
