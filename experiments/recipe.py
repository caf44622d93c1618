"""Training-recipe experiments: one architecture, one change at a time, on the real data.

Each variant is a set of preset overrides applied on top of `--config` (default: `default`).
Prints one markdown row per variant: validation accuracy (the selection split, from TRAIN),
test accuracy (TEST without its copies of TRAIN files), int8 test accuracy where measured, and
wall time. Results are recorded in experiments/recipe.md.

    python experiments/recipe.py [--grid-id 5] [--epochs 5] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]

# name -> (what changes, overrides)
VARIANTS: dict[str, tuple[str, dict]] = {
    "earlier": ("earlier regularisation: dropout 0.3/0.5, BN momentum 0.99, no augmentation, constant lr 1e-3",
                dict(conv_dropout=0.3, dense_dropout=0.5, bn_momentum=0.99, augment=(),
                     lr_schedule="constant", learning_rate=1e-3)),
    "preset": ("the preset as shipped", {}),
    "no-aug": ("preset without augmentation", dict(augment=())),
    "colour-jitter": ("preset + brightness and contrast jitter",
                      dict(augment=("flip", "rot90", "brightness", "contrast"))),
    "lr-1e-3": ("preset with learning rate 1e-3", dict(learning_rate=1e-3)),
    "adamw-ls": ("preset with AdamW (weight decay 1e-4) and label smoothing 0.1",
                 dict(optimizer="adamw", weight_decay=1e-4, label_smoothing=0.1)),
    "48px": ("preset at 48 px", dict(image_size=48)),
    "80px": ("preset at 80 px", dict(image_size=80)),
    "grayscale": ("preset in grayscale", dict(color_mode="grayscale")),
    "crop144": ("preset on a 144-px window around the stained cell (cell_crop 144)", dict(cell_crop=144)),
    "crop144-48px": ("cell_crop 144 at 48 px", dict(cell_crop=144, image_size=48)),
    "crop144-stain-zoom": ("cell_crop 144 + stain (channel gains, saturation) and zoom (80-100% crops)",
                           dict(cell_crop=144, augment=("flip", "rot90", "brightness", "stain", "zoom"))),
    "crop144-zoom-6ep": ("cell_crop 144 + zoom (80-100% crops), 6 epochs",
                         dict(cell_crop=144, augment=("flip", "rot90", "brightness", "zoom"), epochs=6)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("BCPARETO_DATA") or ROOT.parent / "shared" / "blood-cells"))
    parser.add_argument("--grid", type=Path, default=ROOT / "configs" / "edge_grid.xlsx")
    parser.add_argument("--grid-id", type=int, default=5)
    parser.add_argument("--config", default="default")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--only", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()

    import dataclasses

    from bcpareto.config import load_config
    from bcpareto.data import load_data_for
    from bcpareto.gridspec import read_grid
    from bcpareto.trial import train_and_evaluate

    base = load_config(args.config, epochs=args.epochs, edge_metrics=False)
    point = read_grid(args.grid)[args.grid_id]
    print(f"Grid point {args.grid_id} of {args.grid.name}: {point.describe()}; preset '{base.name}', "
          f"{args.epochs} epochs, all TRAIN images\n")
    print("| variant | change | val_accuracy | test_accuracy | test_balanced | train s |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name in args.only:
        what, overrides = VARIANTS[name]
        config = dataclasses.replace(base, **overrides)
        data = load_data_for(args.data_dir, config)
        start = time.perf_counter()
        row = train_and_evaluate(point, config=config, data=data, verbose=0).row
        print(f"| {name} | {what} | {row['val_accuracy']:.3f} | {row['test_accuracy']:.3f} | "
              f"{row['test_balanced_accuracy']:.3f} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
