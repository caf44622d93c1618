"""How much of the validation-TEST disagreement is the evaluation sets' own noise? (issue 16)

bench_validation.py compares the figures a search logged. This script asks what agreement the two
sets *can* show: it reloads every trained model of a finished search, predicts its validation and
TEST images again (the preset's own split, rebuilt exactly as the search built it), and resamples
whole source groups (groups.py: the augmented copies of one smear), because copies of one smear
are not independent images: a model that misreads one smear misreads its 20-60 copies together.

Per run it prints:

- per model: validation and TEST accuracy with their group-bootstrap standard errors;
- the noise floor of mean |val - test|: what it would be if every model's validation and TEST
  accuracy were truly equal and only the sampling of smears differed (E|N(0, se_v^2 + se_t^2)|);
- Spearman(val, TEST) observed and its bootstrap 90% interval;
- TEST against itself: Spearman between the models' accuracies on two random halves of TEST's
  smears (median of many splits), the ceiling any validation set of that size could reach;
- the same figures for two other validation read-outs of the same predictions: class-balanced
  accuracy, and accuracy re-weighted to TEST's class mix.

    python benchmarks/bench_val_noise.py runs/edge --data-dir ../shared/blood-cells

Cost: one prediction pass per model (~5 s each on 2 cores at 64 px) plus a few seconds of numpy.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import platform
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_validation import choice_shortfall, spearman

BOOTSTRAP = 2000
HALVES = 500


def _predict(run_dir: Path, rows: list[dict[str, str]], *, data_dir: Path) -> dict[str, object]:
    import keras

    from bcpareto.data import load_data_for
    from bcpareto.refine import config_from_record
    from bcpareto.runs import find_trial

    trials = [find_trial(run_dir, int(r["grid_id"]), study=r["study"], repeat=int(r.get("repeat") or 0))
              for r in rows]
    config = config_from_record(trials[0].record)  # the settings the search ran with (split, sampling, seed)

    sizes = sorted({int(r["image_size"]) for r in rows})
    splits = {s: load_data_for(data_dir, dataclasses.replace(config, image_size=s)) for s in sizes}
    first = splits[sizes[0]]
    groups = first.groups
    val_groups = np.array([groups.group_of(p) for p in first.val.paths])
    test_groups = np.array([groups.group_of(p) for p in first.test.paths])
    val_correct, test_correct = [], []
    for row, trial in zip(rows, trials):
        model = keras.saving.load_model(trial.keras_model, compile=False)
        data = splits[int(row["image_size"])]
        for split, out in ((data.val, val_correct), (data.test, test_correct)):
            predicted = np.argmax(model.predict(split.images, batch_size=256, verbose=0), axis=1)
            out.append(predicted == split.labels)
        keras.backend.clear_session()
        print(f"  predicted grid point {row['grid_id']}", flush=True)
    return {
        "val_correct": np.array(val_correct), "test_correct": np.array(test_correct),
        "val_groups": val_groups, "test_groups": test_groups,
        "val_labels": first.val.labels, "test_labels": first.test.labels,
    }


def _by_group(correct: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(models x groups) correct counts and (groups,) sizes."""
    names, index = np.unique(groups, return_inverse=True)
    counts = np.zeros((correct.shape[0], len(names)))
    for g in range(len(names)):
        counts[:, g] = correct[:, index == g].sum(axis=1)
    return counts, np.bincount(index).astype(float)


def _bootstrap(counts: np.ndarray, sizes: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, models) accuracies over resamples of whole groups (with replacement)."""
    picks = rng.integers(0, len(sizes), (n, len(sizes)))
    weights = np.zeros((n, len(sizes)))
    np.add.at(weights, (np.repeat(np.arange(n), len(sizes)), picks.ravel()), 1)
    return (weights @ counts.T) / (weights @ sizes)[:, None]


def _read_outs(correct: np.ndarray, labels: np.ndarray, test_labels: np.ndarray) -> dict[str, np.ndarray]:
    per_class = np.stack([correct[:, labels == c].mean(axis=1) for c in range(4)], axis=1)
    mix = np.bincount(test_labels, minlength=4) / len(test_labels)
    return {"accuracy": correct.mean(axis=1), "balanced": per_class.mean(axis=1),
            "TEST class mix": per_class @ mix}


def analyse(p: dict[str, np.ndarray], rows: list[dict[str, str]], *, seed: int = 0) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    val_c, val_s = _by_group(p["val_correct"], p["val_groups"])
    test_c, test_s = _by_group(p["test_correct"], p["test_groups"])
    val_boot = _bootstrap(val_c, val_s, rng, BOOTSTRAP)
    test_boot = _bootstrap(test_c, test_s, rng, BOOTSTRAP)
    val_acc, test_acc = p["val_correct"].mean(axis=1), p["test_correct"].mean(axis=1)
    se_v, se_t = val_boot.std(axis=0), test_boot.std(axis=0)
    floor = float(np.mean(np.sqrt(2 / np.pi) * np.sqrt(se_v**2 + se_t**2)))
    rhos = np.array([spearman(v, t) for v, t in zip(val_boot[:500], test_boot[:500])])
    halves = []
    for _ in range(HALVES):
        half = rng.permutation(len(test_s))[: len(test_s) // 2]
        inside = np.zeros(len(test_s), bool)
        inside[half] = True
        a = test_c[:, inside].sum(axis=1) / test_s[inside].sum()
        b = test_c[:, ~inside].sum(axis=1) / test_s[~inside].sum()
        halves.append(spearman(a, b))
    size = np.array([float(r["tflite_int8_mb"]) for r in rows])
    read_outs = {}
    for name, val in _read_outs(p["val_correct"], p["val_labels"], p["test_labels"]).items():
        shortfall = choice_shortfall(size, val, test_acc)
        read_outs[name] = {"mean_abs_gap_points": 100 * float(np.mean(np.abs(val - test_acc))),
                           "mean_gap_points": 100 * float(np.mean(val - test_acc)),
                           "spearman": spearman(val, test_acc),
                           "worst_choice_shortfall_points": 100 * float(shortfall.max())}
    return {
        "models": [{"grid_id": int(r["grid_id"]), "val": float(v), "val_se": float(sv), "test": float(t),
                    "test_se": float(st)} for r, v, sv, t, st in zip(rows, val_acc, se_v, test_acc, se_t)],
        "val_groups": len(val_s), "val_images": int(val_s.sum()),
        "test_groups": len(test_s), "test_images": int(test_s.sum()),
        "val_class_counts": np.bincount(p["val_labels"], minlength=4).tolist(),
        "test_class_counts": np.bincount(p["test_labels"], minlength=4).tolist(),
        "noise_floor_mean_abs_gap_points": 100 * floor,
        "spearman_bootstrap_90": [float(np.quantile(rhos, 0.05)), float(np.quantile(rhos, 0.95))],
        "test_split_half_spearman_median": float(np.median(halves)),
        "test_split_half_spearman_90": [float(np.quantile(halves, 0.05)), float(np.quantile(halves, 0.95))],
        "read_outs": read_outs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from bcpareto.quiet import import_tensorflow

    import_tensorflow()
    with open(args.run_dir / "metrics_log.csv", newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: (int(r["grid_id"]), int(r.get("repeat") or 0)))
    print(f"{args.run_dir}: {len(rows)} models; {platform.machine()}, Python {platform.python_version()}")
    result = analyse(_predict(args.run_dir, rows, data_dir=args.data_dir), rows)
    print(f"validation: {result['val_images']} images in {result['val_groups']} source groups "
          f"(per class {result['val_class_counts']}); TEST: {result['test_images']} in {result['test_groups']} "
          f"(per class {result['test_class_counts']})")
    print(f"{'grid':>4} {'val':>6} {'+-se':>5} {'TEST':>6} {'+-se':>5}")
    for m in result["models"]:
        print(f"{m['grid_id']:>4} {m['val']:.3f} {m['val_se']:.3f} {m['test']:.3f} {m['test_se']:.3f}")
    print(f"noise floor of mean |val - TEST| (equal true accuracies, smears resampled): "
          f"{result['noise_floor_mean_abs_gap_points']:.1f} points")
    lo, hi = result["spearman_bootstrap_90"]
    h_lo, h_hi = result["test_split_half_spearman_90"]
    print(f"Spearman(val, TEST) bootstrap 90% interval {lo:.2f}..{hi:.2f}; TEST against itself (two halves "
          f"of its smears): median {result['test_split_half_spearman_median']:.2f} ({h_lo:.2f}..{h_hi:.2f})")
    for name, r in result["read_outs"].items():
        print(f"validation read as {name:<15}: mean |gap| {r['mean_abs_gap_points']:.1f} (signed "
              f"{r['mean_gap_points']:+.1f}), Spearman {r['spearman']:.2f}, worst choice shortfall "
              f"{r['worst_choice_shortfall_points']:.1f} points")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
