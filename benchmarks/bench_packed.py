"""Packed training (issue 25): M members of one grid point as one model, against the same M
members trained one after another, on this CPU, per Keras backend.

Three models of configs/edge_grid_mobile.xlsx (the edge nets of 2.8k to 228k parameters), all at
96 px: the smallest (id 6: separable, width 0.5, 2,772 parameters), the 8k four-block separable
net (id 4: 8,228) and the largest (id 2: the conv net of 227,668 parameters; its sheet says
64 px, set to 96 here). Edge preset (cell window, batch 32, flips, turns, brightness, zoom, Adam
with a cosine schedule), no TFLite figures, grouped 5-fold cross-validation over a seeded sample
of real TRAIN images; M = 5 members = the five folds (repeats 0-4, as the search trains them).

- sequential: bcpareto.trial.train_and_evaluate once per member (what the search does today);
- packed: bcpareto.packed.train_packed, the five members in one model on one batch stream.

Both run in the same process, one after the other (each backend in its own process:
KERAS_BACKEND is read once). Reported: images/s summed over members (epochs x each member's
training images, over the seconds of fit, validation passes and the first epoch's tracing
included: train_seconds of the rows), the ratio packed/sequential, the same for the epochs
after the first (steady: no tracing), and the members' mean validation accuracy of each way (a
sanity check only: one short run, not the statistical equivalence, which needs full runs).

``--construction`` times one training step of the packed constructions instead (random pixels,
batch 40 packed and 32 standalone, median of 5 steps after 2 warm-ups): M standalone steps,
M branches in one functional model, the packed model with its full convolutions grouped (one
``ops.conv`` with groups = M) or split (M convolutions on channel slices). Its table is in
src/bcpareto/packed.py's docstring.

    python benchmarks/bench_packed.py [--limit-per-class 128] [--epochs 2] [--members 5]
    python benchmarks/bench_packed.py --construction
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _machine import cpu_name  # benchmarks/_machine.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
BACKENDS = ("tensorflow", "jax")
GRID = ROOT / "configs" / "edge_grid_mobile.xlsx"
IDS = {6: "smallest", 4: "8k separable", 2: "largest"}


def machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} cores, {platform.system()}, Python {platform.python_version()}"


def _point(grid_id: int, image_size: int) -> Any:
    from bcpareto.gridspec import read_grid

    point = next(p for p in read_grid(GRID) if p.grid_id == grid_id)
    return dataclasses.replace(point, image_size=image_size)


# -- one backend, in its own process ----------------------------------------------------------------

def child(args: argparse.Namespace) -> None:
    from bcpareto.backends import check_backend

    backend = check_backend()
    if args.construction:
        print(json.dumps(construction(args, backend)))
        return
    from bcpareto.config import load_config
    from bcpareto.data import load_data_for
    from bcpareto.packed import members_for, train_packed
    from bcpareto.trial import train_and_evaluate

    config = load_config("edge", image_size=args.image_size, epochs=args.epochs, validation="cv",
                         folds=args.members, limit_per_class=args.limit_per_class, edge_metrics=False)
    data = load_data_for(Path(args.data_dir), config)
    rows = []
    for grid_id in args.grid_ids:
        point = _point(grid_id, args.image_size)
        repeats = list(range(args.members))
        sequential = [train_and_evaluate(point, config=config, data=data, repeat=r, verbose=0) for r in repeats]
        packed = [m.result for m in train_packed(point, members_for(point, config=config, data=data, repeats=repeats),
                                                 config=config, data=data, verbose=0)]
        row = {"grid_id": grid_id, "model": IDS.get(grid_id, str(grid_id)), "backend": backend,
               "n_params": sequential[0].row["n_params"], "members": args.members, "epochs": args.epochs,
               "n_train": len(data.train)}
        for name, results in (("sequential", sequential), ("packed", packed)):
            images = sum(r.row["n_train"] for r in results) * args.epochs
            seconds = sum(r.row["train_seconds"] for r in results)
            steady = sum(sum(r.curve["seconds"][1:]) for r in results)
            row[name] = {"images": images, "seconds": round(seconds, 2),
                         "images_per_s": round(images / seconds, 1),
                         "steady_images_per_s": round(images * (args.epochs - 1) / args.epochs / steady, 1)
                         if args.epochs > 1 and steady else None,
                         "mean_val_accuracy": round(statistics.mean(r.row["val_accuracy"] for r in results), 4)}
        row["ratio"] = round(row["packed"]["images_per_s"] / row["sequential"]["images_per_s"], 2)
        if row["packed"]["steady_images_per_s"]:
            row["steady_ratio"] = round(row["packed"]["steady_images_per_s"]
                                        / row["sequential"]["steady_images_per_s"], 2)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps(rows))


def construction(args: argparse.Namespace, backend: str) -> list[dict]:
    """ms per training step of each construction, random data (no input pipeline)."""
    import keras
    import numpy as np

    from bcpareto.config import load_config
    from bcpareto.model import build_model
    from bcpareto.packed import pack, packed_loss

    config = load_config("edge", image_size=args.image_size)
    m, batch = args.members, 40
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, args.image_size, args.image_size, 3)).astype("float32")
    labels = (np.arange(batch) % 4).astype("int32")
    mask = (rng.random((batch, m)) < 0.8).astype("float32")
    y = np.concatenate([labels[:, None].astype("float32"), mask], axis=1)

    def timed(step: Callable[[], Any]) -> float:
        for _ in range(2):
            step()
        times = []
        for _ in range(5):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return round(1000 * statistics.median(times), 1)

    out = []
    for grid_id in args.grid_ids:
        point = _point(grid_id, args.image_size)
        row = {"grid_id": grid_id, "model": IDS.get(grid_id, str(grid_id)), "backend": backend, "members": m}
        single = build_model(point, config=config)
        single.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        row["standalone_x_m_ms"] = round(m * timed(lambda single=single: single.train_on_batch(x[:32], labels[:32])), 1)
        inputs = keras.Input(x.shape[1:])
        models = [build_model(point, config=config) for _ in range(m)]
        for i, model in enumerate(models):
            model.name = f"{model.name}_member{i}"  # a functional model's operations need unique names
        branches = keras.Model(inputs, [model(inputs) for model in models])
        branches.compile(optimizer="adam", loss=["sparse_categorical_crossentropy"] * m)
        row["branches_ms"] = timed(lambda branches=branches: branches.train_on_batch(x, [labels] * m))
        for grouped in ("groups", "split"):
            try:
                packed = pack(point, config=config, seeds=list(range(m)), grouped=grouped)
                packed.model.compile(optimizer="adam", loss=packed_loss(m, smoothing=0.0))
                row[f"packed_{grouped}_ms"] = timed(
                    lambda packed=packed: packed.model.train_on_batch({"pixels": x, "mask": mask}, y))
            except Exception as exc:  # noqa: BLE001 - a backend without grouped convolutions on CPU
                row[f"packed_{grouped}_ms"] = f"fails: {type(exc).__name__}: {str(exc)[:120]}"
        out.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        keras.backend.clear_session()
    return out


# -- the parent: one process per backend --------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--construction", action="store_true", help="time one step of each construction")
    parser.add_argument("--data-dir", default=os.environ.get("BCPARETO_DATA") or str(ROOT.parent / "shared" / "blood-cells"))
    parser.add_argument("--limit-per-class", type=int, default=128, help="TRAIN images per class (seeded sample)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--grid-ids", type=int, nargs="+", default=list(IDS))
    parser.add_argument("--backends", nargs="+", default=[b for b in BACKENDS if importlib.util.find_spec(b)])
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON file (default: benchmarks/results/packed/cpu.json, construction.json)")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    out = args.out or ROOT / "benchmarks" / "results" / "packed" / ("construction.json" if args.construction else "cpu.json")
    started = time.perf_counter()
    print(f"Machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M')}; load average {os.getloadavg()[0]:.1f}")
    rows = []
    for backend in args.backends:
        argv = [a for a in sys.argv[1:] if a != "--backends" and a not in args.backends]
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
               "PYTHONPATH": str(ROOT / "src")}
        # the child's rows stream to stderr as they finish (a long run shows its progress)
        done = subprocess.run([sys.executable, __file__, "--child", *argv], env=env, stdout=subprocess.PIPE, text=True, check=False)
        if done.returncode:
            sys.exit(f"{backend} child failed (its messages above)")
        rows += json.loads(done.stdout.strip().splitlines()[-1])
    if args.construction:
        keys = ("standalone_x_m_ms", "branches_ms", "packed_groups_ms", "packed_split_ms")
        print(f"| model | backend | {' | '.join(keys)} |\n| --- | --- |" + " ---: |" * len(keys))
        for row in rows:
            print(f"| {row['model']} (id {row['grid_id']}) | {row['backend']} | "
                  + " | ".join(str(row[k]) for k in keys) + " |")
    else:
        print(f"{args.members} members (folds), {args.epochs} epochs, {rows[0]['n_train'] if rows else 0} TRAIN "
              f"images at {args.image_size} px; images/s summed over members")
        print("| model | n_params | backend | sequential img/s | packed img/s | ratio | steady ratio "
              "| val acc seq / packed |\n| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |")
        for row in rows:
            s, p = row["sequential"], row["packed"]
            print(f"| {row['model']} (id {row['grid_id']}) | {row['n_params']:,} | {row['backend']} | "
                  f"{s['images_per_s']} | {p['images_per_s']} | {row['ratio']}x | {row.get('steady_ratio', '-')}x | "
                  f"{s['mean_val_accuracy']:.3f} / {p['mean_val_accuracy']:.3f} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "date": time.strftime("%Y-%m-%d"),
                               "command": "python benchmarks/bench_packed.py " + " ".join(sys.argv[1:]),
                               "seconds": round(time.perf_counter() - started), "rows": rows}, indent=1) + "\n")
    print(f"\n{len(rows)} rows in {time.perf_counter() - started:.0f} s; written to {out}")


if __name__ == "__main__":
    main()
