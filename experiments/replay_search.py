"""Replay samplers x successive halving offline over a finished search's table (issue 14).

NAS-Bench style: configs/search_space.xlsx (tools/make_search_space.py) has a `space` sheet
of two-valued parameters and a `grid` sheet of every architecture they build. Its search,
`bcpareto search configs/search_space.xlsx --config searchref --run-dir runs/searchref`, records
every model's learning curve (validation accuracy and training seconds per epoch) in
runs/<study>/grid_<id>.json. This script replays, on one worker and in sequence, what each
sampler (grid in sheet order, random, TPE, NSGA-II, GP) would have found with and without
asynchronous successive halving (halving.decide at the rungs halving.rungs gives, from epoch 1),
charging each model the seconds its curve says it trained:

- a model stopped at rung e costs the seconds of its first e epochs and is told PRUNED;
- a completed model costs all its epochs and is told COMPLETE with (final val_accuracy, size);
- a proposal of an architecture this replay has already trained costs 0 s and is told the same
  outcome again, and the next proposal is a random draw (strategy.RepeatedProposals: the live
  search's rule, the same code);
- a replay ends when the seconds charged reach the grid's (every model trained to its last
  epoch), when every point has been seen, after 25 proposals in a row of models it has (random
  draws included; as the live search), or after 10 proposals per point (re-draws, below, apart:
  at most 10 per point of the space).

Figures, per sampler x halving over the seeds: the share of the reference hypervolume (the full
table's front; size down, val_accuracy up; one fixed reference point from the full table) found
within 40% of the grid's seconds, median and worst; the seconds to reach 98% and 95% of it (% of
the grid's seconds), median; the same with TEST accuracy as the second objective; and how much
the reference volume itself moves when the repeat runs' figures replace the first runs'.

    python experiments/replay_search.py runs/searchref --seeds 20
    python experiments/replay_search.py runs/searchref --seeds 2 --samplers random,tpe --etas none,2
    python experiments/replay_search.py runs/searchref --allow-partial   # while the table fills

--allow-partial replays over the recorded points only: a sampler's proposal of an unrecorded
point is told FAIL and asked again (a re-draw; counted and printed).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runs from a checkout without installing bcpareto

from bcpareto import hvtrace
from bcpareto.errors import BcParetoError
from bcpareto.halving import RungResult, decide, rungs
from bcpareto.strategy import (  # the live search's
    MAX_REPEATED_PROPOSALS,
    NSGA2_POPULATION,
    SAMPLERS,
    STARTUP_TRIALS,
    RepeatedProposals,
)

MIN_EPOCHS = 1  # the first rung: every model is judged after one epoch
BUDGET = 0.4  # share of the grid's seconds at which the volume found is compared
SHARES = (0.98, 0.95)  # shares of the reference volume whose arrival times are reported
PROPOSALS_PER_POINT = 10  # a replay gives up after this many proposals per point

CURVE_POINTS = 201  # the median curves are sampled at 0, 0.5, ..., 100% of the grid's seconds
X, VAL, TEST = "model_size(MB)", "val_accuracy", "test_accuracy"  # the seed's CSV column names
_ROUNDING = 1 + 1e-9  # the trace's running sum of seconds may end a hair above the grid's exact sum
DEFAULT_JSON = ROOT / "experiments" / "results" / "search" / "replay.json"
DEFAULT_PLOT = ROOT / "experiments" / "results" / "search" / "replay.png"


class BenchError(BcParetoError):
    """The run folder or the sheet cannot be replayed as asked."""


# --- the reference table ---------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One recorded model: its learning curve, size and final accuracies."""

    grid_id: int
    val_curve: tuple[float, ...]  # validation accuracy after each epoch
    seconds: tuple[float, ...]  # training seconds of each epoch
    size: float  # model_size(MB)
    val: float  # final val_accuracy (the last epoch's)
    test: float  # TEST accuracy of the completed model

    @property
    def cost(self) -> float:
        return math.fsum(self.seconds)


@dataclass(frozen=True)
class Table:
    """What a replay needs: the space's parameters, which grid id each assignment builds, and
    the recorded models (a subset of the space's points with --allow-partial)."""

    names: tuple[str, ...]  # the space's parameters, in sheet order
    distributions: Mapping[str, tuple[Any, ...]]  # SearchSpace.distributions()
    ids: Mapping[tuple[Any, ...], int]  # an assignment's values, in `names` order -> grid id
    assignments: Mapping[int, dict[str, Any]]  # grid id -> the first assignment that builds it
    entries: Mapping[int, Entry]  # recorded grid ids
    epochs: int
    repeats: Mapping[int, Entry] = field(default_factory=dict)  # grid id -> its repeat-1 record
    study: str = ""

    @property
    def missing(self) -> list[int]:
        """Space points with no record."""
        return sorted(set(self.assignments) - set(self.entries))

    @property
    def reference_seconds(self) -> float:
        """What the grid pays: every recorded model trained to its last epoch."""
        return math.fsum(entry.cost for entry in self.entries.values())

    def rows(self, *, repeats: Mapping[int, Entry] | None = None) -> list[dict[str, Any]]:
        """Every recorded model as a completed hvtrace row (``repeats`` swapped in)."""
        chosen = {**self.entries, **(repeats or {})}
        return [_row(chosen[g], g) for g in sorted(self.entries)]


def load_table(run_dir: Path, sheet: Path, *, study: str | None = None, allow_partial: bool = False) -> Table:
    """The sheet's space and grid, matched to each other, and the run's records of them."""
    from bcpareto.gridspec import read_grid
    from bcpareto.runs import RUNS, record_files, study_dir
    from bcpareto.space import read_space

    space = read_space(sheet)
    if space is None:
        raise BenchError(f"{sheet}: no `space` sheet; expected the workbook of tools/make_search_space.py")
    names = tuple(p.name for p in space.parameters)
    by_architecture: dict[Any, int] = {}
    for point in read_grid(sheet):
        by_architecture.setdefault(replace(point, grid_id=0), point.grid_id)
    grid = {g: p for p, g in by_architecture.items()}
    ids: dict[tuple[Any, ...], int] = {}
    assignments: dict[int, dict[str, Any]] = {}
    unmatched = []
    for values in itertools.product(*(_values(p) for p in space.parameters)):
        assignment = dict(zip(names, values))
        grid_id = by_architecture.get(space.point(assignment, grid_id=0))
        if grid_id is None:
            unmatched.append(assignment)
            continue
        ids[values] = grid_id
        assignments.setdefault(grid_id, assignment)
    if unmatched:
        raise BenchError(f"{sheet}: {len(unmatched)} assignment(s) of the space sheet build no model of the "
                         f"grid sheet, e.g. {unmatched[0]}; expected a grid row for every assignment")

    runs = Path(run_dir) / RUNS
    folders = sorted(p.name for p in runs.glob("*") if p.is_dir())
    if study is None:
        if len(folders) != 1:
            found = ", ".join(folders) if folders else "none"
            raise BenchError(f"{runs}: expected one study folder, found {found}"
                             + ("; pick one with --study" if folders else "; run the search first"))
        study = folders[0]
    folder = study_dir(Path(run_dir), study)
    entries: dict[int, Entry] = {}
    repeats: dict[int, Entry] = {}
    problems = []
    for (grid_id, repeat), path in record_files(folder).items():
        if grid_id not in assignments or repeat > 1:
            continue  # a grid row outside the space, or a second repeat: not replayed
        try:
            entry = _entry(json.loads(path.read_text()), grid[grid_id], grid_id)
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        (repeats if repeat else entries)[grid_id] = entry
    if problems:
        raise BenchError(f"{folder}: unusable record(s):\n  " + "\n  ".join(problems))
    if not entries:
        raise BenchError(f"{folder}: no record of any point of {sheet}'s space yet")
    epochs = {len(e.seconds) for e in entries.values()} | {len(e.seconds) for e in repeats.values()}
    if len(epochs) != 1:
        raise BenchError(f"{folder}: records have {sorted(epochs)} epochs; expected one number for all")
    table = Table(names, space.distributions(), ids, assignments, entries, epochs.pop(),
                  {g: e for g, e in repeats.items() if g in entries}, study)
    if table.missing and not allow_partial:
        shown = ", ".join(map(str, table.missing[:12])) + (", ..." if len(table.missing) > 12 else "")
        raise BenchError(f"{folder}: {len(entries)} of {len(assignments)} space points have a record; "
                         f"no record for grid ids {shown}. Wait for the search to finish, or pass "
                         "--allow-partial to replay over the recorded points only")
    return table


# --- one replay ------------------------------------------------------------------------------


@dataclass
class Replay:
    """One sampler x halving x seed: the models trained, in order, as hvtrace rows."""

    sampler: str
    eta: int | None
    seed: int
    rows: list[dict[str, Any]]  # one per model trained: seconds charged, size, accuracies
    proposals: int  # trials asked, re-draws included
    duplicates: int  # proposals of a model already trained (0 s)
    redraws: int  # proposals of an unrecorded point (--allow-partial), told FAIL
    ended_by: str  # "all seen", "seconds" (the grid's spent), "repeats" (25 known models in a row) or "proposals"
    wall_seconds: float
    told: list[tuple[int, str]] = field(default_factory=list)  # per proposal: grid id, state told
    drawn: int = 0  # proposals that were random draws after a repeat (re-draws included)

    @property
    def charged(self) -> float:
        return math.fsum(row["train_seconds"] for row in self.rows)

    @property
    def stopped(self) -> list[int]:
        return [row["grid_id"] for row in self.rows if row["stopped_at_epoch"] is not None]


def replay(table: Table, *, sampler: str, eta: int | None, seed: int, min_epochs: int = MIN_EPOCHS) -> Replay:
    """Replay one search on one worker: ask, look the model up, judge it at each rung, tell."""
    import optuna

    started = time.perf_counter()
    distributions = _optuna_distributions(table.distributions)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=_sampler(sampler, seed))
    if sampler == "grid":
        for grid_id in sorted(table.entries):
            study.enqueue_trial(table.assignments[grid_id])
    judged_at = rungs(min_epochs, table.epochs, eta) if eta else []
    at_rung: dict[int, list[RungResult]] = {epoch: [] for epoch in judged_at}
    outcome: dict[int, tuple[float, float] | None] = {}  # grid id -> told values; None: pruned
    rows: list[dict[str, Any]] = []
    told: list[tuple[int, str]] = []
    proposals = duplicates = redraws = drawn = 0
    repeated = RepeatedProposals(seed=seed)  # as the live search: after a repeat, random draws
    charged = 0.0
    while not (ended_by := _end(table, seen=len(outcome), charged=charged, asked=proposals - redraws,
                                redraws=redraws)):
        if sampler != "grid" and (values := repeated.values(distributions, number=len(study.trials))):
            study.enqueue_trial(values)  # the trial's fixed values; the sampler still sees it
            drawn += 1
        trial = study.ask(distributions)
        proposals += 1
        grid_id = table.ids[tuple(trial.params[name] for name in table.names)]
        if grid_id not in table.entries:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            told.append((grid_id, "FAIL"))
            redraws += 1
            continue
        known = grid_id in outcome
        if known:
            duplicates += 1
        else:
            entry = table.entries[grid_id]
            stopped_at = None
            for epoch in judged_at:
                at_rung[epoch].append(RungResult(trial.number, entry.val_curve[epoch - 1], entry.size))
                if not decide(at_rung[epoch], trial.number, eta=eta, epoch=epoch).proceed:
                    stopped_at = epoch
                    break
            rows.append(_row(entry, grid_id, stopped_at=stopped_at))
            charged += rows[-1]["train_seconds"]
            outcome[grid_id] = None if stopped_at else (entry.val, entry.size)
        if outcome[grid_id] is None:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, list(outcome[grid_id]))
        told.append((grid_id, "PRUNED" if outcome[grid_id] is None else "COMPLETE"))
        if repeated.count(repeated=known):  # as the live search: the space has little left
            ended_by = "repeats"
            break
    return Replay(sampler, eta, seed, rows, proposals, duplicates, redraws, ended_by,
                  time.perf_counter() - started, told, drawn)


# --- measures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """The fixed reference point and the full table's hypervolume, for one accuracy column."""

    column: str
    point: np.ndarray  # cost space (size, -accuracy)
    volume: float


def references(table: Table) -> dict[str, Reference]:
    rows = table.rows()
    found = {}
    for column in (VAL, TEST):
        point = hvtrace.reference_point([rows], x=X, y=column)
        volume = float(hvtrace.hypervolume_trace(rows, x=X, y=column, ref=point).hypervolume[-1])
        found[column] = Reference(column, point, volume)
    return found


def measure(result: Replay, table: Table, refs: Mapping[str, Reference]) -> dict[str, Any]:
    """One replay's figures: volume share at the budget and the seconds to reach each share."""
    total = table.reference_seconds
    figures: dict[str, Any] = {
        "seed": result.seed, "trained": len(result.rows), "stopped": len(result.stopped),
        "proposals": result.proposals, "duplicates": result.duplicates, "drawn": result.drawn,
        "redraws": result.redraws, "charged_pct": 100 * result.charged / total, "ended_by": result.ended_by,
        "wall_seconds": round(result.wall_seconds, 3),
    }
    for column, ref in refs.items():
        trace = hvtrace.hypervolume_trace(result.rows, x=X, y=column, ref=ref.point)
        share = float(hvtrace.volume_at(trace, [BUDGET * total])[0]) / ref.volume
        reach = {f"reach_{s:.0%}_pct": _pct(hvtrace.seconds_to_reach(trace, s, ref.volume), total) for s in SHARES}
        figures[column] = {"share_at_budget": share, **reach, "final_share": _final(trace) / ref.volume,
                           "curve": (hvtrace.volume_at(trace, _curve_x() / 100 * total * _ROUNDING)
                                     / ref.volume).tolist()}
    return figures


def summarise(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median and worst over the seeds; a share never reached counts as infinitely late."""
    summary: dict[str, Any] = {"replays": len(per_seed)}
    for key in ("trained", "stopped", "duplicates", "drawn", "redraws", "charged_pct"):
        summary[f"median_{key}"] = statistics.median(s[key] for s in per_seed)
    ends = [s["ended_by"] for s in per_seed]
    summary["ended_by"] = {reason: ends.count(reason) for reason in sorted(set(ends))}
    for column in (VAL, TEST):
        shares = [s[column]["share_at_budget"] for s in per_seed]
        part: dict[str, Any] = {"median_share_at_budget": statistics.median(shares),
                                "worst_share_at_budget": min(shares)}
        for share in SHARES:
            key = f"reach_{share:.0%}_pct"
            times = [math.inf if s[column][key] is None else s[column][key] for s in per_seed]
            median = statistics.median(times)
            part[f"median_{key}"] = None if math.isinf(median) else median
            part[f"reached_{share:.0%}"] = sum(not math.isinf(t) for t in times)
        part["median_curve"] = np.median([s[column]["curve"] for s in per_seed], axis=0).tolist()
        summary[column] = part
    return summary


def noise(table: Table, refs: Mapping[str, Reference]) -> dict[str, Any]:
    """How much the reference volume moves when a repeat's figures replace a first run's."""
    found: dict[str, Any] = {"points_with_repeat": sorted(table.repeats)}
    if not table.repeats:
        return found
    for column, ref in refs.items():
        def change(swapped: Mapping[int, Entry], column: str = column, ref: Reference = ref) -> float:
            rows = table.rows(repeats=swapped)
            volume = hvtrace.hypervolume_trace(rows, x=X, y=column, ref=ref.point).hypervolume[-1]
            return 100 * (float(volume) / ref.volume - 1)

        each = {g: change({g: e}) for g, e in table.repeats.items()}
        found[column] = {
            "change_pct_each": each, "change_pct_all": change(table.repeats),
            "spread_pct": [min(each.values()), max(each.values())],
            "accuracy_change_each": {g: getattr(e, "val" if column == VAL else "test")
                                     - getattr(table.entries[g], "val" if column == VAL else "test")
                                     for g, e in table.repeats.items()},
        }
    return found


# --- output ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import optuna

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "usable_cores": usable,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(), "optuna": optuna.__version__, "numpy": np.__version__}


def markdown(results: Mapping[str, dict[str, Any]], column: str) -> list[str]:
    head = (f"| sampler | halving | replays | share of ref HV at {BUDGET:.0%} of grid s (median / worst) "
            "| 98% at (median, % of grid s; reached) | 95% at (median; reached) "
            "| models trained / stopped / duplicates / random draws (median) | s charged (median, % of grid) | ended by |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, summary in results.items():
        sampler, halving = label.split(" / ")
        part = summary[column]
        ends = ", ".join(f"{reason} {n}" for reason, n in summary["ended_by"].items())
        reach = [f"{_fmt_pct(part[f'median_reach_{s:.0%}_pct'])}; {part[f'reached_{s:.0%}']}/{summary['replays']}"
                 for s in SHARES]
        lines.append(
            f"| {sampler} | {halving} | {summary['replays']} | {part['median_share_at_budget']:.1%} / "
            f"{part['worst_share_at_budget']:.1%} | {reach[0]} | {reach[1]} | {summary['median_trained']:g} / "
            f"{summary['median_stopped']:g} / {summary['median_duplicates']:g} / {summary['median_drawn']:g} | "
            f"{summary['median_charged_pct']:.0f}% | {ends} |")
    return lines


def plot(results: Mapping[str, dict[str, Any]], path: Path, *, title: str) -> Path:
    """Median share of the reference volume against % of the grid's seconds, one line per
    sampler x halving: colour by sampler, line style by halving."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from bcpareto.runs import write_atomic

    colours = dict(zip(SAMPLERS, ("0.35", "tab:blue", "tab:orange", "tab:green", "tab:red")))
    styles = {"no halving": "-", "eta 2": "--", "eta 3": ":"}
    figure = Figure(figsize=(9, 5.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    x = _curve_x()
    for label, summary in results.items():
        sampler, halving = label.split(" / ")
        axes.step(x, np.array(summary[VAL]["median_curve"]) * 100, where="post", label=label,
                  color=colours.get(sampler), linestyle=styles.get(halving, "-."), linewidth=1.5)
    for share in SHARES:
        axes.axhline(share * 100, color="0.7", linestyle=":", linewidth=0.8)
    axes.axvline(BUDGET * 100, color="0.5", linewidth=0.8)
    axes.annotate(f"budget {BUDGET:.0%}", (BUDGET * 100, 1), xytext=(3, 0), textcoords="offset points",
                  fontsize=7, color="0.4")
    for share in SHARES:
        axes.annotate(f"{share:.0%}", (0, share * 100), xytext=(2, -9 if share < max(SHARES) else 2),
                      textcoords="offset points", fontsize=7, color="0.4")
    axes.set_xlabel("training seconds charged (% of the grid's: every model to its last epoch)")
    axes.set_ylabel("hypervolume, median over seeds (% of the full table's)")
    axes.set_xlim(0, 102)  # a last step at exactly 100% stays visible
    axes.set_ylim(0, 102)
    axes.grid(alpha=0.3)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, ncols=1, loc="center left", bbox_to_anchor=(1.01, 0.5), title="sampler / halving",
                title_fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=hvtrace.PNG_DPI)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buffer.getvalue())
    return path


def replay_all(
    table: Table, refs: Mapping[str, Reference], *, samplers: Sequence[str], etas: Sequence[int | None],
    seeds: int, min_epochs: int = MIN_EPOCHS,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Every sampler x halving over the seeds (grid once: it is deterministic): the summaries
    and each replay's own figures, keyed by "sampler / halving"."""
    results: dict[str, dict[str, Any]] = {}
    per_seed: dict[str, list[dict[str, Any]]] = {}
    for sampler in samplers:
        for eta in etas:
            label = f"{sampler} / {'no halving' if eta is None else f'eta {eta}'}"
            figures = [measure(replay(table, sampler=sampler, eta=eta, seed=seed, min_epochs=min_epochs), table, refs)
                       for seed in range(1 if sampler == "grid" else seeds)]
            results[label] = summarise(figures)
            for one in figures:  # the JSON keeps the median curves, not every seed's
                for column in (VAL, TEST):
                    del one[column]["curve"]
            per_seed[label] = figures
            spent = sum(f["wall_seconds"] for f in figures)
            print(f"  replayed {label}: {len(figures)} seed(s) in {spent:.1f} s", file=sys.stderr, flush=True)
    return results, per_seed


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        table = load_table(args.run_dir, args.sheet, study=args.study, allow_partial=args.allow_partial)
    except BcParetoError as exc:
        print(f"replay_search: {exc}", file=sys.stderr)
        return 1
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    samplers, skipped = list(args.samplers), {}
    if "gp" in samplers and (missing := _gp_missing()):
        skipped["gp"] = f"GPSampler needs {missing}, not installed in this Python"
        samplers.remove("gp")
    refs = references(table)
    _print_setting(table, refs, args=args, skipped=skipped)

    started = time.perf_counter()
    results, per_seed = replay_all(table, refs, samplers=samplers, etas=args.etas, seeds=args.seeds,
                                   min_epochs=args.min_epochs)
    wall = time.perf_counter() - started
    spread = noise(table, refs)
    info = machine()
    _print_results(table, results, per_seed, spread)
    print(f"\nMachine: {info['platform']}, {info['usable_cores']} usable cores, load {info['load_average']}; "
          f"Python {info['python']}, optuna {info['optuna']}, numpy {info['numpy']}")
    print(f"Replay wall time: {wall:.1f} s ({len(results)} sampler x halving, {args.seeds} seeds each, grid 1)")

    from bcpareto.runs import write_atomic

    payload = {
        "sheet": str(args.sheet), "run_dir": str(args.run_dir), "study": table.study,
        "points_in_space": len(table.assignments), "points_recorded": len(table.entries),
        "partial": bool(table.missing), "missing_grid_ids": table.missing, "epochs": table.epochs,
        "reference_seconds": table.reference_seconds,
        "references": {c: {"point_cost_space": r.point.tolist(), "hypervolume": r.volume} for c, r in refs.items()},
        "settings": {"seeds": args.seeds, "samplers": samplers, "etas": args.etas, "min_epochs": args.min_epochs,
                     "budget": BUDGET, "shares": SHARES, "proposals_per_point": PROPOSALS_PER_POINT,
                     "max_repeated_proposals": MAX_REPEATED_PROPOSALS, "after_a_repeat": "random draw",
                     "nsga2_population": NSGA2_POPULATION, "startup_trials": STARTUP_TRIALS, "skipped": skipped},
        "curve_pct_of_reference_seconds": _curve_x().tolist(),
        "results": results, "per_seed": per_seed, "noise": spread,
        "machine": info, "replay_wall_seconds": wall,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.json, json.dumps(payload, indent=1))
    partial = f", PARTIAL: {len(table.entries)} of {len(table.assignments)} points" if table.missing else ""
    plot(results, args.plot, title=f"Search replay over {args.sheet.name} ({args.seeds} seeds{partial})")
    print(f"\nWrote {args.json} and {args.plot}")
    return 0


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="the search's --run-dir (holds runs/<study>/grid_<id>.json)")
    parser.add_argument("--sheet", type=Path, default=ROOT / "configs" / "search_space.xlsx",
                        help="the workbook the search ran (space and grid sheets) [default: %(default)s]")
    parser.add_argument("--study", help="the study folder under RUN_DIR/runs, where there are several")
    parser.add_argument("--seeds", type=int, default=20, help="seeds per sampler x halving [default: 20]")
    parser.add_argument("--min-epochs", type=int, default=MIN_EPOCHS,
                        help="halving's first rung, as search --min-epochs [default: %(default)s]")
    parser.add_argument("--samplers", default=",".join(SAMPLERS), help="comma-separated, out of %(default)s")
    parser.add_argument("--etas", default="none,2,3",
                        help="halving: none or eta (>= 2), comma-separated [default: %(default)s]")
    parser.add_argument("--allow-partial", action="store_true",
                        help="replay over the recorded points only while the table is incomplete")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="every figure [default: %(default)s]")
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help="median curves, PNG [default: %(default)s]")
    args = parser.parse_args(argv)
    args.samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    unknown = [s for s in args.samplers if s not in SAMPLERS]
    if unknown or not args.samplers:
        parser.error(f"--samplers: unknown {', '.join(unknown) or '(none given)'}; "
                     f"expected some of {', '.join(SAMPLERS)}")
    bad_etas = f"--etas {args.etas!r}: expected none or whole numbers >= 2, e.g. none,2,3"
    try:
        args.etas = [None if e.strip().lower() == "none" else int(e) for e in args.etas.split(",") if e.strip()]
    except ValueError:
        parser.error(bad_etas)
    if not args.etas or any(e is not None and e < 2 for e in args.etas):
        parser.error(bad_etas)
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: expected at least 1")
    return args


def _print_setting(
    table: Table, refs: Mapping[str, Reference], *, args: argparse.Namespace, skipped: Mapping[str, str]
) -> None:
    n_space, n_recorded = len(table.assignments), len(table.entries)
    total = table.reference_seconds
    print(f"# Search replay: {args.sheet.name} over {args.run_dir} (study {table.study})\n")
    print(f"- table: {n_recorded} of {n_space} space points recorded, {table.epochs} epochs each; "
          f"{len(table.repeats)} with a repeat")
    if table.missing:
        print(f"- PARTIAL (--allow-partial): the space is cut to the {n_recorded} recorded points; a proposal "
              f"of one of the other {len(table.missing)} is told FAIL and re-drawn. Every figure is relative "
              "to the recorded points' front and seconds, not the full table's.")
    print(f"- grid's seconds (every recorded model to its last epoch): {total:,.0f} s ({total / 60:.1f} min); "
          f"budget {BUDGET:.0%} = {BUDGET * total / 60:.1f} min")
    for column, ref in refs.items():
        print(f"- reference front ({X} down, {column} up): hypervolume {ref.volume:.6g} against the point "
              f"({ref.point[0]:.4g} MB, {-ref.point[1]:.4f})")
    halvings = ", ".join("none" if e is None else f"eta {e} (rungs {rungs(args.min_epochs, table.epochs, e)})"
                         for e in args.etas)
    print(f"- halving: {halvings}; one worker, asynchronous; a replay ends at the grid's seconds, when every "
          f"point is seen, after {MAX_REPEATED_PROPOSALS} proposals in a row of models it has, or after "
          f"{PROPOSALS_PER_POINT} proposals per point")
    print("- a proposal of a model the replay has is told its result again (0 s); the next proposal is a "
          "random draw (strategy.RepeatedProposals, as the live search)")
    for name, why in skipped.items():
        print(f"- {name} skipped: {why}")
    print("- grid (sheet order) is deterministic: one replay each, whatever --seeds")


def _print_results(
    table: Table, results: Mapping[str, dict[str, Any]], per_seed: Mapping[str, list[dict[str, Any]]],
    spread: Mapping[str, Any],
) -> None:
    print(f"\n## {VAL} (the search's objective)\n")
    print("\n".join(markdown(results, VAL)))
    print(f"\n## {TEST} of the same completed models (secondary)\n")
    print("\n".join(markdown(results, TEST)))
    if table.missing:
        redraws = [f["redraws"] for figures in per_seed.values() for f in figures]
        print(f"\nRe-draws (proposals of the {len(table.missing)} unrecorded points, told FAIL): "
              f"{sum(redraws)} in all, median {statistics.median(redraws):g} per replay")
    print("\n## The reference volume's own noise\n")
    if not table.repeats:
        print("- no repeat records (grid_<id>_r1.json): not measured")
        return
    for column in (VAL, TEST):
        part = spread[column]
        low, high = part["spread_pct"]
        print(f"- {column}: one repeat swapped in at a time moves the reference volume by {low:+.2f}% to "
              f"{high:+.2f}% ({len(table.repeats)} points with a repeat); all at once "
              f"{part['change_pct_all']:+.2f}%")


# --- helpers -------------------------------------------------------------------------------


def _end(table: Table, *, seen: int, charged: float, asked: int, redraws: int) -> str:
    """Why a replay ends now ("" while it goes on): every point seen, the grid's seconds spent, or
    the proposal limits reached (of recorded points; of re-draws, apart)."""
    if seen == len(table.entries):
        return "all seen"
    if charged >= table.reference_seconds:
        return "seconds"
    if asked >= PROPOSALS_PER_POINT * len(table.entries) or redraws >= PROPOSALS_PER_POINT * len(table.assignments):
        return "proposals"
    return ""


def _values(parameter: Any) -> list[Any]:
    """Every value a parameter can take, for the product over the space."""
    if parameter.kind == "categorical":
        return list(parameter.choices)
    if parameter.fixed:
        return [parameter.low]
    if parameter.kind == "int":
        return list(range(int(parameter.low), int(parameter.high) + 1))
    raise BenchError(f"{parameter.name}: a float range ({parameter.low} to {parameter.high}) has no finite "
                     "table of models; expected choices or a fixed value")


def _entry(record: Mapping[str, Any], point: Any, grid_id: int) -> Entry:
    """A record -> Entry, checked against the grid point it should be."""
    row, curve = record["row"], record.get("curve")
    if not curve:
        raise ValueError("no curve (per-epoch val_accuracy and seconds); expected a record of a search "
                         "that logs curves")
    expected = point.params() | {"block": point.block}
    for key in ("filters", "kernel_sizes", "neurons", "block"):
        if str(row.get(key, "conv")).replace(" ", "") != str(expected[key]):
            raise ValueError(f"{key} {row.get(key, 'conv')} but grid id {grid_id} of the sheet has "
                             f"{expected[key]}; expected a run of this sheet")
    vals = tuple(float(v) for v in curve["val_accuracy"])
    seconds = tuple(float(s) for s in curve["seconds"])
    if len(vals) != len(seconds) or len(vals) != int(row["epochs"]):
        raise ValueError(f"curve of {len(vals)} accuracies and {len(seconds)} seconds for {row['epochs']} epochs")
    return Entry(grid_id, vals, seconds, float(row[X]), float(row[VAL]), float(row[TEST]))


def _row(entry: Entry, grid_id: int, *, stopped_at: int | None = None) -> dict[str, Any]:
    """A trained model as an hvtrace row: the seconds charged; a stopped one's accuracy is its
    curve's at the stop (it adds no volume), a completed one's the record's final figures."""
    epochs = stopped_at or len(entry.seconds)
    return {"grid_id": grid_id, "train_seconds": math.fsum(entry.seconds[:epochs]), X: entry.size,
            VAL: entry.val_curve[epochs - 1] if stopped_at else entry.val,
            TEST: math.nan if stopped_at else entry.test, "stopped_at_epoch": stopped_at}


def _optuna_distributions(spec: Mapping[str, tuple[Any, ...]]) -> dict[str, Any]:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    found: dict[str, Any] = {}
    for name, (kind, *rest) in spec.items():
        if kind == "categorical":
            found[name] = CategoricalDistribution(rest[0])
        elif kind == "int":
            found[name] = IntDistribution(int(rest[0]), int(rest[1]), log=bool(rest[2]))
        else:
            found[name] = FloatDistribution(float(rest[0]), float(rest[1]), log=bool(rest[2]))
    return found


def _sampler(name: str, seed: int) -> Any:
    """The sampler the live search makes (bcpareto.strategy.make_sampler), so a replay is the search."""
    import optuna

    from bcpareto.strategy import Strategy, make_sampler

    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}")
    if name == "grid":  # the enqueued sheet order; the sampler is never asked
        return optuna.samplers.RandomSampler(seed=seed)
    return make_sampler(Strategy(sampler=name, seed=seed))


def _gp_missing() -> str | None:
    import importlib.util

    missing = [m for m in ("torch", "scipy") if importlib.util.find_spec(m) is None]
    return " and ".join(missing) or None


def _curve_x() -> np.ndarray:
    return np.linspace(0, 100, CURVE_POINTS)


def _final(trace: hvtrace.Trace) -> float:
    return float(trace.hypervolume[-1]) if len(trace.hypervolume) else 0.0


def _pct(seconds: float | None, total: float) -> float | None:
    return None if seconds is None else 100 * seconds / total


def _fmt_pct(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.0f}%"


if __name__ == "__main__":
    sys.exit(main())
