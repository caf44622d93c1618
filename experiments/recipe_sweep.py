"""Many training recipes at once, for a lent GPU: Keras 3 on any backend (JAX there, no TensorFlow).

The 2-core CPU affords one recipe per ~5 minutes (experiments/recipe.py). This script runs dozens
side by side on one GPU, on the very splits bcpareto uses, so that the CPU's hour goes to the
recipe that wins here. Two steps:

    # here: decode the splits with bcpareto.data (TEST copies of TRAIN dropped, seeded 15% holdout)
    python experiments/recipe_sweep.py pack --out .gpu/crop64.npz --image-size 64 --cell-crop 144
    python experiments/recipe_sweep.py pack --out .gpu/whole80.npz --image-size 80
    # there (KERAS_BACKEND=jax, Keras wheel carried): shards run as parallel processes
    python experiments/recipe_sweep.py run --data-dir .gpu --shard 0/8 --out results_0.jsonl

Models come from bcpareto.model.build_model, optimisers from bcpareto.trial.compile_model and
batches with their augmentation from bcpareto.data.training_dataset (numpy, any backend), so a
recipe means the same thing here as in `bcpareto search`. (The sweeps in experiments/recipe.md ran
an earlier keras.ops copy of the augmentations, since replaced by this one implementation.) Images
travel as JPEG (quality 90) to fit the device's 64 MiB transfer limit; the sizes not packed
(whole64 from whole80, crop48 from crop64; see SOURCES) are resized on the device. Results: one JSON line per run; summarised in
experiments/recipe.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

BASE = ("flip", "rot90", "brightness")
EDGE = dict(bn_momentum=0.9, conv_dropout=0.1, dense_dropout=0.1, batch_size=32, epochs=8,
            learning_rate=2e-3, lr_schedule="cosine", augment=BASE, padding="same", rescale=True)


def runs() -> list[dict]:
    """Every run, most important first (a shard stops starting runs at its deadline)."""
    out: list[dict] = []

    def add(name: str, data: str, grid_id: int, seed: int = 0, **overrides: object) -> None:
        out.append(dict(name=name, data=data, grid_id=grid_id, seed=seed, overrides=overrides))

    def recipes(seed: int) -> None:
        for g in (0, 9):
            # input: whole frame vs the stained-cell window, at the CPU-affordable sizes
            add("edge-whole64", "whole64", g, seed)
            add("edge-whole80", "whole80", g, seed)
            add("edge-crop64", "crop64", g, seed)
            add("edge-crop48", "crop48", g, seed)
            # augmentation
            for data in ("crop64", "whole64"):
                add("stain", data, g, seed, augment=BASE + ("stain",))
                add("zoom", data, g, seed, augment=BASE + ("zoom",))
                add("stain+zoom", data, g, seed, augment=BASE + ("stain", "zoom"))
            add("contrast", "crop64", g, seed, augment=BASE + ("contrast",))
            add("no-aug", "crop64", g, seed, augment=())
            # schedule and regularisation
            add("16ep", "crop64", g, seed, epochs=16)
            add("16ep-stain+zoom", "crop64", g, seed, epochs=16, augment=BASE + ("stain", "zoom"))
            add("4ep", "crop64", g, seed, epochs=4)
            add("lr1e-3", "crop64", g, seed, learning_rate=1e-3)
            add("lr4e-3", "crop64", g, seed, learning_rate=4e-3)
            add("drop0.3", "crop64", g, seed, conv_dropout=0.3, dense_dropout=0.3)
            add("adamw-ls", "crop64", g, seed, optimizer="adamw", weight_decay=1e-4, label_smoothing=0.1)
            add("batch64", "crop64", g, seed, batch_size=64)
            add("crop48-stain+zoom", "crop48", g, seed, augment=BASE + ("stain", "zoom"))
            add("whole80-stain+zoom", "whole80", g, seed, augment=BASE + ("stain", "zoom"))
    recipes(0)
    # does size buy accuracy? every grid point, the shipped augmentation, three inputs/schedules
    for g in range(16):
        add("grid-crop64", "crop64", g, 0)
        add("grid-crop48", "crop48", g, 0)
        add("grid-crop64-16ep", "crop64", g, 0, epochs=16)
    recipes(1)  # the same recipes again with another seed: how much is noise
    return out


def zoom_runs() -> list[dict]:
    """Second sweep: the first one's winner (cell crop + zoom) against epochs, size and seed."""
    zoom = BASE + ("zoom",)
    out: list[dict] = []
    for g in (0, 8, 9, 10, 1, 2, 4, 6):
        for epochs in (6, 8):
            out.append(dict(name=f"zoom-{epochs}ep", data="crop64", grid_id=g, seed=0,
                            overrides=dict(augment=zoom, epochs=epochs)))
    for g in (0, 8, 9, 10):
        out.append(dict(name="zoom-crop48-8ep", data="crop48", grid_id=g, seed=0,
                        overrides=dict(augment=zoom)))
        out.append(dict(name="zoom-5ep-lr3e-3", data="crop64", grid_id=g, seed=0,
                        overrides=dict(augment=zoom, epochs=5, learning_rate=3e-3)))
        out.append(dict(name="zoom-6ep", data="crop64", grid_id=g, seed=1,
                        overrides=dict(augment=zoom, epochs=6)))
    for g in (8, 10):
        out.append(dict(name="zoom-12ep", data="crop64", grid_id=g, seed=0,
                        overrides=dict(augment=zoom, epochs=12)))
    return out


SWEEPS = {"first": runs, "zoom": zoom_runs}


# -- pack (here, with bcpareto's loader) ------------------------------------------------------------

def pack(args: argparse.Namespace) -> None:
    from PIL import Image

    from bcpareto.data import load_data

    data = load_data(args.data, image_size=args.image_size, color_mode="rgb", cell_crop=args.cell_crop,
                     limit_per_class=args.limit_per_class)
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "val", "test"):
        part = getattr(data, split)
        blobs = []
        for image in part.images:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=90)
            blobs.append(np.frombuffer(buffer.getvalue(), np.uint8))
        arrays[f"{split}_jpeg"] = np.concatenate(blobs)
        arrays[f"{split}_offsets"] = np.cumsum([0] + [len(b) for b in blobs])
        arrays[f"{split}_labels"] = part.labels
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **arrays)
    print(f"{args.out}: {args.out.stat().st_size / 2**20:.1f} MiB "
          f"({len(data.train)}/{len(data.val)}/{len(data.test)} train/val/test)")


def unpack(path: Path, size: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from PIL import Image

    raw = np.load(path)
    out = {}
    for split in ("train", "val", "test"):
        blob, offsets = raw[f"{split}_jpeg"], raw[f"{split}_offsets"]
        images = []
        for a, b in zip(offsets[:-1], offsets[1:]):
            img = Image.open(io.BytesIO(blob[a:b].tobytes())).convert("RGB")
            if size and img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            images.append(np.asarray(img))
        out[split] = (np.stack(images), raw[f"{split}_labels"])
    return out


SOURCES = {"whole80": ("whole80.npz", None), "whole64": ("whole80.npz", 64),
           "crop64": ("crop64.npz", None), "crop48": ("crop64.npz", 48)}


# -- run (on the GPU) --------------------------------------------------------------------------------

def run_one(spec: dict, data: dict, point) -> dict:
    import dataclasses

    import keras

    from bcpareto.backends import set_seed
    from bcpareto.config import TrainConfig
    from bcpareto.data import Split, training_dataset
    from bcpareto.model import build_model
    from bcpareto.trial import compile_model

    settings = {**EDGE, **spec["overrides"]}
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = data["train"], data["val"], data["test"]
    config = dataclasses.replace(TrainConfig(), image_size=x_train.shape[1], seed=spec["seed"],
                                 **{k: (tuple(v) if k == "augment" else v) for k, v in settings.items()})
    set_seed(config.seed + point.grid_id)
    model = build_model(point, config=config)
    train = Split("train", x_train, y_train.astype("int32"), tuple(map(str, range(len(x_train)))))
    batches = training_dataset(train, batch_size=config.batch_size, augment=config.augment, seed=config.seed)
    compile_model(model, config, steps_per_epoch=len(batches), jit_compile=True)
    start = time.perf_counter()
    history = model.fit(batches, epochs=config.epochs, verbose=0)
    seconds = time.perf_counter() - start
    out = {"name": spec["name"], "data": spec["data"], "grid_id": point.grid_id, "seed": spec["seed"],
           "n_params": model.count_params(), "settings": {k: list(v) if isinstance(v, tuple) else v
                                                           for k, v in settings.items()},
           "train_accuracy": float(history.history["accuracy"][-1]), "fit_seconds": round(seconds, 1)}
    for split, (x, y) in (("val", (x_val, y_val)), ("test", (x_test, y_test))):
        pred = np.argmax(model.predict(x.astype("float32"), batch_size=512, verbose=0), axis=1)
        out[f"{split}_accuracy"] = float(np.mean(pred == y))
        if split == "test":
            confusion = np.zeros((4, 4), int)
            np.add.at(confusion, (y, pred), 1)
            out["test_confusion"] = confusion.tolist()
    keras.backend.clear_session()
    return out


def run(args: argparse.Namespace) -> None:
    from bcpareto.gridspec import read_grid

    index, count = map(int, args.shard.split("/"))
    deadline = time.time() + args.budget
    points = read_grid(ROOT / "configs" / "edge_grid.xlsx")
    mine = [r for i, r in enumerate(SWEEPS[args.sweep]()) if i % count == index]
    cache: dict[str, dict] = {}
    with open(args.out, "a") as log:
        for spec in mine:
            if time.time() > deadline:
                print(f"shard {index}: deadline, {len(mine)} runs planned", flush=True)
                break
            if spec["data"] not in cache:
                file, size = SOURCES[spec["data"]]
                cache[spec["data"]] = unpack(args.data_dir / file, size)
            try:
                result = run_one(spec, cache[spec["data"]], points[spec["grid_id"]])
            except Exception as exc:  # noqa: BLE001 - record and go on
                result = {**spec, "error": repr(exc)[:500]}
            log.write(json.dumps(result) + "\n")
            log.flush()
            print(f"shard {index}: {result.get('name')} {result.get('data')} g{result.get('grid_id')} "
                  f"val {result.get('val_accuracy', float('nan')):.3f} "
                  f"test {result.get('test_accuracy', float('nan')):.3f} {result.get('fit_seconds')}s",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="decode bcpareto's splits to a JPEG npz")
    p.add_argument("--data", type=Path,
                   default=Path(os.environ.get("BCPARETO_DATA") or ROOT.parent / "shared" / "blood-cells"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--image-size", type=int, required=True)
    p.add_argument("--cell-crop", type=int, default=0)
    p.add_argument("--limit-per-class", type=int, help="a sample, for a smoke test")
    r = sub.add_parser("run", help="train this shard's runs, one JSON line each")
    r.add_argument("--data-dir", type=Path, default=ROOT / ".gpu")
    r.add_argument("--sweep", choices=sorted(SWEEPS), default="first")
    r.add_argument("--shard", default="0/1", help="I/N: runs i, i+N, i+2N, ...")
    r.add_argument("--budget", type=float, default=360, help="seconds after which no new run starts")
    r.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "pack":
        pack(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
