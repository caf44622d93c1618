"""Training throughput: bcpareto's input pipeline against a straightforward Keras one.

Both train the same model with the same recipe (the preset's image size, cell window, batch,
flips, 90-degree rotations, brightness, zoom) on the same real TRAIN images for the same number
of steps; only the input pipeline differs:

- baseline: `keras.utils.image_dataset_from_directory` (decodes, and resizes or cuts the window
  on the cell with `bcpareto.data.crop_cell`, every epoch) with Keras preprocessing layers
  (RandomFlip, RandomRotation, RandomBrightness, RandomZoom) mapped over the batches;
- bcpareto: images decoded once into a uint8 array (the cache of `bcpareto.data`), shuffled,
  batched and augmented with whole-batch numpy (`bcpareto.data.training_dataset`), made on
  tf.data's threads ahead of the step (`bcpareto.data.fit_input`). Until issue 15 the
  augmentation was TF ops in tf.data; the figures in benchmarks/README.md are from then.

It also measures this machine's float32 matrix-multiply peak (TensorFlow matmul, 2048x2048)
and reports the fraction of it each pipeline reaches, counting 3 x 2 x MACs FLOPs per image
(forward pass plus about twice that backward).

    python benchmarks/bench_pipeline.py [--data-dir DIR] [--grid-id 5] [--steps 60]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from _machine import cpu_name  # benchmarks/_machine.py, beside this script

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = cpu_name()
    import tensorflow as tf

    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()}, Python {platform.python_version()}, "
            f"TensorFlow {tf.__version__}")


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    tf.linalg.matmul(a, b).numpy()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        c = tf.linalg.matmul(a, b)
    c.numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def images_per_second(model, dataset, *, steps: int, batch_size: int, warmup: int = 10) -> float:
    """Steady-state training speed: one fit of warmup + steps batches, timed after the warm-up
    (tracing, pipeline start and the first shuffle are excluded for both pipelines alike)."""
    import keras

    marks: dict[str, float] = {}

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if batch == warmup - 1:
                marks["start"] = time.perf_counter()
            marks["end"] = time.perf_counter()

    model.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, verbose=0, callbacks=[Clock()])
    return steps * batch_size / (marks["end"] - marks["start"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("BCPARETO_DATA") or ROOT.parent / "shared" / "blood-cells"))
    parser.add_argument("--grid", type=Path, default=ROOT / "configs" / "edge_grid.xlsx")
    parser.add_argument("--grid-id", type=int, default=5)
    parser.add_argument("--config", default="edge")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    import numpy as np
    from PIL import Image

    from bcpareto.config import load_config
    from bcpareto.data import crop_cell, fit_input, load_data_for, training_dataset
    from bcpareto.gridspec import read_grid
    from bcpareto.model import build_model, cost
    from bcpareto.trial import compile_model

    config = load_config(args.config)
    point = read_grid(args.grid)[args.grid_id]
    size, bs = config.image_size, config.batch_size
    macs = cost(point, image_size=size, channels=config.channels, padding=config.padding).macs
    print(f"Machine: {machine()}")
    print(f"Model: grid point {args.grid_id} of {args.grid.name} ({point.describe()}), {macs / 1e6:.1f} M MACs "
          f"per image; preset '{config.name}': {size} px, batch {bs}, augment {list(config.augment)}; "
          f"{args.steps} timed steps each\n")

    def fresh_model(jit_compile: bool | str = "auto"):
        keras.utils.set_random_seed(0)
        model = build_model(point, config=config)
        compile_model(model, config, steps_per_epoch=args.steps, jit_compile=jit_compile)
        return model

    # baseline: the straightforward Keras pipeline, same preprocessing and augmentations
    layers = [keras.layers.RandomFlip("horizontal_and_vertical"), keras.layers.RandomRotation(0.25)]
    if "brightness" in config.augment:
        layers.append(keras.layers.RandomBrightness(20 / 255, value_range=(0, 255)))
    if "zoom" in config.augment:
        layers.append(keras.layers.RandomZoom((-0.2, 0.0)))  # zoom in: an 80-100% window
    augment = keras.Sequential(layers)
    baseline_ds = keras.utils.image_dataset_from_directory(
        args.data_dir / "TRAIN", image_size=(240, 320) if config.cell_crop else (size, size),
        batch_size=bs, shuffle=True, seed=0, label_mode="int", verbose=False,
    )
    if config.cell_crop:  # the window on the cell, cut from each decoded frame (numpy, per image)
        def crop_batch(frames: np.ndarray) -> np.ndarray:
            return np.stack([
                np.asarray(Image.fromarray(crop_cell(frame.astype(np.uint8), config.cell_crop))
                           .resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
                for frame in frames])

        def crop(x, y):
            x = tf.numpy_function(crop_batch, [x], tf.float32)
            return tf.ensure_shape(x, [None, size, size, 3]), y

        baseline_ds = baseline_ds.map(crop, num_parallel_calls=tf.data.AUTOTUNE)
    baseline_ds = baseline_ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    baseline_ds = baseline_ds.prefetch(tf.data.AUTOTUNE).repeat()
    baseline = images_per_second(fresh_model(), baseline_ds, steps=args.steps, batch_size=bs)

    # bcpareto: decode once (timed separately: paid once per size and colour mode)
    start = time.perf_counter()
    data = load_data_for(args.data_dir, config)
    load_seconds = time.perf_counter() - start
    ours_ds = fit_input(training_dataset(data.train, batch_size=bs, augment=config.augment, seed=0), epochs=1)
    ours = images_per_second(fresh_model(), ours_ds, steps=args.steps, batch_size=bs)
    ours_xla = images_per_second(fresh_model(jit_compile=True), ours_ds, steps=args.steps, batch_size=bs)

    peak = matmul_peak_gflops()
    flops = 3 * 2 * macs
    rows = [
        ("Keras directory loader + preprocessing layers", baseline),
        ("bcpareto (decoded once, batch-wise TF augmentation)", ours),
        ("bcpareto pipeline, model compiled with XLA (jit_compile=True)", ours_xla),
    ]
    print("| pipeline | images/s | GFLOP/s | share of matmul peak |")
    print("| --- | ---: | ---: | ---: |")
    for name, ips in rows:
        print(f"| {name} | {ips:.0f} | {ips * flops / 1e9:.1f} | {ips * flops / 1e9 / peak:.1%} |")
    print(f"\nSpeed-up: {ours / baseline:.2f}x. Matmul peak (float32 2048x2048, TensorFlow): {peak:.0f} GFLOP/s.")
    print(f"bcpareto's one-off load (hash for duplicates, decode or read the cache, split): {load_seconds:.1f} s")


if __name__ == "__main__":
    main()
