"""Does test-time augmentation buy accuracy per byte? (issue 13)

A blood cell has no orientation: training already sees every flip and quarter turn. This script
reloads the trained models of a finished search and scores each one as it is and averaged over
2, 4 and 8 symmetries of its input (with_tta below: the views go through the network as one
batch, so the TFLite file holds every weight once). Per model and number of views:

- validation and TEST accuracy of the Keras model (the search's own split, rebuilt as it built it);
- for 1 view and the largest: the int8 TFLite file made exactly as a search makes it
  (edge.measure_edge: full-integer, the preset's name stripping), its size, its accuracy on TEST
  and its single-image latency on this CPU.

Then the paired differences (views - 1 view) over the models, mean and standard deviation, on
validation and TEST: several models and seeds, since one run of one model is noise.

    python benchmarks/bench_tta.py RUN_DIR --data-dir ../shared/blood-cells [--json out.json]

Cost per model: one prediction pass per view count and split (seconds for these small nets) and
two int8 conversions with TEST and latency passes (about 10-30 s).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name

VIEWS = (1, 2, 4, 8)


def tta_views(pixels, views: int) -> list:
    """The first ``views`` of the 8 symmetries of a square image batch (N, H, W, C): itself, the
    mirror images, the half turn, then the transposed ones (the quarter turns among them).
    numpy arrays and Keras tensors alike (keras.ops)."""
    from keras import ops

    t = ops.transpose(pixels, (0, 2, 1, 3))
    every = [pixels, ops.flip(pixels, 2), ops.flip(pixels, 1), ops.flip(ops.flip(pixels, 1), 2),
             t, ops.flip(t, 2), ops.flip(t, 1), ops.flip(ops.flip(t, 1), 2)]
    return every[:views]


def with_tta(model, *, views: int):
    """``model`` averaged over ``views`` symmetries of its input. The views go through the network
    as one batch (views x N images), so a TFLite file of it holds every weight once: a few more
    ops, ``views`` times the multiply-adds."""
    import keras
    from keras import ops

    if views == 1:
        return model
    height, width, channels = model.inputs[0].shape[1:]
    pixels = keras.Input((height, width, channels), name="pixels")
    probabilities = model(ops.concatenate(tta_views(pixels, views), axis=0))
    per_view = ops.reshape(probabilities, (views, -1, probabilities.shape[-1]))
    return keras.Model(pixels, ops.mean(per_view, axis=0), name=f"{model.name}_tta{views}")


def measure(run_dir: Path, *, data_dir: Path, int8_views: int) -> list[dict[str, object]]:
    import keras

    from bcpareto.data import load_data_for
    from bcpareto.edge import measure_edge
    from bcpareto.refine import config_from_record
    from bcpareto.runs import find_trial

    with open(run_dir / "metrics_log.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("status", "completed") in ("", "completed")]
    rows.sort(key=lambda r: (int(r["grid_id"]), int(r.get("repeat") or 0)))
    splits: dict[tuple, object] = {}
    results = []
    for row in rows:
        trial = find_trial(run_dir, int(row["grid_id"]), study=row["study"], repeat=int(row.get("repeat") or 0))
        config = config_from_record(trial.record)
        key = (config.image_size, config.seed, config.validation, config.limit_per_class)
        if key not in splits:
            splits[key] = load_data_for(data_dir, config)
        data = splits[key]
        model = keras.saving.load_model(trial.keras_model, compile=False)
        out: dict[str, object] = {"grid_id": int(row["grid_id"]), "repeat": int(row.get("repeat") or 0),
                                  "n_params": int(row["n_params"]), "image_size": config.image_size,
                                  "block": row.get("block") or "conv", "logged_test": float(row["test_accuracy"])}
        for views in VIEWS:
            tta = with_tta(model, views=views)
            for name, split in (("val", data.val), ("test", data.test)):
                probabilities = tta.predict(split.images, batch_size=max(32, 256 // views), verbose=0)
                out[f"{name}_{views}"] = float(np.mean(np.argmax(probabilities, axis=1) == split.labels))
        for views in (1, int8_views):
            started = time.perf_counter()
            report = measure_edge(with_tta(model, views=views), train_images=data.train.images,
                                  test_images=data.test.images, test_labels=data.test.labels,
                                  strip_names=config.strip_tflite_names)
            out[f"int8_mb_{views}"] = report.metrics["tflite_int8_mb"]
            out[f"int8_test_{views}"] = report.metrics["int8_test_accuracy"]
            out[f"latency_ms_{views}"] = report.metrics["latency_ms"]
            out[f"edge_seconds_{views}"] = time.perf_counter() - started
        results.append(out)
        keras.backend.clear_session()
        print(f"  grid {out['grid_id']} repeat {out['repeat']}: TEST "
              + " ".join(f"{v}v {out[f'test_{v}']:.3f}" for v in VIEWS)
              + f"; int8 {out['int8_test_1']:.3f} -> {out[f'int8_test_{int8_views}']:.3f}", flush=True)
    return results


def summarise(results: list[dict[str, object]], *, int8_views: int) -> dict[str, object]:
    """Paired differences (views - 1 view) in points over the models: mean, sd, range, count."""
    def paired(key: str, views: int) -> dict[str, object]:
        diff = 100 * np.array([r[f"{key}_{views}"] - r[f"{key}_1"] for r in results])
        return {"mean": float(diff.mean()), "sd": float(diff.std(ddof=1)) if len(diff) > 1 else None,
                "min": float(diff.min()), "max": float(diff.max()), "n": len(diff)}

    summary = {f"{name}_{views}_minus_1_points": paired(name, views)
               for views in VIEWS[1:] for name in ("val", "test")}
    summary[f"int8_test_{int8_views}_minus_1_points"] = paired("int8_test", int8_views)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--int8-views", type=int, default=8, choices=VIEWS[1:],
                        help="views of the TTA model converted to int8 (default 8)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from bcpareto.quiet import import_tensorflow

    import_tensorflow()
    print(f"{args.run_dir}: {cpu_name()}, {platform.machine()}, Python {platform.python_version()}")
    results = measure(args.run_dir, data_dir=args.data_dir, int8_views=args.int8_views)
    summary = summarise(results, int8_views=args.int8_views)
    v = args.int8_views
    print(f"\n{'grid':>4} {'rep':>3} {'px':>3} {'params':>7} | {'val 1v':>6} {'val 8v':>6} | "
          f"{'TEST 1v':>7} {'2v':>5} {'4v':>5} {'8v':>5} | {'int8 MB':>7} {'int8 ' + str(v) + 'v MB':>10} | "
          f"{'int8 TEST':>9} {str(v) + 'v':>5} | {'ms':>5} {str(v) + 'v ms':>6}")
    for r in results:
        print(f"{r['grid_id']:>4} {r['repeat']:>3} {r['image_size']:>3} {r['n_params']:>7,} | {r['val_1']:.3f}  "
              f"{r['val_8']:.3f} | {r['test_1']:.3f}   {r['test_2']:.3f} {r['test_4']:.3f} {r['test_8']:.3f} | "
              f"{r['int8_mb_1']:.4f}  {r[f'int8_mb_{v}']:.4f}     | {r['int8_test_1']:.3f}     "
              f"{r[f'int8_test_{v}']:.3f} | {r['latency_ms_1']:.2f} {r[f'latency_ms_{v}']:.2f}")
    print("\npaired differences, views - 1 view, in points (mean, sd, min..max over the models):")
    for key, s in summary.items():
        sd = f"{s['sd']:.1f}" if s["sd"] is not None else "-"
        print(f"  {key:<28} {s['mean']:+.1f} (sd {sd}, {s['min']:+.1f}..{s['max']:+.1f}, n={s['n']})")
    if args.json:
        args.json.write_text(json.dumps({"machine": cpu_name(), "models": results, "summary": summary},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
