"""Accuracy per byte and per multiply-add, by block type: one figure from a search's metrics_log.csv.

Two panels side by side, sharing the accuracy axis: int8 TEST accuracy against the int8 TFLite
file size (left) and against multiply-adds per image (right), both on log axes. Colour and
marker name the block type (plain conv, depthwise-separable, inverted-residual); the marker's
area grows with the input side (48, 64, 96, 128 px), hollow below 64 px. The models on
the front chosen on validation (val_accuracy against int8 size) are ringed and labelled with
their grid id. Also prints the per-type table docs/results/blocks.md quotes.

    python experiments/plot_blocks.py runs/blocks/metrics_log.csv \
        --out docs/results/2026-11-27-blocks/blocks_front.png

numpy, pandas and matplotlib only (the Agg backend: no display, no browser).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from bcpareto.pareto import nondominated_mask, to_costs

STYLE = {  # block type -> (label, colour, marker)
    "conv": ("plain conv + max-pool", "#4c72b0", "s"),
    "separable": ("depthwise-separable (MobileNet)", "#dd8452", "o"),
    "inverted_residual": ("inverted residual (MobileNetV2)", "#55a868", "^"),
}


def load(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    frame["block"] = frame["block"].fillna("conv") if "block" in frame else "conv"
    return frame.sort_values("grid_id").reset_index(drop=True)


def chosen_front(frame: pd.DataFrame) -> np.ndarray:
    """Mask of the models on the validation front (val_accuracy max, int8 size min)."""
    costs = to_costs(frame[["val_accuracy", "tflite_int8_mb"]].to_numpy(float), directions=["max", "min"])
    return nondominated_mask(costs)


def plot(frame: pd.DataFrame, out: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    front = chosen_front(frame)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), sharey=True)
    columns = (("tflite_int8_mb", "int8 TFLite file (MiB, log scale)"),
               ("macs", "multiply-adds per image (log scale)"))
    for ax, (column, label) in zip(axes, columns):
        for block, (name, colour, marker) in STYLE.items():
            of_type = frame[frame["block"] == block]
            for side, group in of_type.groupby("image_size"):
                filled = side >= 64
                ax.scatter(group[column], group["int8_test_accuracy"], s=30 + 1.8 * (side - 48), marker=marker,
                           facecolors=colour if filled else "white", edgecolors=colour, linewidths=1.6,
                           label=f"{name}, {side} px", zorder=3)
        ax.scatter(frame.loc[front, column], frame.loc[front, "int8_test_accuracy"], s=260,
                   facecolors="none", edgecolors="black", linewidths=1.0, zorder=2,
                   label="front chosen on validation")
        for _, row in frame[front].iterrows():
            ax.annotate(str(int(row["grid_id"])), (row[column], row["int8_test_accuracy"]),
                        textcoords="offset points", xytext=(7, -11), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        fmt = (lambda v, _: f"{v:g}") if column == "tflite_int8_mb" else (lambda v, _: f"{v / 1e6:g}M")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(fmt))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, pos, fmt=fmt: fmt(v, pos) if f"{v:.1e}"[0] in "2358" else ""))
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.grid(True, which="both", alpha=0.3)
    if "tflite_int8_mb" in frame:
        for budget in (0.02, 0.1):
            axes[0].axvline(budget, color="grey", linestyle=":", linewidth=1)
            axes[0].text(budget, axes[0].get_ylim()[0], f" {budget} MB", color="grey", fontsize=8,
                         va="bottom")
    axes[0].set_ylabel("int8 accuracy on TEST (group-disjoint)")
    handles, labels = axes[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    fig.legend(seen.values(), seen.keys(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.12, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)


def table(frame: pd.DataFrame) -> str:
    front = chosen_front(frame)
    lines = ["| grid_id | block | filters | kernel | px | width | n_params | MMACs | tflite_int8_mb | val_accuracy | test_accuracy "
             "| int8_test_accuracy | on the val front |", "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: | ---: | --- |"]
    for on_front, (_, r) in zip(front, frame.iterrows()):
        width = r.get("width", np.nan)
        kernel = str(r["kernel_sizes"]).strip("[]").split(",")[0]
        lines.append(
            f"| {int(r['grid_id'])} | {r['block']} | {r['filters']} | {kernel} | {int(r['image_size'])} | "
            f"{1 if pd.isna(width) else f'{width:g}'} | {int(r['n_params']):,} | {r['macs'] / 1e6:.1f} | "
            f"{r['tflite_int8_mb']:.4f} | {r['val_accuracy']:.3f} | {r['test_accuracy']:.3f} | "
            f"{r['int8_test_accuracy']:.3f} | {'yes' if on_front else ''} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path)
    parser.add_argument("--out", type=Path,
                        default=Path("docs/results/2026-11-27-blocks/blocks_front.png"))
    parser.add_argument("--title", default="Block types: int8 TEST accuracy per byte and per multiply-add")
    args = parser.parse_args()
    frame = load(args.csv)
    plot(frame, args.out, title=args.title)
    print(table(frame))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
