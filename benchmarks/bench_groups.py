"""Source groups on the real data set: time, summary, a contact sheet, and pair sheets to judge by eye.

Runs ``bcpareto.groups.find_groups`` over TRAIN and TEST (BCPARETO_DATA, else ../shared/blood-cells)
with an empty cache (``--warm``: the usual cache), prints the machine, wall and CPU time and the
summary, and writes

- docs/results/groups/groups_contact_sheet.png: 12 random groups, one row each;
- benchmarks/results/groups/summary.json: the summary and the timing;
- benchmarks/results/groups/pairs_NN.png and pairs.json: ``--pairs`` random same-group pairs
  (an equal share per class; group, then two of its images, at random) and ``--different``
  random different-group pairs of one class, numbered, for a person to count how many show the
  same smear. The count is recorded by hand in docs/results/groups/groups_precision.json.

    python benchmarks/bench_groups.py [--data-dir DIR] [--warm] [--pairs 200] [--different 40]
    python benchmarks/bench_groups.py --render benchmarks/results/groups/judged/pairs.json

``--render`` only draws the sheets of a saved pair list (the one judged for
docs/results/groups/groups_precision.json) next to it. The sheets hold thumbnails of the data set's images: they are not committed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_name  # benchmarks/_machine.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

OUT = ROOT / "benchmarks" / "results" / "groups"
AHASH_TRAIN_MATCHES = 235  # issue 16: 16x16 average hashes over 8 turns/flips, within 6 bits


def _machine() -> str:
    cpu = cpu_name(platform.processor() or platform.machine())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.platform()}, {cpu}, {os.cpu_count()} cores, load average {load:.1f}"


def _pair_sheets(pairs: list[dict], prefix: str, *, per_sheet: int = 12, cols: int = 3,
                 out_dir: Path = OUT) -> list[Path]:
    from PIL import Image, ImageDraw

    tw, th, gap = 240, 180, 16  # big enough to tell one smear from another by eye
    written = []
    for start in range(0, len(pairs), per_sheet):
        chunk = pairs[start:start + per_sheet]
        rows = (len(chunk) + cols - 1) // cols
        sheet = Image.new("RGB", (cols * (2 * tw + gap), rows * (th + gap)), "white")
        draw = ImageDraw.Draw(sheet)
        for k, pair in enumerate(chunk):
            x, y = (k % cols) * (2 * tw + gap), (k // cols) * (th + gap)
            for side, path in enumerate((pair["a"], pair["b"])):
                with Image.open(path) as img:
                    sheet.paste(img.convert("RGB").resize((tw, th)), (x + side * tw, y))
            draw.rectangle((x, y, x + 26, y + 12), fill="white")
            draw.text((x + 2, y), str(pair["n"]), fill="black")
        out = out_dir / f"{prefix}_{start // per_sheet:02d}.png"
        sheet.save(out)
        written.append(out)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("BCPARETO_DATA") or ROOT.parent / "shared" / "blood-cells"))
    parser.add_argument("--warm", action="store_true", help="use the usual cache instead of an empty one")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--different", type=int, default=40)
    parser.add_argument("--render", type=Path, help="only draw the pair sheets of this pairs.json")
    args = parser.parse_args()
    if args.render:
        written = _pair_sheets(json.loads(args.render.read_text()), "pairs", out_dir=args.render.parent)
        print(f"{len(written)} sheets in {args.render.parent}")
        return

    if not args.warm:
        os.environ["BCPARETO_CACHE"] = tempfile.mkdtemp(prefix="bench-groups-")
    from bcpareto.audit import find_split
    from bcpareto.groups import contact_sheet, find_groups

    files = {split: find_split(args.data_dir / split) for split in ("TRAIN", "TEST")}
    print(f"machine: {_machine()}")
    print(f"cache: {os.environ.get('BCPARETO_CACHE', '(default)')}{'' if args.warm else ' (empty)'}")
    start, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    groups = find_groups(files, progress=lambda m: print(f"  {time.perf_counter() - start:6.1f}s {m}", flush=True))
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    start = time.perf_counter()
    find_groups(files)
    cached = time.perf_counter() - start
    print(f"time: {wall:.1f} s wall, {cpu:.1f} s CPU (all threads); cached second call {cached:.1f} s")

    summary = groups.summary()
    print(f"{summary['message']}")
    print(f"{'class':<11} {'images':>6} {'groups':>6} {'size min/med/max':>17} {'single':>6} "
          f"{'TEST~TRAIN':>10} {'identical':>9} {'beyond':>6}")
    for cls, row in summary["per_class"].items():
        size = row["group_size"]
        print(f"{cls:<11} {row['images']:>6} {row['groups']:>6} "
              f"{size['min']:>5}/{size['median']:>5}/{size['max']:>5} {row['singletons']:>6} "
              f"{row['test_sharing_train']:>10} {row['test_sharing_train_byte_identical']:>9} "
              f"{row['test_sharing_train_beyond_identical']:>6}")
    n_train = sum(1 for p in groups.split.values() if p == "TRAIN")
    print(f"TRAIN images in groups of two or more: {summary['train_in_shared_groups']} of {n_train} "
          f"(average hash within 6 bits: {AHASH_TRAIN_MATCHES})")
    for cls, stats in groups.stats.items():
        hist = stats["inliers_histogram"]
        print(f"{cls}: {stats['verified']} pairs verified, {stats['accepted']} accepted; "
              f"most inliers among rejected pairs {stats['best_rejected_inliers']}; "
              f"accepted pairs with 15-19 inliers: {sum(hist[15:20])}")

    OUT.mkdir(parents=True, exist_ok=True)
    sheet = contact_sheet(groups, ROOT / "docs" / "results" / "groups" / "groups_contact_sheet.png")
    print(f"contact sheet: {sheet.relative_to(ROOT)}")

    rng = random.Random(0)
    members = groups.members()
    by_class: dict[str, list[str]] = {}
    for gid, paths in members.items():
        if len(paths) > 1:
            by_class.setdefault(gid.rsplit("-", 1)[0], []).append(gid)
    pairs = []
    classes = sorted(by_class)
    for k in range(args.pairs):
        gid = rng.choice(by_class[classes[k % len(classes)]])
        a, b = rng.sample(members[gid], 2)
        pairs.append({"kind": "same", "group": gid, "a": a, "b": b})
    for k in range(args.different):
        cls = classes[k % len(classes)]
        ga, gb = rng.sample(sorted(g for g in members if g.startswith(cls + "-")), 2)
        pairs.append({"kind": "different", "group": f"{ga}|{gb}",
                      "a": rng.choice(members[ga]), "b": rng.choice(members[gb])})
    order = list(range(len(pairs)))
    rng.shuffle(order)  # same- and different-group pairs mixed, so the eye does not know which is which
    pairs = [dict(pairs[i], n=n) for n, i in enumerate(order)]
    written = _pair_sheets(pairs, "pairs")
    (OUT / "pairs.json").write_text(json.dumps(pairs, indent=1))
    print(f"pair sheets: {len(written)} files {OUT.relative_to(ROOT)}/pairs_*.png "
          f"({args.pairs} same-group, {args.different} different-group pairs, shuffled; key in pairs.json)")

    record = {"machine": _machine(), "cache_empty": not args.warm, "wall_s": round(wall, 1),
              "cpu_s": round(cpu, 1), "cached_call_s": round(cached, 2), "summary": summary,
              "stats": groups.stats, "ahash_train_matches": AHASH_TRAIN_MATCHES}
    (OUT / "summary.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
