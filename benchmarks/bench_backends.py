"""Training speed on this CPU per Keras backend, input pipeline and thread layout, side by side.

Grid points 0 and 6 of configs/edge_grid.xlsx train at the edge preset's settings (64 px window
on the cell, batch 32, flips, turns, brightness, zoom, Adam with a cosine schedule) on a seeded
sample of real TRAIN images, each in a fresh process (KERAS_BACKEND is read once per process):

- every installed backend (tensorflow, jax, torch) with bcpareto's input pipeline
  (bcpareto.data.training_dataset: numpy batches, numpy augmentation; fit_input: made on
  tf.data's threads under TensorFlow);
- on TensorFlow also the tf.data pipeline bcpareto used before (whole-batch TF ops, kept below
  as the baseline), so the switch to one backend-neutral pipeline is measured;
- thread layouts: one process with every core, against one process per core with one thread
  each, run at the same time (what `search --workers 2` does); images/s are summed over them.

Reported per run: steady images/s (median epoch after the first), the first epoch's extra
seconds (tracing and compiling: paid once per model) and how many cores the process kept busy. Output: a Markdown table, and JSON under benchmarks/results/backends/.

    python benchmarks/bench_backends.py [--limit-per-class 400] [--epochs 3] [--grid-ids 0 6]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from _machine import cpu_name  # benchmarks/_machine.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
BACKENDS = ("tensorflow", "jax", "torch")


def machine() -> str:
    cpu = cpu_name()
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}, Python {platform.python_version()}"


# -- one measurement, in its own process ------------------------------------------------------------

def limit_threads(backend: str, threads: int, cpus: list[int] | None, openblas: int = 1) -> None:
    """Before the backend is imported: at most ``threads`` compute threads, on ``cpus``."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    if backend == "jax" and threads == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(openblas)  # 1: as the bcpareto command sets it (cli.py)


def configure_threads(backend: str, threads: int) -> None:
    """After the backend is imported, before it runs anything."""
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)


def tfdata_baseline(split, *, batch_size: int, augment: tuple[str, ...], seed: int):
    """The tf.data pipeline bcpareto trained with before (issue 15 replaced it): whole-batch TF ops."""
    import tensorflow as tf

    images, labels = tf.constant(split.images), tf.constant(split.labels)
    ds = tf.data.Dataset.range(len(split)).shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda i: (tf.gather(images, i), tf.gather(labels, i)))

    def _augment(x, y):
        x = tf.cast(x, tf.float32)
        n = tf.shape(x)[0]

        def coin():
            return tf.random.uniform([n, 1, 1, 1]) < 0.5

        if "flip" in augment:
            x = tf.where(coin(), tf.reverse(x, axis=[2]), x)
            x = tf.where(coin(), tf.reverse(x, axis=[1]), x)
        if "rot90" in augment:
            x = tf.where(coin(), tf.transpose(x, [0, 2, 1, 3]), x)
        if "brightness" in augment:
            x = x + tf.random.uniform([n, 1, 1, 1], -20.0, 20.0)
        if "zoom" in augment:
            side = tf.random.uniform([n, 1], 0.8, 1.0)
            corner = tf.random.uniform([n, 2]) * (1.0 - side)
            x = tf.image.crop_and_resize(x, tf.concat([corner, corner + side], axis=1), tf.range(n), tf.shape(x)[1:3])
        return tf.clip_by_value(x, 0.0, 255.0), y

    return ds.map(_augment, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def child(args: argparse.Namespace) -> None:
    os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    cpus = [int(c) for c in args.cpus.split(",")] if args.cpus else None
    limit_threads(args.backend, args.threads, cpus, args.openblas_threads)
    import keras

    configure_threads(args.backend, args.threads)
    from bcpareto.backends import set_seed
    from bcpareto.config import load_config
    from bcpareto.data import fit_input, load_data_for, training_dataset
    from bcpareto.gridspec import read_grid
    from bcpareto.model import build_model
    from bcpareto.trial import compile_model

    config = load_config("edge", limit_per_class=args.limit_per_class)
    point = read_grid(ROOT / "configs" / "edge_grid.xlsx")[args.grid_id]
    data = load_data_for(Path(args.data_dir), config)
    train = data.train
    if args.pipeline == "tfdata":
        feed = tfdata_baseline(train, batch_size=config.batch_size, augment=config.augment, seed=0)
        steps = -(-len(train) // config.batch_size)
        fit_steps = None
    else:
        batches = training_dataset(train, batch_size=config.batch_size, augment=config.augment, seed=0)
        feed = fit_input(batches, epochs=args.epochs)
        steps = fit_steps = len(batches)
    set_seed(0)
    model = build_model(point, config=config)
    compile_model(model, config, steps_per_epoch=steps)
    seconds: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    model.fit(feed, epochs=args.epochs, steps_per_epoch=fit_steps, verbose=0, callbacks=[Clock()])
    cpu_share = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
    steady = sorted(seconds[1:])[len(seconds[1:]) // 2]  # median of the epochs after the first
    print(json.dumps({
        "backend": args.backend, "pipeline": args.pipeline, "grid_id": args.grid_id, "threads": args.threads,
        "cpus": args.cpus, "n_train": len(train), "epoch_seconds": [round(s, 2) for s in seconds],
        "images_per_second": steps * config.batch_size / steady, "first_epoch_overhead_s": seconds[0] - steady,
        "cpu_busy": round(cpu_share, 2), "point": point.describe(),
    }))


# -- the comparison -------------------------------------------------------------------------------

def run_children(jobs: list[list[str]]) -> list[dict]:
    """Start every job at once (each a child's argument list); their JSON results."""
    procs = [subprocess.Popen([sys.executable, __file__, "child", *job], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for job in jobs]
    results = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"child failed ({proc.args}):\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("child")
    one.add_argument("--backend", required=True)
    one.add_argument("--pipeline", default="numpy", choices=("numpy", "tfdata"))
    one.add_argument("--grid-id", type=int, required=True)
    one.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    one.add_argument("--cpus", default="")
    for p in (parser, one):
        p.add_argument("--data-dir", default=os.environ.get("BCPARETO_DATA") or str(ROOT.parent / "shared" / "blood-cells"))
        p.add_argument("--limit-per-class", type=int, default=400)
        p.add_argument("--epochs", type=int, default=3)
        p.add_argument("--openblas-threads", type=int, default=1,
                       help="numpy's OpenBLAS pool (bcpareto's CLI sets 1; OpenBLAS's own default is every core)")
    parser.add_argument("--grid-ids", type=int, nargs="+", default=[0, 6])
    parser.add_argument("--backends", nargs="+", default=[b for b in BACKENDS if importlib.util.find_spec(b)])
    parser.add_argument("--pipelines-only", action="store_true",
                        help="one process with every core per backend and pipeline; no thread layouts")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "backends" / "cpu.json")
    args = parser.parse_args()
    if args.command == "child":
        child(args)
        return

    common = ["--data-dir", args.data_dir, "--limit-per-class", str(args.limit_per_class), "--epochs", str(args.epochs),
              "--openblas-threads", str(args.openblas_threads)]
    cores = sorted(os.sched_getaffinity(0))
    print(f"Machine: {machine()}; backends installed: {', '.join(args.backends)}; "
          f"OpenBLAS threads: {args.openblas_threads}")
    print(f"edge preset, {args.limit_per_class} TRAIN images per class before the validation split, "
          f"{args.epochs} epochs per run (the first one's compile excluded from images/s)\n")
    print("| model | backend | pipeline | layout | images/s | first-epoch overhead (s) | CPU busy (cores) |")
    print("| --- | --- | --- | --- | ---: | ---: | ---: |")
    rows: list[dict] = []
    started = time.perf_counter()
    for grid_id in args.grid_ids:
        layouts = [("numpy", b) for b in args.backends]
        if "tensorflow" in args.backends:
            layouts.insert(0, ("tfdata", "tensorflow"))
        for pipeline, backend in layouts:
            job = ["--backend", backend, "--pipeline", pipeline, "--grid-id", str(grid_id), *common]
            (result,) = run_children([job])
            rows.append({**result, "layout": f"1 process x {len(cores)} threads"})
            print(_line(rows[-1]), flush=True)
        for backend in [] if args.pipelines_only else args.backends:  # a process per core, 1 thread each
            jobs = [["--backend", backend, "--grid-id", str(grid_id), "--threads", "1", "--cpus", str(c), *common]
                    for c in cores]
            results = run_children(jobs)
            rows.append({**results[0], "layout": f"{len(cores)} processes x 1 thread", "cpus": "all",
                         "images_per_second": sum(r["images_per_second"] for r in results),
                         "per_process": results})
            print(_line(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "seconds": round(time.perf_counter() - started),
                                    "rows": rows}, indent=1))
    print(f"\n{len(rows)} runs in {time.perf_counter() - started:.0f} s; written to {args.out}")


def _line(row: dict) -> str:
    return (f"| grid {row['grid_id']} | {row['backend']} | {row['pipeline']} | {row['layout']} | "
            f"{row['images_per_second']:.0f} | {row['first_epoch_overhead_s']:.1f} | {row['cpu_busy']:.2f} |")


if __name__ == "__main__":
    main()
