"""Benchmark `bcpareto plot`: front + figure for 100,000 rows, the O(n^2) row-by-row
baseline, and `bcpareto --help` start-up. Prints a markdown table.

    PYTHONPATH=src python benchmarks/bench_pareto.py            # about a minute on 2 cores
    PYTHONPATH=src python benchmarks/bench_pareto.py --rows 20000 --baseline-rows 1000

The front + figure time is one call of bcpareto.report.plot_report, the function the CLI
calls: read the CSV, validate, non-dominated mask, hypervolume, build the figure, save PNG,
SVG and pareto_front.csv. The baseline is a row-by-row double loop over the DataFrame like the
seed notebook's (every pair compared, so exactly n^2 comparisons); it is timed at a few
thousand rows and extrapolated to the full size by (n / measured n)^2, and our code is run at
the same sizes for a direct comparison.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_name  # benchmarks/_machine.py, beside this script

import matplotlib
import numpy as np
import pandas as pd

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))  # runs from a checkout without installing bcpareto

from bcpareto import pareto  # noqa: E402
from bcpareto.report import SIZE_COLUMN, plot_report  # noqa: E402


def machine() -> str:
    model = cpu_name(platform.processor() or "unknown CPU")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{model}, {usable} usable cores ({os.cpu_count()} visible); {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}, numpy {np.__version__}, "
        f"pandas {pd.__version__}, matplotlib {matplotlib.__version__}"
    )


def random_log(rows: int, *, seed: int = 0) -> pd.DataFrame:
    """A metrics log in our format with a realistic size/accuracy trade-off plus noise."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(0.2, 12.0, rows)
    accuracy = np.clip(0.25 + 0.6 * (1 - np.exp(-size / 3)) + rng.normal(0, 0.08, rows), 0, 1)
    return pd.DataFrame({
        SIZE_COLUMN: size,
        "test_accuracy": accuracy,
        "latency_ms": size * rng.uniform(0.5, 2.0, rows),
        "grid_id": np.arange(rows),
    })


def notebook_front(table: pd.DataFrame) -> list[int]:
    """The seed-notebook way: for each row, loop over every row (minimise size, max accuracy)."""
    sizes = table[SIZE_COLUMN]
    accuracies = table["test_accuracy"]
    front = []
    for i in range(len(table)):
        size_i, accuracy_i = sizes.iat[i], accuracies.iat[i]
        dominated = False
        for other in table.itertuples(index=False):
            size_j, accuracy_j = other[0], other[1]
            if (size_j <= size_i and accuracy_j >= accuracy_i
                    and (size_j < size_i or accuracy_j > accuracy_i)):
                dominated = True
        if not dominated:
            front.append(i)
    return front


def timed(function, *, repeat: int = 1) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def help_command() -> list[str]:
    entry = shutil.which("bcpareto")
    return [entry, "--help"] if entry else [sys.executable, "-m", "bcpareto", "--help"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--baseline-rows", type=int, nargs="+", default=[2_000, 5_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, repeat = args.rows, args.repeat
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)

    print(f"Machine: {machine()}\n")
    results: list[tuple[str, str, str]] = []

    def add(what: str, seconds: float, how: str) -> None:
        results.append((what, f"{seconds:.3f} s" if seconds < 0.1 else f"{seconds:.2f} s", how))

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        plot_report([_write(folder, random_log(200), "warm.csv")], out_dir=folder / "warm")

        table = random_log(n)
        big = _write(folder, table, "big.csv")
        costs = _costs(table)
        add(f"front only (mask), {n:,} rows", timed(lambda: pareto.nondominated_mask(costs),
            repeat=repeat), "pareto.nondominated_mask, 2 objectives")
        add(f"front + figure, {n:,} rows, 2 objectives",
            timed(lambda: plot_report([big], out_dir=folder / "out"), repeat=repeat),
            f"plot_report: read CSV, front, HV, save PNG+SVG+CSV (median of {repeat})")
        add(f"front + figure, {n:,} rows, 3 objectives",
            timed(lambda: plot_report([big], z="latency_ms:min", out_dir=folder / "out3")),
            "plot_report with --z latency_ms:min (one run)")
        command = [sys.executable, "-m", "bcpareto", "plot", str(big), "--out", str(folder / "c")]
        add(f"`bcpareto plot` end to end, {n:,} rows",
            timed(lambda: subprocess.run(command, env=env, check=True, capture_output=True),
                  repeat=repeat),
            "subprocess: interpreter start + imports + the above")

        for rows in args.baseline_rows:
            small_table = random_log(rows, seed=rows)
            small = _write(folder, small_table, f"b{rows}.csv")
            start = time.perf_counter()
            slow = notebook_front(small_table)
            t_slow = time.perf_counter() - start
            small_costs = _costs(small_table)
            ours = np.flatnonzero(pareto.nondominated_mask(small_costs)).tolist()
            assert slow == ours, "baseline and bcpareto disagree"
            add(f"row-by-row O(n^2) baseline, {rows:,} rows", t_slow,
                "front only, no figure; same front as ours (checked)")
            add(f"front only (mask), {rows:,} rows",
                timed(lambda: pareto.nondominated_mask(small_costs), repeat=repeat),
                "pareto.nondominated_mask")
            add(f"front + figure, {rows:,} rows",
                timed(lambda: plot_report([small], out_dir=folder / f"o{rows}"), repeat=repeat),
                "plot_report")
        rows = args.baseline_rows[-1]
        estimate = t_slow * (n / rows) ** 2
        results.append((
            f"row-by-row baseline, {n:,} rows (extrapolated)",
            f"~{estimate / 3600:.1f} h" if estimate > 3600 else f"~{estimate:.0f} s",
            f"{t_slow:.2f} s x ({n:,} / {rows:,})^2",
        ))

    command = help_command()
    subprocess.run(command, env=env, check=True, capture_output=True)  # warm the file cache
    help_times = []
    for _ in range(7):
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        help_times.append(time.perf_counter() - start)
    shown = "bcpareto --help" if shutil.which("bcpareto") else "python -m bcpareto --help"
    add(f"`{shown}`", statistics.median(help_times),
        f"median of 7 subprocess runs (min {min(help_times):.3f} s)")

    print("| what | time | how |\n| --- | ---: | --- |")
    for what, value, how in results:
        print(f"| {what} | {value} | {how} |")


def _costs(table: pd.DataFrame) -> np.ndarray:
    values = table[[SIZE_COLUMN, "test_accuracy"]].to_numpy()
    return pareto.to_costs(values, directions=["min", "max"])


def _write(folder: Path, table: pd.DataFrame, name: str) -> Path:
    path = folder / name
    table.to_csv(path, index=False)
    return path


if __name__ == "__main__":
    main()
