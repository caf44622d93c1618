"""The GPU path, measured: bcpareto itself under KERAS_BACKEND=jax on one lent GPU (issue 15).

The lent GPU machine has JAX but neither TensorFlow nor Keras, Optuna or openpyxl, and cannot
download; its transfers carry at most 64 MiB. So two steps:

    # here (the data set, pip and internet): wheels for Python 3.12 into .whl/, data into .gpu/
    python benchmarks/gpu_jax.py prepare
    # there (device tool, carry [".whl", ".gpu"]), one call of at most 10 minutes:
    python3 benchmarks/gpu_jax.py run --minutes 9 --out "$OUT"

`run` measures, in this order, each under a deadline so that the call ends inside its limit:
  (b) the edge preset's full search (configs/edge_grid.xlsx, 16 models, grouped validation),
      `bcpareto search`, wall time and images/s per model;
  (c) the same search with `--workers 4` sharing the GPU, in a fresh run directory;
  (d) mixed precision: grid points 0 and 6 of the edge grid trained with float32 and with
      mixed_bfloat16 (keras.mixed_precision), images/s and TEST accuracy;
  (a) the seed preset's grid (hyper_parameters.xlsx, 224 px grayscale, batch 8, 10 epochs) on a
      per-class sample (the full set does not fit the transfer), images/s per model; the time of
      all 24 models on the whole data set is extrapolated from them, and the output says so.
Results: $OUT/gpu.json plus each search's metrics_log.csv and log.

What differs from a CPU run, and why: the images travel already decoded to the preset's input
(the edge preset's 64-px window on the cell, the seed preset's 224-px frame) as JPEG files
(quality 90) in the data set's TRAIN/TEST/<CLASS> layout, and the presets read them with
cell_crop 0, so decoding there is a no-op resize; validation groups are found on these files.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPU_DIR = ROOT / ".gpu"
WHEELS = ROOT / ".whl"
# what bcpareto needs that the GPU image lacks (it has numpy, pandas, matplotlib, click, h5py,
# pillow, rich, jax): pinned to the versions this repository is tested with
PACKAGES = ["keras==3.15.1", "namex", "optree", "optuna==5.0.0", "sqlalchemy", "alembic", "mako",
            "colorlog", "greenlet", "openpyxl", "et-xmlfile"]
SETS = {  # name: (preset values that change, per-class sample of each split or None for all)
    "edge64": ({"image_size": 64, "cell_crop": 144, "color_mode": "rgb"}, None),
    "seed224": ({"image_size": 224, "cell_crop": 0, "color_mode": "grayscale"}, 250),
}


# -- here -------------------------------------------------------------------------------------------

def prepare(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from PIL import Image

    from bcpareto.data import _sample
    from bcpareto.dataset import find_split
    from bcpareto.preprocess import decode_image

    WHEELS.mkdir(exist_ok=True)
    platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
                                              "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                                              "manylinux1_x86_64", "any")]
    for package in PACKAGES:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(WHEELS),
                        package], check=True)
    for name, (decode, limit) in SETS.items():
        for split in ("TRAIN", "TEST"):
            files = _sample(find_split(args.data_dir / split), limit, f"0-{split}")
            for path, label in files:
                image = decode_image(path, **decode)
                out = GPU_DIR / name / split / path.parent.name / path.name
                out.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(out, quality=90)
    total = sum(p.stat().st_size for p in [*GPU_DIR.rglob("*"), *WHEELS.rglob("*")] if p.is_file())
    print(f"{GPU_DIR} and {WHEELS}: {total / 2**20:.1f} MiB (the device carries 64 MiB with the working tree)")
    if total > 58 * 2**20:
        raise SystemExit("too big to carry: lower the seed224 sample in SETS")


# -- there ------------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.minutes * 60
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), args.site, os.environ.get("PYTHONPATH", "")]),
           "BCPARETO_CACHE": str(out / "cache")}
    results: dict = {"device": _device(env), "started": time.strftime("%Y-%m-%d %H:%M:%S")}

    def save() -> None:
        (out / "gpu.json").write_text(json.dumps(results, indent=1))

    edge_preset = _preset(out, "edge", smoke=args.smoke)
    seed_preset = _preset(out, "seed", smoke=args.smoke)
    edge_args = [str(ROOT / "configs" / "edge_grid.xlsx"), "--config", str(edge_preset),
                 "--data-dir", str(GPU_DIR / "edge64")]
    results["b_edge_search"] = _search(env, edge_args, out / "edge1", deadline=deadline - 300)
    save()
    results["c_edge_search_4_workers"] = _search(env, [*edge_args, "--workers", "4"], out / "edge4",
                                                 deadline=deadline - 200)
    save()
    results["d_mixed_precision"] = [
        _bench(env, out, grid_id=g, policy=p, deadline=deadline - 120)
        for g in (0, 6) for p in ("float32", "mixed_bfloat16")]
    save()
    seed = _search(env, [str(ROOT / "hyper_parameters.xlsx"), "--config", str(seed_preset),
                         "--data-dir", str(GPU_DIR / "seed224"),
                         *([] if args.smoke else ["--limit-per-class", str(SETS["seed224"][1])])],
                   out / "seed", deadline=deadline - 10)
    seed["note"] = (f"a sample of {SETS['seed224'][1]} images per class and split; the whole data set's "
                    "time is extrapolated from the measured images/s, not measured")
    seed["extrapolated_full_seconds"] = _extrapolate(seed, full_images=9957, epochs=10)  # TRAIN: the seed preset trains on all of it
    results["a_seed_grid"] = seed
    save()
    print(json.dumps(results, indent=1))


def _device(env: dict) -> str:
    code = "import jax; d = jax.devices(); print(len(d), d[0].device_kind, jax.__version__)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).strip()[-300:]


def _preset(out: Path, name: str, *, smoke: bool = False) -> Path:
    """The preset, reading already-decoded images (cell_crop 0), its grid given on the command line."""
    text = (ROOT / "configs" / f"{name}.toml").read_text().splitlines()
    drop = ("cell_crop", "grid", *(("epochs", "limit_per_class") if smoke else ()))
    lines = [line for line in text if line.split("=")[0].strip() not in drop]
    extra = ["cell_crop = 0", *(["epochs = 1", "limit_per_class = 5"] if smoke else [])]
    path = out / f"{name}_gpu.toml"
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return path


def _search(env: dict, args: list[str], run_dir: Path, *, deadline: float) -> dict:
    """`bcpareto search --no-edge` until done or ``deadline`` (then interrupted: resumable, said so)."""
    command = [sys.executable, "-m", "bcpareto", "search", *args, "--no-edge", "--run-dir", str(run_dir)]
    started = time.time()
    log = (run_dir.parent / f"{run_dir.name}.log")
    with open(log, "w") as handle:
        proc = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:  # Ctrl-C: the running model is marked not completed
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    rows = _rows(run_dir / "metrics_log.csv")
    per_model = [{"grid_id": r["grid_id"], "images_per_second": _ips(r), "train_seconds": r.get("train_seconds"),
                  "test_accuracy": r.get("test_accuracy"), "val_accuracy": r.get("val_accuracy")} for r in rows]
    return {"command": " ".join(command[2:]), "returncode": proc.returncode, "wall_seconds": round(time.time() - started, 1),
            "models_completed": len(rows), "finished": proc.returncode == 0, "per_model": per_model,
            "log_tail": log.read_text()[-1500:]}


def _rows(path: Path) -> list[dict]:
    import csv

    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [r for r in csv.DictReader(handle) if r.get("status", "") in ("", "completed")]


def _ips(row: dict) -> float | None:
    try:
        return round(int(row["n_train"]) * int(row["epochs"]) / float(row["train_seconds"]), 1)
    except (KeyError, ValueError, ZeroDivisionError):
        return None


def _extrapolate(search: dict, *, full_images: int, epochs: int) -> float | None:
    rates = [m["images_per_second"] for m in search["per_model"] if m["images_per_second"]]
    if not rates:
        return None
    return round(sum(full_images * epochs / r for r in rates) * 24 / len(rates), 1)


def _bench(env: dict, out: Path, *, grid_id: int, policy: str, deadline: float) -> dict:
    code = f"""
import json, time, keras, numpy as np
from pathlib import Path
keras.mixed_precision.set_global_policy({policy!r})
from bcpareto.backends import set_seed
from bcpareto.config import load_config
from bcpareto.data import load_data_for, training_dataset, eval_dataset
from bcpareto.gridspec import read_grid
from bcpareto.model import build_model
from bcpareto.trial import compile_model
config = load_config({str(out / "edge_gpu.toml")!r})
data = load_data_for(Path({str(GPU_DIR / "edge64")!r}), config)
point = read_grid({str(ROOT / "configs" / "edge_grid.xlsx")!r})[{grid_id}]
set_seed(0)
model = build_model(point, config=config)
batches = training_dataset(data.train, batch_size=config.batch_size, augment=config.augment, seed=0)
compile_model(model, config, steps_per_epoch=len(batches))
start = time.perf_counter()
history = model.fit(batches, epochs=config.epochs, verbose=0)
seconds = time.perf_counter() - start
predicted = model.predict(eval_dataset(data.test, batch_size=256), verbose=0).argmax(axis=1)
print(json.dumps({{"grid_id": {grid_id}, "policy": {policy!r}, "fit_seconds": round(seconds, 1),
    "images_per_second": round(len(batches) * config.batch_size * config.epochs / seconds, 1),
    "test_accuracy": float((predicted == data.test.labels).mean())}}))
"""
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              timeout=max(1.0, deadline - time.time()), check=False)
    except subprocess.TimeoutExpired:
        return {"grid_id": grid_id, "policy": policy, "error": "deadline"}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"grid_id": grid_id, "policy": policy, "error": done.stderr[-1500:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="here: wheels and decoded data to carry")
    p.add_argument("--data-dir", type=Path,
                   default=Path(os.environ.get("BCPARETO_DATA") or ROOT.parent / "shared" / "blood-cells"))
    r = sub.add_parser("run", help="there: the measurements")
    r.add_argument("--minutes", type=float, default=9.0)
    r.add_argument("--out", default=os.environ.get("OUT", "gpu_out"))
    r.add_argument("--site", default="/tmp/site", help="where the carried wheels were installed")
    r.add_argument("--smoke", action="store_true", help="5 images per class, 1 epoch: check the script anywhere")
    args = parser.parse_args()
    prepare(args) if args.command == "prepare" else run(args)


if __name__ == "__main__":
    main()
