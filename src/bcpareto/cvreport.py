"""`bcpareto plot` of a run with kept predictions: per-model intervals, the chance of being on
the front, the one-SE choice at each size budget, and `bcpareto compare` of two models.

Every figure here is recomputed from the predictions a search kept (runs.load_predictions), so
it needs no training: CV accuracy from the pooled out-of-fold predictions over TRAIN's source
smears, TEST accuracy as the mean of a model's fold models on the group-disjoint TEST, each
with a group-bootstrap interval (cvstats.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import cvstats, pareto
from .errors import BcParetoError
from .runs import RUNS, load_predictions, record_files, write_atomic

DEFAULT_BUDGETS = (0.02, 0.1)  # int8 MB: the device sizes the issues and the presets talk about
SIZE_COLUMNS = ("model_size(MB)", "tflite_int8_mb")
ESTIMATES = (  # per-model column stem, cvstats score, what it is
    ("cv_accuracy", "cv", "out-of-fold (validation) accuracy, float model"),
    ("cv_int8_accuracy", "cv_int8", "out-of-fold (validation) accuracy, int8 file"),
    ("test_accuracy", "test", "TEST accuracy, float model, mean of the fold models"),
    ("int8_test_accuracy", "test_int8", "TEST accuracy, int8 file, mean of the fold models"),
)


@dataclass(frozen=True)
class Choice:
    budget: float  # int8 MB (or model_size(MB) without int8 files); inf: no limit
    size_column: str
    score: str  # the estimate it was chosen on: cv_int8_accuracy or cv_accuracy
    chosen: int | None  # grid id
    best: int | None  # the most accurate in the budget
    difference: cvstats.Difference | None  # best minus chosen, paired, on TRAIN's out-of-fold images


@dataclass(frozen=True)
class CvReport:
    csv: Path
    study: str
    table: pd.DataFrame  # one row per model (grid id): sizes, estimates with SE and interval, p_front
    choices: tuple[Choice, ...]
    hypervolume: cvstats.Estimate  # of the CV front (score against size), with its interval
    n_groups: tuple[int, int]  # source groups of TRAIN (out-of-fold) and of TEST
    rule: str
    notes: tuple[str, ...]
    scores: cvstats.ModelScores
    boot_cv: cvstats.GroupBootstrap
    boot_test: cvstats.GroupBootstrap


def study_folder(csv: Path, study: str | None = None, *, run_dir: Path | None = None) -> tuple[Path, str] | None:
    """The runs/<study> folder with kept predictions that the metrics CSV describes, or None."""
    try:
        studies = pd.read_csv(csv, usecols=lambda c: c == "study")
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError):
        return None
    names = sorted(set(studies["study"].dropna().astype(str))) if "study" in studies else []
    if study is not None:
        names = [n for n in names if n == study]
    base = (run_dir or Path(csv).parent) / RUNS
    with_predictions = [n for n in names if any((base / n).glob("grid_*_predictions.npz"))]
    if not with_predictions:
        return None
    if len(with_predictions) > 1:
        raise BcParetoError(f"{csv} holds {len(with_predictions)} studies with kept predictions "
                            f"({', '.join(with_predictions)}); pick one with --study")
    return base / with_predictions[0], with_predictions[0]


def cv_report(csv: Path, *, study: str | None = None, run_dir: Path | None = None,
              budgets: Sequence[float] = DEFAULT_BUDGETS, rule: str = "one-se",
              n_resamples: int = cvstats.N_RESAMPLES, seed: int = 0) -> CvReport:
    found = study_folder(csv, study, run_dir=run_dir)
    if found is None:
        raise BcParetoError(f"{csv}: no kept predictions under {(run_dir or Path(csv).parent) / RUNS}/<study>/ "
                            "(a search since kept predictions writes grid_<id>_predictions.npz there)")
    folder, name = found
    rows = pd.read_csv(csv)
    rows = rows[rows["study"].astype(str) == name] if "study" in rows else rows
    return judge_folder(folder, rows, csv=Path(csv), budgets=budgets, rule=rule, n_resamples=n_resamples,
                        seed=seed)


def judge_folder(folder: Path, rows: pd.DataFrame | None = None, *, csv: Path | None = None,
                 budgets: Sequence[float] = DEFAULT_BUDGETS, rule: str = "one-se",
                 n_resamples: int = cvstats.N_RESAMPLES, seed: int = 0) -> CvReport:
    """cv_report of one runs/<study> folder; ``rows``: its models' CSV rows (sizes), else read
    from the trial records beside the predictions."""
    folder, name = Path(folder), Path(folder).name
    if rows is None:
        records = [json.loads(p.read_text())["row"] for p in record_files(folder).values()]
        rows = pd.DataFrame(records)
    tables, predictions = load_predictions(folder)
    if not tables:
        raise BcParetoError(f"{folder}: predictions without their image table (images_*.npz)")
    counts = {t: sum(1 for p in predictions.values() if str(p["table"]) == t) for t in tables}
    table_name = max(counts, key=counts.get)
    notes = []
    if len(tables) > 1:
        notes.append(f"{len(tables) - 1} other image table(s) in {folder}: only the models scored on "
                     f"{table_name} ({counts[table_name]} fold models) are compared")
    predictions = {k: v for k, v in predictions.items() if str(v["table"]) == table_name}
    scores = cvstats.collect(tables[table_name], predictions)

    # points racing dropped (--fidelity folds): dominated with confidence, never chosen, and
    # left out of the images "every model" shares (they stopped after a fold or two)
    raced = set(rows.loc[rows["status"] == "raced out", "grid_id"]) if "status" in rows else set()
    rows = rows.drop_duplicates("grid_id").set_index("grid_id")
    train, test = ~scores.is_test, scores.is_test
    boot_cv = cvstats.GroupBootstrap(scores.groups[train], scores.labels[train], n_resamples=n_resamples, seed=seed)
    boot_test = cvstats.GroupBootstrap(scores.groups[test], scores.labels[test], n_resamples=n_resamples, seed=seed)

    out = pd.DataFrame({"grid_id": scores.grid_ids, "n_fold_models": scores.n_units})
    for column in ("n_params", "macs", *SIZE_COLUMNS):
        if column in rows:
            out[column] = [rows[column].get(g, np.nan) for g in scores.grid_ids]
    resampled: dict[str, np.ndarray] = {}
    for stem, score, _ in ESTIMATES:
        part, boot = (train, boot_cv) if score.startswith("cv") else (test, boot_test)
        value, draws = boot.accuracies(scores.correct[score][:, part])
        resampled[stem] = draws
        estimates = [cvstats.summarise(float(v), draws[:, m]) for m, v in enumerate(value)]
        out[stem] = [e.value for e in estimates]
        out[f"{stem}_se"] = [e.se for e in estimates]
        out[f"{stem}_lo"] = [e.lo for e in estimates]
        out[f"{stem}_hi"] = [e.hi for e in estimates]
    out = out.dropna(axis=1, how="all")
    score, size_column = _choice_axes(out)
    sizes = out[size_column].to_numpy(dtype=float)
    # The front, its volume and the choice compare models with each other: on the images every
    # model was scored on (all of TRAIN once every fold is in; fold 1's while a run goes on).
    common = {}
    racing = np.isin(scores.grid_ids, sorted(raced))
    out["raced_out"] = racing
    for stem in ("cv_accuracy", score):
        key = stem.removesuffix("_accuracy")
        rows_seen = np.isfinite(scores.correct[key][:, train]).any(axis=1) & ~racing  # models with this score
        shared = train & np.isfinite(scores.correct[key][rows_seen]).all(axis=0) if rows_seen.any() else train
        value, draws = boot_cv.accuracies(np.where(shared, scores.correct[key], np.nan)[:, train])
        value[racing], draws[:, racing] = np.nan, np.nan
        common[stem] = (shared, value, draws)
    if "model_size(MB)" in out:
        out["p_front"] = cvstats.front_probability(common["cv_accuracy"][2], out["model_size(MB)"].to_numpy(float))
    if score == "cv_int8_accuracy":
        out["p_front_int8"] = cvstats.front_probability(common[score][2], sizes)
    shared, value, draws = common[score]
    front_estimates = [cvstats.summarise(float(v), draws[:, m]) for m, v in enumerate(value)]
    out["front_accuracy"] = [e.value for e in front_estimates]  # the score on the shared images
    out["front_accuracy_lo"] = [e.lo for e in front_estimates]
    out["front_accuracy_hi"] = [e.hi for e in front_estimates]
    choices = []
    for budget in (*budgets, math.inf):
        index = cvstats.one_se_choice(value, draws, sizes, budget=budget, rule=rule)
        best = cvstats.one_se_choice(value, draws, sizes, budget=budget, rule="best")
        difference = None
        if index is not None and best is not None:
            key = score.removesuffix("_accuracy")
            difference = boot_cv.difference(np.where(shared, scores.correct[key][best], np.nan)[train],
                                            np.where(shared, scores.correct[key][index], np.nan)[train])
        choices.append(Choice(budget, size_column, score,
                              None if index is None else int(out["grid_id"].iloc[index]),
                              None if best is None else int(out["grid_id"].iloc[best]), difference))
    out["chosen"] = ["; ".join(_budget_label(c) for c in choices if c.chosen == g) for g in out["grid_id"]]
    ref = pareto.default_reference(np.column_stack([-value, sizes]))
    hypervolume = cvstats.hypervolume_interval(value, draws, sizes, ref=ref)
    if shared.sum() < train.sum():
        notes.append(f"the front, P(on the front), the choice and the volume compare models on the "
                     f"{int(shared.sum())} of {int(train.sum())} TRAIN images every model was scored on")
    incomplete = out["n_fold_models"] < out["n_fold_models"].max()
    if incomplete.any():
        notes.append(f"{int(incomplete.sum())} model(s) have fewer fold models than the others (a search "
                     "still running or stopped): their CV figures cover only their folds' images")
    return CvReport(csv or folder, name, out, tuple(choices), hypervolume,
                    (boot_cv.n_groups, boot_test.n_groups), rule, tuple(notes), scores, boot_cv, boot_test)


def _choice_axes(table: pd.DataFrame) -> tuple[str, str]:
    """Choose on the int8 file (what ships) when the run measured it, else on the float model."""
    if "cv_int8_accuracy" in table and "tflite_int8_mb" in table and table["tflite_int8_mb"].notna().any():
        return "cv_int8_accuracy", "tflite_int8_mb"
    return "cv_accuracy", "model_size(MB)"


def _budget_label(choice: Choice) -> str:
    return "any size" if math.isinf(choice.budget) else f"<= {choice.budget:g} MB"


def _interval(row: pd.Series, stem: str) -> str:
    if stem not in row or not np.isfinite(row[stem]):
        return "n/a"
    return f"{row[stem]:.3f} [{row[f'{stem}_lo']:.3f}, {row[f'{stem}_hi']:.3f}]"


def format_cv_report(report: CvReport) -> str:
    t = report.table
    n_cv, n_test = report.n_groups
    lines = [
        f"Study {report.study!r} ({report.csv}): {len(t)} models, {int(t['n_fold_models'].max())} fold "
        f"models each at most; {cvstats.LEVEL:.0%} intervals from {report.boot_cv.weights.shape[0]} "
        f"resamples of source smears ({n_cv} in TRAIN's out-of-fold images, {n_test} in TEST)",
        f"Choice rule: {report.rule} (the smallest model within one standard error of the best at "
        "each budget)" if report.rule == "one-se" else f"Choice rule: {report.rule}",
    ]
    for c in report.choices:
        if c.chosen is None:
            lines.append(f"  {_budget_label(c)}: no model fits")
            continue
        row = t.set_index("grid_id").loc[c.chosen]
        stem = c.score
        test_stem = "int8_test_accuracy" if "int8" in stem else "test_accuracy"
        lines.append(
            f"  {_budget_label(c)} ({c.size_column}): grid {c.chosen} ({row[c.size_column]:.4f} MB): "
            f"CV {_interval(row, stem)} (chosen on it); TEST {_interval(row, test_stem)} (held out)")
        if c.best != c.chosen and c.difference is not None:
            d = c.difference.estimate
            lines.append(f"      best in budget: grid {c.best}; best minus chosen {d.value:+.3f} "
                         f"(SE {d.se:.3f}, {cvstats.LEVEL:.0%} interval [{d.lo:+.3f}, {d.hi:+.3f}]): within one SE")
    h = report.hypervolume
    lines.append(f"Hypervolume of the CV front: {h.value:.4f} [{h.lo:.4f}, {h.hi:.4f}]")
    lines += [f"Note: {n}" for n in report.notes]
    return "\n".join(lines)


def write_cv_outputs(report: CvReport, out_dir: Path) -> tuple[Path, ...]:
    """cv_models.csv (every model), pareto_front.csv (the CV front and the chosen), the figure."""
    from . import plotting

    out_dir.mkdir(parents=True, exist_ok=True)
    t = report.table
    score, size_column = report.choices[0].score, report.choices[0].size_column
    front = pareto.nondominated_mask(np.column_stack([-t["front_accuracy"].to_numpy(float),
                                                      t[size_column].to_numpy(float)]))
    models_csv, front_csv = out_dir / "cv_models.csv", out_dir / "pareto_front.csv"
    write_atomic(models_csv, t.to_csv(index=False))
    write_atomic(front_csv, t[front | (t["chosen"] != "")].sort_values(size_column).to_csv(index=False))
    chosen: dict[int, str] = {}
    for c in report.choices:
        if c.chosen is not None:
            at = int(np.flatnonzero(t["grid_id"].to_numpy() == c.chosen)[0])
            chosen[at] = "; ".join(filter(None, [chosen.get(at), _budget_label(c)]))
    figure = plotting.cv_figure(
        sizes=t[size_column].to_numpy(float), values=t["front_accuracy"].to_numpy(float),
        lo=t["front_accuracy_lo"].to_numpy(float), hi=t["front_accuracy_hi"].to_numpy(float),
        p_front=t["p_front_int8" if "p_front_int8" in t else "p_front"].to_numpy(float),
        labels=[str(g) for g in t["grid_id"]], chosen=chosen,
        x_label=size_column, y_label=f"{score} (out-of-fold, {cvstats.LEVEL:.0%} interval)",
        title=f"{report.study}: {len(t)} models, grouped CV; ringed: {report.rule} choice per size budget",
    )
    paths = []
    for suffix in ("png", "svg"):
        path = out_dir / f"pareto_front.{suffix}"
        figure.savefig(path, dpi=150)
        paths.append(path)
    return (models_csv, front_csv, *paths)


def compare(report: CvReport, a: int, b: int) -> str:
    """Two models compared in words and numbers: each one's intervals, then A minus B paired."""
    ids = list(report.scores.grid_ids)
    for g in (a, b):
        if g not in ids:
            raise BcParetoError(f"grid id {g} has no kept predictions in study {report.study!r}; "
                                f"known: {', '.join(map(str, ids))}")
    t = report.table.set_index("grid_id")
    lines = []
    for g in (a, b):
        row = t.loc[g]
        sizes = ", ".join(f"{c} {row[c]:.4f}" for c in SIZE_COLUMNS if c in row and np.isfinite(row[c]))
        lines.append(f"grid {g} ({sizes}): CV {_interval(row, 'cv_accuracy')}, CV int8 "
                     f"{_interval(row, 'cv_int8_accuracy')}; TEST {_interval(row, 'test_accuracy')}, "
                     f"TEST int8 {_interval(row, 'int8_test_accuracy')}")
    train, test = ~report.scores.is_test, report.scores.is_test
    for stem, score, what in ESTIMATES:
        correct = report.scores.correct[score]
        part, boot = (train, report.boot_cv) if score.startswith("cv") else (test, report.boot_test)
        if not np.isfinite(correct[ids.index(a)][part]).any():
            continue
        d = boot.difference(correct[ids.index(a)][part], correct[ids.index(b)][part])
        e = d.estimate
        lines.append(f"{what}: A - B = {e.value:+.3f} (SE {e.se:.3f}, {cvstats.LEVEL:.0%} interval "
                     f"[{e.lo:+.3f}, {e.hi:+.3f}], P(A better) {d.p_better:.2f}, {d.n_images} images); "
                     + d.verdict(f"grid {a}", f"grid {b}"))
    return "\n".join(lines)


def report_to_dict(report: CvReport) -> dict[str, Any]:
    def clean(value: Any) -> Any:
        if isinstance(value, (float, np.floating)):
            return None if not np.isfinite(value) else float(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.bool_):
            return bool(value)
        return value

    return {
        "study": report.study, "rule": report.rule, "level": cvstats.LEVEL,
        "n_groups": {"train_out_of_fold": report.n_groups[0], "test": report.n_groups[1]},
        "hypervolume": {k: clean(v) for k, v in vars(report.hypervolume).items()},
        "choices": [{"budget": None if math.isinf(c.budget) else c.budget, "size_column": c.size_column,
                     "score": c.score, "chosen": c.chosen, "best": c.best} for c in report.choices],
        "models": [{k: clean(v) for k, v in row.items()} for row in report.table.to_dict("records")],
        "notes": list(report.notes),
    }


def card_section(report: CvReport, grid_id: int, *, fold: int | None) -> dict[str, Any]:
    """What a model card says of a cross-validated model: its CV and TEST intervals, labelled."""
    t = report.table.set_index("grid_id")
    if grid_id not in t.index:
        return {}
    row = t.loc[grid_id]

    def interval(stem: str, what: str) -> dict[str, Any] | None:
        if stem not in row or not np.isfinite(row[stem]):
            return None
        return {"value": float(row[stem]), "se": float(row[f"{stem}_se"]),
                f"interval_{cvstats.LEVEL:.0%}": [float(row[f"{stem}_lo"]), float(row[f"{stem}_hi"])], "what": what}

    chosen = [_budget_label(c) for c in report.choices if c.chosen == grid_id]
    return {
        "how_to_read": (
            "cv_* figures are what the model was chosen on: out-of-fold accuracy pooled over every "
            "fold of grouped cross-validation on TRAIN; test_* figures are held out (TEST, no smear "
            "shared with TRAIN), the mean of this point's fold models: quote those. Intervals: "
            f"{cvstats.LEVEL:.0%}, bootstrap over source smears stratified by class"),
        "this_file": (f"the fold-{fold + 1} model of {int(row['n_fold_models'])}" if fold is not None
                      else "one of the fold models"),
        **{stem: interval(stem, what) for stem, _, what in ESTIMATES if interval(stem, what)},
        "p_front": float(row["p_front"]) if "p_front" in row and np.isfinite(row["p_front"]) else None,
        "chosen_at": chosen or None, "choice_rule": report.rule,
        "source_groups": {"train_out_of_fold": report.n_groups[0], "test": report.n_groups[1]},
    }
