"""What a K-fold CV search costs against a single-holdout search of the same grid, from their logs
(no training): issue 24's "cost" and issue 25's packed-training figures.

    python benchmarks/bench_search_cost.py HOLDOUT/metrics_log.csv CV/metrics_log.csv [--json OUT.json]

Both runs must be of the same grid and preset, on the same machine and day (run one after the
other; the logs carry no machine load). Printed:
- the wall of each search, from the `Done: ... N s)` line of the `search_log.txt` beside each CSV
  (a copy of the search's output), and their ratio;
- the training seconds summed over the models (train_seconds; a packed model's row holds its
  share of the pack's), their ratio, and the CV run against an estimate of the same models trained
  one at a time: each grid point's holdout training seconds scaled by the training images its
  fold models saw against the holdout model's (n_train), per point and in all.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402


def search_wall(csv: Path) -> float | None:
    """Seconds of the last `Done:` line in search_log.txt beside the CSV (None without one)."""
    log = csv.parent / "search_log.txt"
    if not log.exists():
        return None
    walls = re.findall(r"^Done: .*?(?:workers?, )?([\d.]+) s\)", log.read_text(), flags=re.M)
    return float(walls[-1]) if walls else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("holdout", type=Path, help="metrics_log.csv of the single-holdout search")
    parser.add_argument("cv", type=Path, help="metrics_log.csv of the K-fold CV search of the same grid")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    holdout = pd.read_csv(args.holdout).drop_duplicates("grid_id").set_index("grid_id")
    cv = pd.read_csv(args.cv)
    per_point = cv.groupby("grid_id").agg(cv_train_seconds=("train_seconds", "sum"), cv_n_train=("n_train", "sum"),
                                          models=("train_seconds", "size"))
    per_point["holdout_train_seconds"] = holdout["train_seconds"]
    per_point["scale"] = per_point["cv_n_train"] / holdout["n_train"]
    per_point["one_at_a_time_estimate"] = per_point["holdout_train_seconds"] * per_point["scale"]
    per_point["cv_over_estimate"] = per_point["cv_train_seconds"] / per_point["one_at_a_time_estimate"]
    walls = {"holdout": search_wall(args.holdout), "cv": search_wall(args.cv)}
    totals = {
        "holdout_train_seconds": float(per_point["holdout_train_seconds"].sum()),
        "cv_train_seconds": float(per_point["cv_train_seconds"].sum()),
        "one_at_a_time_estimate": float(per_point["one_at_a_time_estimate"].sum()),
    }
    totals["cv_over_holdout"] = totals["cv_train_seconds"] / totals["holdout_train_seconds"]
    totals["cv_over_estimate"] = totals["cv_train_seconds"] / totals["one_at_a_time_estimate"]
    packed = "pack" in cv and cv["pack"].notna().any()
    print(f"machine: {cpu_name()}; CV run {'packed (--pack)' if packed else 'one model at a time'}, "
          f"{int(per_point['models'].sum())} models of {len(per_point)} grid points")
    if walls["holdout"] and walls["cv"]:
        print(f"wall: holdout {walls['holdout']:,.0f} s, CV {walls['cv']:,.0f} s: {walls['cv'] / walls['holdout']:.2f}x")
    print(f"training seconds: holdout {totals['holdout_train_seconds']:,.0f}, CV {totals['cv_train_seconds']:,.0f} "
          f"({totals['cv_over_holdout']:.2f}x); the same CV models one at a time, estimated "
          f"{totals['one_at_a_time_estimate']:,.0f}: CV run / estimate {totals['cv_over_estimate']:.2f}x")
    print(per_point.round(2).to_string())
    if args.json:
        args.json.write_text(json.dumps({"machine": cpu_name(), "packed": bool(packed), "walls": walls, **totals,
                                         "per_point": per_point.round(4).reset_index().to_dict("records")}, indent=1))


if __name__ == "__main__":
    main()
