"""Pruned against trained from scratch at the same int8 size, judged with paired intervals (issue 26).

    python experiments/prune_vs_scratch.py plan PARENTS.xlsx --out pairs.xlsx [--fractions 0.25,0.5,0.75]
        [--config blocks] [--folds 5]
    bcpareto search pairs.xlsx --config blocks --folds 5 --run-dir RUN   (printed by plan)
    python experiments/prune_vs_scratch.py judge pairs.xlsx RUN/metrics_log.csv [--json OUT.json]

plan: for every grid point of PARENTS.xlsx and every fraction f, two rows: the point pruned to f
(its parent trains, is pruned, is fine-tuned) and its twin, the plain architecture the pruned
point delivers (the same layers, parameters and int8 bytes), trained from scratch. judge: on a
finished cross-validation run of that sheet, each pruned model minus its twin on the same
out-of-fold and TEST images (the int8 files' outputs, kept in the run folder), resampled by
source smear (src/bcpareto/cvstats.py): the difference with its 90% interval, and "better" only
where the interval excludes zero. The twin trains for the preset's `epochs`; the pruned model for
`epochs` + `prune_finetune_epochs` in all (printed beside each pair): the comparison is at the
same training budget per model only if the twin's preset is given those extra epochs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bcpareto.config import load_config  # noqa: E402
from bcpareto.gridspec import GridPoint, read_grid  # noqa: E402
from bcpareto.model import pruned_point  # noqa: E402

HEADER = ["dense_layers", "neurons", "filters", "kernel_sizes", "block", "strides", "stem", "width",
          "expansion", "image_size", "prune"]


def sheet_rows(point: GridPoint) -> list[object]:
    """One sheet row that expands to exactly this grid point."""
    def listed(values: tuple[int, ...]) -> str:
        return "[" + ", ".join(str(v) for v in values) + "]"

    return [f"[{point.dense_layers}]", f"[{listed(point.neurons)}]", f"[{listed(point.filters)}]",
            listed(point.kernel_sizes), point.block, listed(point.block_strides), f"[{point.stem}]",
            f"[{point.width}]", f"[{point.expansion}]" if point.block == "inverted_residual" else None,
            f"[{point.image_size}]" if point.image_size else None,
            f"[{point.prune}]" if point.prune is not None else None]


def plan(parents: list[GridPoint], fractions: list[float], *, image_size: int, channels: int,
         padding: str) -> list[GridPoint]:
    """Per parent and fraction: the pruned point, then its twin (the plain architecture it delivers)."""
    points = []
    for parent in parents:
        for fraction in fractions:
            pruned = replace(parent, prune=fraction)
            side = parent.image_size or image_size
            points += [pruned, pruned_point(pruned, image_size=side, channels=channels, padding=padding)]
    return [replace(p, grid_id=i) for i, p in enumerate(points)]


def pairs(points: list[GridPoint], *, image_size: int, channels: int, padding: str) -> list[tuple[int, int]]:
    """(pruned grid id, twin grid id): each pruned point and the unpruned point of its architecture."""
    def key(p: GridPoint) -> str:
        return json.dumps({k: v for k, v in p.params().items() if k != "grid_id"}, sort_keys=True)

    plain = {key(p): p.grid_id for p in points if p.prune is None}
    found = []
    for p in points:
        if p.prune is not None:
            twin = pruned_point(p, image_size=p.image_size or image_size, channels=channels, padding=padding)
            if key(twin) in plain:
                found.append((p.grid_id, plain[key(twin)]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p_plan = commands.add_parser("plan")
    p_plan.add_argument("parents", type=Path)
    p_plan.add_argument("--out", type=Path, required=True)
    p_plan.add_argument("--fractions", default="0.25,0.5,0.75")
    p_plan.add_argument("--config", default="blocks")
    p_plan.add_argument("--folds", type=int, default=5)
    p_judge = commands.add_parser("judge")
    p_judge.add_argument("sheet", type=Path)
    p_judge.add_argument("csv", type=Path)
    p_judge.add_argument("--config", default=None, help="the run's preset (default: the one in the CSV)")
    p_judge.add_argument("--json", type=Path)
    args = parser.parse_args()

    if args.command == "plan":
        config = load_config(args.config)
        fractions = [float(f) for f in args.fractions.split(",")]
        points = plan(read_grid(args.parents), fractions, image_size=config.image_size,
                      channels=config.channels, padding=config.padding)
        import openpyxl

        book = openpyxl.Workbook()
        book.active.append(HEADER)
        for point in points:
            book.active.append(sheet_rows(point))
        book.save(args.out)
        print(f"{args.out}: {len(points)} grid points, {len(points) // 2} pruned/scratch pairs; run\n"
              f"  bcpareto search {args.out} --config {args.config} --folds {args.folds} "
              "--run-dir RUN\nthen\n"
              f"  python experiments/prune_vs_scratch.py judge {args.out} RUN/metrics_log.csv")
        return
    judge(args)


def judge(args: argparse.Namespace) -> None:
    import pandas as pd

    from bcpareto import cvstats
    from bcpareto.cvreport import study_folder
    from bcpareto.runs import load_predictions

    rows = pd.read_csv(args.csv)
    folder, study = study_folder(args.csv)
    rows = rows[rows["study"] == study] if "study" in rows else rows
    config = load_config(args.config or str(rows["preset"].iloc[0]))
    points = read_grid(args.sheet)
    tables, predictions = load_predictions(folder)
    (_, table), = tables.items()
    int8 = {k: {**v, "val_prob": v["val_prob_int8"], "test_prob": v["test_prob_int8"]}
            for k, v in predictions.items() if "val_prob_int8" in v}
    scores = cvstats.collect(table, int8)
    train, test = ~scores.is_test, scores.is_test
    boot = {"cv": cvstats.GroupBootstrap(scores.groups[train], scores.labels[train], seed=0),
            "test": cvstats.GroupBootstrap(scores.groups[test], scores.labels[test], seed=0)}
    index = {int(g): m for m, g in enumerate(scores.grid_ids)}
    by_id = rows.groupby("grid_id").mean(numeric_only=True)
    result = []
    for pruned, twin in pairs(points, image_size=config.image_size, channels=config.channels,
                              padding=config.padding):
        if pruned not in index or twin not in index:
            continue
        entry = {"pruned": pruned, "scratch": twin, "prune": points[pruned].prune,
                 "int8_bytes": [float(by_id.loc[g, "tflite_int8_mb"]) * 2**20 for g in (pruned, twin)],
                 "epochs": [float(by_id.loc[g, "epochs"]) for g in (pruned, twin)]}
        for score, part in (("cv_int8", train), ("test_int8", test)):
            d = boot[score.split("_")[0]].difference(scores.correct[score][index[pruned]][part],
                                                     scores.correct[score][index[twin]][part])
            entry[score] = {**dataclasses.asdict(d.estimate), "verdict": d.verdict("pruned", "scratch")}
        result.append(entry)
        cv = entry["cv_int8"]
        print(f"grid {pruned} (prune {entry['prune']}) - grid {twin} (scratch), int8 "
              f"{entry['int8_bytes'][0]:,.0f} / {entry['int8_bytes'][1]:,.0f} B, epochs "
              f"{entry['epochs'][0]:.0f} / {entry['epochs'][1]:.0f}: out-of-fold int8 "
              f"{cv['value']:+.4f} [{cv['lo']:+.4f}, {cv['hi']:+.4f}]"
              f"; {cv['verdict']}")
    if not result:
        sys.exit(f"{args.csv}: no pruned model with its scratch twin finished in study {study!r}")
    if args.json:
        args.json.write_text(json.dumps({"csv": str(args.csv), "study": study, "pairs": result}, indent=2))


if __name__ == "__main__":
    main()
