"""How well grouped K-fold CV tells signal from noise, from the kept predictions of finished runs
(no training): issue 24's numbers, and a replay of racing over folds.

    python benchmarks/bench_cv.py RUN_A/metrics_log.csv RUN_B/metrics_log.csv [RUN_C/...] [--json OUT.json]

RUN_A, RUN_B, ...: CV runs of the same grid (independent ones: other fold assignment and
training seeds, e.g. the same preset with another `seed`). Printed, per the issue, for each pair:
- repeatability: the SD of a model's CV accuracy between the two runs (pooled over models);
- rank agreement: Spearman's rho of the models' CV accuracies between the runs;
- paired intervals: the median SE of the paired difference between neighbours on each run's front;
- coverage: how many models' TEST accuracy (mean of their fold models) lies in
  CV +- 1.645 sqrt(SE_cv^2 + SE_test^2);
- stable choice: the one-SE choice at each size budget in each run, and in how many runs the
  most frequent choice is made;
- paired differences between two runs (e.g. packed against one-at-a-time training, --pack): per
  model the difference of its out-of-fold accuracy between the runs on the same TRAIN images
  (and of its TEST accuracy, the mean of its fold models, on the same TEST images),
  resampled by source smear, and how many models' 90% intervals exclude zero; the mean over the
  models of the difference with its interval;
- racing: replaying each run in fold-major order with racing.raced_out, the share of training
  seconds racing would have spent and whether its one-SE choices equal the full run's.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bcpareto import cvstats  # noqa: E402
from bcpareto.cvreport import DEFAULT_BUDGETS, cv_report  # noqa: E402
from bcpareto.racing import raced_out  # noqa: E402
from bcpareto.runs import load_predictions  # noqa: E402

from _machine import cpu_name  # noqa: E402


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks = [pd.Series(x).rank().to_numpy() for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def neighbour_se(report) -> list[float]:
    """SE of the paired CV difference between neighbours on the run's front (by size)."""
    t = report.table
    score, size = report.choices[0].score, report.choices[0].size_column
    from bcpareto import pareto

    front = pareto.nondominated_mask(np.column_stack([-t[score].to_numpy(float), t[size].to_numpy(float)]))
    ids = list(t["grid_id"][front].iloc[np.argsort(t[size][front].to_numpy())])
    key = score.removesuffix("_accuracy")
    train = ~report.scores.is_test
    all_ids = list(report.scores.grid_ids)
    out = []
    for a, b in zip(ids, ids[1:]):
        d = report.boot_cv.difference(report.scores.correct[key][all_ids.index(a)][train],
                                      report.scores.correct[key][all_ids.index(b)][train])
        out.append(d.estimate.se)
    return out


def coverage(report) -> tuple[int, int]:
    t = report.table
    cv, test = ("cv_int8_accuracy", "int8_test_accuracy") if "cv_int8_accuracy" in t else ("cv_accuracy", "test_accuracy")
    half = 1.645 * np.sqrt(t[f"{cv}_se"] ** 2 + t[f"{test}_se"] ** 2)
    inside = (t[test] >= t[cv] - half) & (t[test] <= t[cv] + half)
    return int(inside.sum()), len(t)


def replay_racing(csv: Path, report, *, budgets=DEFAULT_BUDGETS) -> dict:
    """Fold-major replay: before a point's unit r > 0, racing.raced_out on the units before it."""
    folder = csv.parent / "runs" / report.study
    tables, predictions = load_predictions(folder)
    (table_name, table), = [(n, t) for n, t in tables.items()
                            if any(str(p["table"]) == n for p in predictions.values())][:1]
    rows = pd.read_csv(csv)
    rows = rows[rows["study"] == report.study]
    seconds = {(int(r.grid_id), int(r.repeat)): float(r.train_seconds) for r in rows.itertuples()}
    int8 = "tflite_int8_mb" in rows and rows["tflite_int8_mb"].notna().any()
    size_column = "tflite_int8_mb" if int8 else "model_size(MB)"
    sizes = rows.drop_duplicates("grid_id").set_index("grid_id")[size_column].astype(float).to_dict()
    units = sorted(predictions, key=lambda u: (u[1], u[0]))  # fold-major, as the study queues them
    done: dict = {}
    out: set[int] = set()
    for gid, repeat in units:
        if gid in out:
            continue
        if repeat > 0 and raced_out(gid, table=table, predictions=done, sizes=sizes, int8=int8):
            out.add(gid)
            continue
        done[gid, repeat] = predictions[gid, repeat]
    spent = sum(seconds.get(u, 0.0) for u in done)
    total = sum(seconds.get(u, 0.0) for u in predictions)
    survivors = {k: v for k, v in done.items() if k[0] not in out}  # raced-out points are never chosen
    scores = cvstats.collect(table, survivors)
    train = ~scores.is_test
    boot = cvstats.GroupBootstrap(scores.groups[train], scores.labels[train], seed=0)
    value, resampled = boot.accuracies(scores.correct["cv_int8" if int8 else "cv"][:, train])
    model_sizes = np.array([sizes[g] for g in scores.grid_ids])
    choices = {}
    for budget in (*budgets, math.inf):
        index = cvstats.one_se_choice(value, resampled, model_sizes, budget=budget, rule=report.rule)
        choices[str(budget)] = None if index is None else int(scores.grid_ids[index])
    full = {str(c.budget): c.chosen for c in report.choices}
    return {"units_trained": len(done), "units": len(predictions), "raced_out": sorted(out),
            "train_seconds": round(spent, 1), "full_train_seconds": round(total, 1),
            "share_of_seconds": round(spent / total, 3) if total else None,
            "choices": choices, "full_choices": full, "same_choices": choices == full}


def between(ra, rb) -> dict:
    """Two runs of the same grid: the SD and Spearman of their models' figures, and per model the
    paired difference of the out-of-fold accuracies on the same TRAIN images (run A's resamples)."""
    a, b = (r.table.set_index("grid_id") for r in (ra, rb))
    common = a.index.intersection(b.index)
    out: dict = {"models": len(common)}
    for stem in ("cv_accuracy", "cv_int8_accuracy", "test_accuracy", "int8_test_accuracy"):
        if stem in a and stem in b:
            x, y = a.loc[common, stem].to_numpy(float), b.loc[common, stem].to_numpy(float)
            d = x - y
            out[stem] = {"sd_between_runs": float(np.sqrt(np.mean(d ** 2) / 2)), "spearman": spearman(x, y),
                         # the same after removing the difference every model shares (the fold
                         # assignment's draw of hard smears moves a whole run): what ranks models
                         "mean_difference": float(np.mean(d)),
                         "sd_between_runs_centred": float(np.sqrt(np.mean((d - d.mean()) ** 2) / 2))}
    out["same_one_se_choice"] = {("any" if math.isinf(c.budget) else f"<= {c.budget:g} MB"):
                                 c.chosen == d.chosen for c, d in zip(ra.choices, rb.choices)}
    sa, sb = ra.scores, rb.scores
    if not (np.array_equal(sa.labels, sb.labels) and np.array_equal(sa.groups, sb.groups)):
        return out  # other image tables: no paired figures
    train, test = ~sa.is_test, sa.is_test
    rows_a = [list(sa.grid_ids).index(g) for g in common]
    rows_b = [list(sb.grid_ids).index(g) for g in common]
    out["paired"] = {}
    for key in ("cv", "cv_int8", "test", "test_int8"):
        if key not in sa.correct or key not in sb.correct:
            continue
        part, boot = (train, ra.boot_cv) if key.startswith("cv") else (test, ra.boot_test)
        ca, cb = sa.correct[key][rows_a][:, part], sb.correct[key][rows_b][:, part]
        if not (np.isfinite(ca).any() and np.isfinite(cb).any()):
            continue
        both = np.isfinite(ca) & np.isfinite(cb)
        va, res_a = boot.accuracies(np.where(both, ca, np.nan))
        vb, res_b = boot.accuracies(np.where(both, cb, np.nan))
        diffs = [cvstats.summarise(float(va[m] - vb[m]), res_a[:, m] - res_b[:, m]) for m in range(len(common))]
        mean = cvstats.summarise(float(np.mean(va - vb)), np.mean(res_a - res_b, axis=1))
        out["paired"][key] = {
            "models": len(common), "excluding_zero": sum(d.excludes_zero() for d in diffs),
            "median_abs": float(np.median([abs(d.value) for d in diffs])),
            "mean": mean.value, "mean_se": mean.se, "mean_lo": mean.lo, "mean_hi": mean.hi,
            "per_model": {int(g): [round(d.value, 4), round(d.lo, 4), round(d.hi, 4)] for g, d in zip(common, diffs)},
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="+", type=Path, help="metrics_log.csv of each CV run (1 or more)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    reports = [cv_report(csv) for csv in args.csv]
    result: dict = {"machine": cpu_name(), "runs": []}
    for csv, report in zip(args.csv, reports):
        t = report.table
        se = neighbour_se(report)
        inside, n = coverage(report)
        racing = replay_racing(csv, report)
        run = {
            "csv": str(csv), "study": report.study, "models": len(t),
            "fold_models": int(t["n_fold_models"].sum()),
            "median_cv_se": float(t["cv_accuracy_se"].median()),
            "median_cv_int8_se": float(t["cv_int8_accuracy_se"].median()) if "cv_int8_accuracy_se" in t else None,
            "median_neighbour_paired_se": float(np.median(se)) if se else None,
            "coverage": f"{inside}/{n}",
            "choices": {("any" if math.isinf(c.budget) else f"<= {c.budget:g} MB"): c.chosen for c in report.choices},
            "hypervolume": vars(report.hypervolume),
            "racing_replay": racing,
            "train_seconds": float(pd.read_csv(csv)["train_seconds"].sum()),
        }
        result["runs"].append(run)
        print(f"{csv} ({report.study}): {len(t)} models, {run['fold_models']} fold models; median SE of a "
              f"model's CV accuracy {run['median_cv_se']:.4f}"
              + (f" (int8 {run['median_cv_int8_se']:.4f})" if run["median_cv_int8_se"] is not None else "")
              + f"; median paired SE between front neighbours {run['median_neighbour_paired_se']}; coverage "
              f"{run['coverage']}; one-SE choices {run['choices']}")
        print(f"  racing replay: trained {racing['units_trained']}/{racing['units']} units, "
              f"{racing['share_of_seconds']:.0%} of the training seconds; raced out {racing['raced_out']}; "
              f"choices {racing['choices']} (full CV: {racing['full_choices']}; same: {racing['same_choices']})")
    result["between_runs"] = []
    for i in range(len(reports)):
        for j in range(i + 1, len(reports)):
            pair = between(reports[i], reports[j])
            pair["runs"] = [str(args.csv[i]), str(args.csv[j])]
            result["between_runs"].append(pair)
            print(f"runs {i + 1} and {j + 1}:")
            for stem in ("cv_accuracy", "cv_int8_accuracy", "test_accuracy", "int8_test_accuracy"):
                if stem in pair:
                    f = pair[stem]
                    print(f"  {stem}: SD of a model between the runs {f['sd_between_runs']:.4f} (run-wide "
                          f"difference {f['mean_difference']:+.4f}; SD without it {f['sd_between_runs_centred']:.4f}), "
                          f"Spearman {f['spearman']:.2f} ({pair['models']} models)")
            for key, d in pair.get("paired", {}).items():
                print(f"  paired {key} (run {i + 1} - run {j + 1}, same images): mean over models "
                      f"{d['mean']:+.4f} [{d['mean_lo']:+.4f}, {d['mean_hi']:+.4f}]; {d['excluding_zero']}/"
                      f"{d['models']} models' intervals exclude zero; median |difference| {d['median_abs']:.4f}")
            print(f"  same one-SE choice: {pair['same_one_se_choice']}")
    if len(reports) >= 2:
        stable = {}
        for k, budget in enumerate(result["runs"][0]["choices"]):
            picks = [r.choices[k].chosen for r in reports]
            top = max(set(picks), key=picks.count)
            stable[budget] = {"choices": picks, "most_frequent": top, "runs": picks.count(top)}
        result["stable_choice"] = stable
        print("one-SE choice per budget across the runs: " + "; ".join(
            f"{b}: {v['choices']} ({v['most_frequent']} in {v['runs']} of {len(reports)})" for b, v in stable.items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
