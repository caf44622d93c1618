"""`bcpareto report`: one self-contained HTML page of a run: its front, each model's detail, the machine.

Everything is inline (PNG data URIs, CSS, SVG; no script, nothing fetched), so the file opens
offline and can be mailed. The front and its table come from `bcpareto plot`'s own code
(report.py, or cvreport.py for a run with kept predictions); per-model detail (TEST confusion
matrix, per-class recall, learning curve) is HTML tables and a small SVG inside closed
<details>, so a report of hundreds of models stays a few MB and opens at once.

The markup (tables, widgets, stylesheet, page) is htmlpage.py's; this module decides what the
page says. One module, though over 400 lines: it builds the sections in the page's order (the
run's inputs, the front, every model, learning curves, the machine), each from the same rows,
records and front, so it reads top to bottom as the page does.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import platform
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__, htmlpage
from .errors import ColumnError, ConfigError
from .metrics_log import CSV_NAME
from .runs import RUNS, check_creatable_dir, record_files, study_dir, write_atomic

DATA_CHECK_JSON = "data_check.json"  # looked for in the run folder: `bcpareto data check --json` output
CURVES_DPI = 100
MAX_CURVE_LEGEND = 10  # front models named in the learning-curve figure's legend
SIZE_COLUMNS = ("model_size(MB)", "tflite_int8_mb", "float32_mb")
TEST_COLUMNS = ("test_accuracy", "int8_test_accuracy", "test_balanced_accuracy")
SHOWN_COLUMNS = ("n_params", "macs", "epochs", "image_size", "latency_ms", "train_seconds", "wall_seconds")


@dataclass(frozen=True)
class HtmlReport:
    """What `bcpareto report` wrote."""

    path: Path
    n_models: int  # CSV rows (one per trained model, fold model or repeat)
    n_records: int  # of them with a record (confusion matrix, learning curve)
    n_front: int  # rows of the front table
    cross_validated: bool  # the front is cvreport's (kept predictions, intervals)
    size_bytes: int


@dataclass(frozen=True)
class _Front:
    """The front as the report shows it: figure, table, which rows are on it, words."""

    png: bytes
    table_html: str
    on_front: set[tuple[Any, ...]]  # row keys (_key) of models on the front
    x: str  # size column
    y: str  # the column the front is chosen on
    notes: tuple[str, ...]
    n_front: int  # models in the front table (a model trained with repeats counts once)
    extra_html: str = ""  # per-model intervals (cross-validated runs)


def html_report(run: Path | str, *, out: Path | str = "report.html", study: str | None = None,
                data_check: Path | str | None = None) -> HtmlReport:
    """Write ``out``: one HTML file of the run in ``run`` (a folder with metrics_log.csv and
    runs/<study>/, or a metrics CSV alone; records are looked for in runs/ beside it).

    ``study`` keeps one study of a CSV that holds several; ``data_check`` is a `bcpareto data
    check --json` output (or a source-group summary), else ``data_check.json`` in the run folder.
    """
    csv, run_dir = _locate(Path(run))
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; expected the HTML file to write, e.g. {out / 'report.html'}")
    check_creatable_dir(out.parent if str(out.parent) else Path("."), option="--out")
    checked = _data_check(Path(data_check) if data_check is not None else None, run_dir)
    rows = _rows(csv, study)
    records = _records(run_dir, rows)
    front = _front(csv, rows, run_dir=run_dir, study=study)
    curves = _curves_png(rows, records, front)

    name = csv.parent.name if csv.name == CSV_NAME else csv.stem
    n_records = sum(_row_key(r, i, rows) in records for i, r in enumerate(_iter(rows)))
    sections = [
        _header(name, csv, rows, n_records, front),
        htmlpage.section("front", "The front", htmlpage.img(front.png, "Pareto front") + htmlpage.notes(front.notes)),
        htmlpage.section("table", f"Models on the front ({front.n_front})", front.table_html + front.extra_html),
        htmlpage.section("curves", "Learning curves", htmlpage.img(curves, "validation accuracy per epoch, every model")
                 if curves else "<p>No learning curves: the run has no records with a per-epoch curve "
                 f"({RUNS}/&lt;study&gt;/grid_&lt;id&gt;.json, written by searches since curves were kept).</p>"),
        htmlpage.section("models", f"Every model ({len(rows)})", _models(rows, records, front)),
        htmlpage.section("data", "Data check", checked),
        htmlpage.section("machine", "Machine and time", _machine(rows, records)),
    ]
    page = htmlpage.page(f"bcpareto report: {name}", "\n".join(sections))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, page)
    return HtmlReport(path=out, n_models=len(rows), n_records=n_records,
                      n_front=front.n_front, cross_validated=bool(front.extra_html),
                      size_bytes=out.stat().st_size)


def format_html_report(report: HtmlReport) -> str:
    how = "cross-validated, with intervals" if report.cross_validated else "chosen on validation"
    return (f"Wrote {report.path} ({report.size_bytes / 1e6:.2f} MB): {report.n_models} models "
            f"({report.n_records} with records), {report.n_front} on the front ({how})")


# --- inputs ---------------------------------------------------------------------------------


def _locate(run: Path) -> tuple[Path, Path]:
    """(metrics CSV, run folder holding runs/)."""
    if run.is_dir():
        csv = run / CSV_NAME
        if not csv.is_file():
            raise ConfigError(f"{run}: no {CSV_NAME} in this folder; expected a run folder (the "
                              f"--run-dir of a search) or a metrics CSV")
        return csv, run
    if not run.is_file():
        raise ConfigError(f"{run}: no such file or folder; expected a run folder or a metrics CSV")
    return run, run.parent


def _rows(csv: Path, study: str | None) -> pd.DataFrame:
    try:
        rows = pd.read_csv(csv)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as error:
        raise ColumnError(f"{csv}: not a readable metrics CSV ({error})") from None
    rows.columns = [str(c).strip() for c in rows.columns]
    if study is not None:
        studies = sorted(set(rows["study"].dropna().astype(str))) if "study" in rows else []
        if study not in studies:
            raise ConfigError(f"--study {study!r}: {csv} holds "
                              + (f"studies {', '.join(studies)}" if studies else "no study column"))
        rows = rows[rows["study"].astype(str) == study]
    return rows.reset_index(drop=True)


def _iter(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return rows.to_dict(orient="records")


def _int(value: Any, default: int = 0) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return int(number) if math.isfinite(number) else default


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    """A model's key: (study, grid_id, repeat), blanks where the CSV lacks the column."""
    study = row.get("study")
    return ("" if study is None or (isinstance(study, float) and math.isnan(study)) else str(study),
            _int(row.get("grid_id"), -1), _int(row.get("repeat")))


def _records(run_dir: Path, rows: pd.DataFrame) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Each row's record (runs/<study>/grid_<id>[_r<repeat>].json), keyed like ``_key``."""
    if "grid_id" not in rows:
        return {}
    if "study" in rows and rows["study"].notna().any():
        studies = {name: name for name in sorted(set(rows["study"].dropna().astype(str)))}  # folder -> key
    else:  # an old CSV without a study column: the one study folder under runs/, if there is one
        folders = sorted(p.name for p in (run_dir / RUNS).glob("*") if p.is_dir())
        studies = {folders[0]: ""} if len(folders) == 1 else {}
    found = {}
    for name, key in studies.items():
        try:
            folder = study_dir(run_dir, name)
        except ConfigError:  # not a folder name: no records can be there
            continue
        for (grid_id, repeat), path in record_files(folder).items():
            try:
                found[key, grid_id, repeat] = json.loads(path.read_text())
            except (OSError, ValueError):  # unreadable: the model is shown from its CSV row alone
                continue
    return found


def _data_check(path: Path | None, run_dir: Path) -> str:
    """The data check section: from `data check --json` (or a groups summary), else where to get it."""
    if path is None and (run_dir / DATA_CHECK_JSON).is_file():
        path = run_dir / DATA_CHECK_JSON
    if path is None:
        return (f"<p>Not included: the data set is not read for a report. Run <code>bcpareto data check "
                f"--json &gt; {html.escape(str(run_dir / DATA_CHECK_JSON))}</code> (reads every image once; "
                "a few minutes the first time) and make the report again, or pass "
                "<code>--data-check FILE</code>.</p>")
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"--data-check {path}: not readable as JSON ({error}); expected the output of "
                          "`bcpareto data check --json`") from None
    if not isinstance(data, dict):
        data = {}
    groups = data.get("source_groups") or (data if "per_class" in data else data.get("summary"))
    if "splits" not in data and not (isinstance(groups, dict) and "per_class" in groups):
        raise ConfigError(f"--data-check {path}: neither a `bcpareto data check --json` output (no 'splits') "
                          "nor a source-group summary (no 'per_class')")
    parts = [f"<p>From <code>{html.escape(str(path))}</code>.</p>"]
    if "splits" in data:
        try:
            parts.append(_audit_html(data))
        except (AttributeError, KeyError, TypeError) as error:
            raise ConfigError(f"--data-check {path}: its 'splits' are not as `bcpareto data check --json` "
                              f"writes them ({type(error).__name__}: {error})") from None
    if isinstance(groups, dict) and "per_class" in groups:
        from .audit import render_groups

        try:
            parts.append(f"<pre>{html.escape(render_groups(groups))}</pre>")
        except (KeyError, TypeError):
            parts.append("<p>Source-group summary present but not in the expected form.</p>")
    return "\n".join(parts)


def _audit_html(data: dict[str, Any]) -> str:
    classes = data.get("classes") or sorted({c for s in data["splits"].values() for c in s.get("images", {})})
    rows = [[name, *(split.get("images", {}).get(c, "missing") for c in classes), split.get("n_images", "")]
            for name, split in data["splits"].items() if split.get("present", True)]
    parts = [htmlpage.table(["images", *classes, "total"], rows)]
    duplicates = data.get("duplicates") or []
    if duplicates:
        rows = [[d["second"] + (f" in {d['first']}" if d["first"] != d["second"] else " (within)"),
                 *(d.get("counts", {}).get(c, "-") for c in classes), d.get("total", ""),
                 d.get("cross_class", "")] for d in duplicates]
        parts.append("<p>Byte-identical duplicates:</p>"
                     + htmlpage.table(["duplicates", *classes, "total", "cross-class"], rows))
    for title in ("problems", "warnings"):
        items = data.get(title) or []
        if items:
            parts.append(f"<p>{title.capitalize()} ({len(items)}):</p><ul>"
                         + "".join(f"<li>{html.escape(str(i))}</li>" for i in items[:20]) + "</ul>")
    verdict = "usable" if data.get("usable", True) else "NOT usable"
    parts.append(f"<p>Result: <b>{verdict}</b></p>")
    return "\n".join(parts)


# --- the front ------------------------------------------------------------------------------


def _front(csv: Path, rows: pd.DataFrame, *, run_dir: Path, study: str | None) -> _Front:
    from .cvreport import study_folder

    with tempfile.TemporaryDirectory(prefix="bcpareto-report-") as tmp:
        if study_folder(csv, study, run_dir=run_dir) is not None:
            return _cv_front(csv, rows, run_dir=run_dir, study=study, tmp=Path(tmp))
        return _plot_front(csv, rows, study=study, tmp=Path(tmp))


def _plot_front(csv: Path, rows: pd.DataFrame, *, study: str | None, tmp: Path) -> _Front:
    """`bcpareto plot`'s front of the CSV (one study of it with ``study``)."""
    from .report import REPORTED_ON_TEST, plot_report

    source = csv
    if study is not None:  # the same name, so the figure's legend names the CSV
        source = tmp / "in" / csv.name
        source.parent.mkdir()
        rows.to_csv(source, index=False)
    plotted = plot_report([source], out_dir=tmp / "out")
    x, y = (o.column for o in plotted.objectives[:2])
    table = plotted.front_table
    several = "study" in table and table["study"].nunique() > 1
    columns = ["grid_id"] if "grid_id" in table else ["row"]
    columns += ["study"] if several else []
    columns += [c for c in ("n_repeats",) if c in table]
    columns += [x, y]
    columns += [c for c in (*REPORTED_ON_TEST, "test_balanced_accuracy", *SIZE_COLUMNS, "latency_ms")
                if c in table and c not in columns]
    headers = [_header_cell(c, y=y, rows=rows) for c in columns]
    body = [[htmlpage.cell(r.get(c)) for c in columns] for r in _iter(table)]
    keys = _front_keys(table, rows)
    caption = _protocol_caption(y, rows)
    hv = plotted.sources[0]
    notes = (*plotted.notes, f"Hypervolume {hv.hypervolume:.6g} ({int(hv.front.sum())} of {len(hv.values)} "
                             f"models on the front; reference point {', '.join(f'{v:.4g}' for v in plotted.ref)}).")
    return _Front(png=(tmp / "out" / "pareto_front.png").read_bytes(),
                  table_html=f"<p>{caption}</p>" + htmlpage.table(headers, body, escape_headers=False),
                  on_front=keys, x=x, y=y, notes=tuple(notes), n_front=len(table))


def _front_keys(front: pd.DataFrame, rows: pd.DataFrame) -> set[tuple[Any, ...]]:
    """Keys of every CSV row on the front (all repeats of a model whose mean is on it)."""
    if "grid_id" in front:
        on = {(str(r.get("study", "")) if "study" in front else "", _int(r["grid_id"], -1)) for r in _iter(front)}
        return {_key(r) for r in _iter(rows)
                if (_key(r)[0] if "study" in front else "", _key(r)[1]) in on}
    return {("", -1, int(i)) for i in front["row"]}  # seed logs: the row index is the model


def _row_key(row: dict[str, Any], index: int, rows: pd.DataFrame) -> tuple[Any, ...]:
    return _key(row) if "grid_id" in rows else ("", -1, index)


def _cv_front(csv: Path, rows: pd.DataFrame, *, run_dir: Path, study: str | None, tmp: Path) -> _Front:
    """cvreport's judgement of a run with kept predictions: intervals, P(front), the choice."""
    from . import cvstats, pareto
    from .cvreport import cv_report, format_cv_report, write_cv_outputs

    cv = cv_report(csv, study=study, run_dir=run_dir)
    write_cv_outputs(cv, tmp)
    t = cv.table
    score, size_column = cv.choices[0].score, cv.choices[0].size_column
    front = pareto.nondominated_mask(np.column_stack([-t[score].to_numpy(float), t[size_column].to_numpy(float)]))
    test = "int8_test_accuracy" if "int8" in score and "int8_test_accuracy" in t else "test_accuracy"
    level = f"{cvstats.LEVEL:.0%}"

    def table(part: pd.DataFrame) -> str:
        sizes = [c for c in SIZE_COLUMNS if c in part]
        headers = ["grid_id", "fold models", *sizes,
                   f"{score}<br><small>out-of-fold CV on TRAIN · chosen on · {level} interval</small>",
                   f"{test}<br><small>TEST · quoted (held out) · mean of fold models · {level} interval</small>",
                   "P(on the front)", "chosen at"]
        p = "p_front_int8" if "p_front_int8" in part else "p_front"
        body = [[htmlpage.cell(r["grid_id"]), htmlpage.cell(r["n_fold_models"]), *(htmlpage.cell(r[c]) for c in sizes),
                 _interval(r, score), _interval(r, test),
                 htmlpage.cell(r.get(p)), html.escape(str(r.get("chosen", "")))] for r in _iter(part)]
        return htmlpage.table(headers, body, escape_headers=False)

    shown = t[front | (t["chosen"] != "")].sort_values(size_column)
    ids = set(int(g) for g in shown["grid_id"])
    keys = {_key(r) for r in _iter(rows) if _key(r)[1] in ids}
    choice = f"<pre>{html.escape(format_cv_report(cv))}</pre>"
    caption = (f"<p>Chosen on out-of-fold cross-validation over TRAIN's source smears ({score}); quoted on "
               f"TEST ({test}; {html.escape(_one(rows, 'test_split', 'TEST'))}), with {level} intervals from "
               "resampling whole smears.</p>")
    every = (f"<details><summary>Every model's intervals ({len(t)})</summary>"
             f"{table(t.sort_values(size_column))}</details>")
    return _Front(png=(tmp / "pareto_front.png").read_bytes(), table_html=caption + table(shown) + choice,
                  on_front=keys, x=size_column, y=score, notes=cv.notes, n_front=len(shown), extra_html=every)


def _interval(row: dict[str, Any], stem: str) -> str:
    value, lo, hi = (htmlpage.as_float(row.get(f"{stem}{s}")) for s in ("", "_lo", "_hi"))
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) and math.isfinite(hi) else f"{value:.3f}"


def _one(rows: pd.DataFrame, column: str, default: str) -> str:
    values = sorted({str(v) for v in rows[column].dropna()}) if column in rows else []
    return "; ".join(values) if values else default


def _split_kind(column: str, rows: pd.DataFrame) -> str:
    lowered = column.lower()
    if lowered.startswith("val_"):
        return "validation" if "val_split" in rows else "TEST folder (seed log: no validation split)"
    if "test" in lowered:
        return "TEST"
    if lowered.startswith("train_"):
        return "training images"
    return ""


def _header_cell(column: str, *, y: str, rows: pd.DataFrame) -> str:
    kind = _split_kind(column, rows)
    if column == y:
        role = f"{kind} · chosen on" if kind else "chosen on"
    elif kind == "TEST":
        role = "TEST · quoted (held out)" if _split_kind(y, rows) == "validation" else "TEST"
    else:
        role = kind
    name = html.escape(column)
    return f"{name}<br><small>{html.escape(role)}</small>" if role else name


def _protocol_caption(y: str, rows: pd.DataFrame) -> str:
    kind = _split_kind(y, rows)
    if kind == "validation":
        return (f"Chosen on validation ({html.escape(y)}: {html.escape(_one(rows, 'val_split', 'validation split'))}); "
                f"quoted on TEST ({html.escape(_one(rows, 'test_split', 'TEST folder'))}).")
    return (f"Chosen on {html.escape(y)} ({html.escape(kind or 'its own column')}): this CSV has no separate "
            "validation split, so the front's accuracy is not a held-out figure of a choice.")


# --- per model ------------------------------------------------------------------------------


def _models(rows: pd.DataFrame, records: dict[tuple[Any, ...], dict[str, Any]], front: _Front) -> str:
    items = list(enumerate(_iter(rows)))
    keyed = [(_row_key(r, i, rows), r) for i, r in items]
    x = front.x if front.x in rows else next((c for c in SIZE_COLUMNS if c in rows), None)
    order = sorted(keyed, key=lambda kr: (kr[0] not in front.on_front, htmlpage.as_float(kr[1].get(x)) if x else 0.0,
                                          kr[0]))
    parts = []
    if not records:
        parts.append(f"<p>No records beside this CSV ({RUNS}/&lt;study&gt;/grid_&lt;id&gt;.json): per model, only "
                     "what the CSV row holds. Front models first, then by size.</p>")
    else:
        parts.append("<p>Front models first, then by size. Open one for its TEST confusion matrix (rows: true "
                     "class), per-class recall and learning curve.</p>")
    classes = [c.removeprefix("test_recall_") for c in rows.columns if c.startswith("test_recall_")]
    for key, row in order:
        parts.append(_model(row, key, records.get(key), on_front=key in front.on_front, x=x, y=front.y,
                            classes=classes, say_missing=bool(records)))
    return "\n".join(parts)


def _model(row: dict[str, Any], key: tuple[Any, ...], record: dict[str, Any] | None, *, on_front: bool,
           x: str | None, y: str, classes: list[str], say_missing: bool) -> str:
    study, grid_id, repeat = key
    name = f"grid {grid_id}" if grid_id >= 0 else f"row {repeat}"  # seed logs: row i is grid point i
    if grid_id >= 0 and repeat:
        name += f" r{repeat}"
    if _present(row.get("fold")) and _present(row.get("n_folds")):
        name += f" (fold {_int(row['fold']) + 1} of {_int(row['n_folds'])})"
    facts = [f"{c} {htmlpage.fmt(row.get(c))}" for c in dict.fromkeys((x, y, "val_accuracy", "test_accuracy"))
             if c and c in row]
    status = str(row.get("status") or "")
    status = "" if status == "nan" else status
    summary = " · ".join([f"<b>{html.escape(name)}</b>", *map(html.escape, facts)]
                         + (["<b class=f>on the front</b>"] if on_front else [])
                         + ([html.escape(status)] if status else []))
    body = []
    confusion = (record or {}).get("confusion") or []
    record_classes = (record or {}).get("classes") or []
    if confusion:
        body.append(htmlpage.confusion_table(confusion, record_classes))
    recall = [(c, row.get(f"test_recall_{c}")) for c in classes]
    if not recall and confusion:
        recall = [(c.lower(), r[i] / max(sum(r), 1))
                  for i, (c, r) in enumerate(zip(record_classes, confusion))]
    if recall:
        body.append(htmlpage.recall_table(recall))
    curve = (record or {}).get("curve") or {}
    if curve.get("val_accuracy"):
        body.append(htmlpage.curve_svg(curve))
    architecture = ("block", "dense_layers", "neurons", "filters", "kernel_sizes")
    shown = [(c, row.get(c)) for c in (*architecture, *SHOWN_COLUMNS) if _present(row.get(c))]
    if study:
        shown.append(("study", study))
    body.append("<table class=kv>" + "".join(f"<tr><th>{html.escape(c)}</th><td>{htmlpage.cell(v)}</td></tr>"
                                             for c, v in shown) + "</table>")
    if record is None and say_missing:
        body.append("<p class=n>No record for this model: no confusion matrix or curve.</p>")
    return f"<details><summary>{summary}</summary><div class=m>{''.join(body)}</div></details>"


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and str(value) != ""


def _curves_png(rows: pd.DataFrame, records: dict[tuple[Any, ...], dict[str, Any]], front: _Front) -> bytes | None:
    """Every model's validation accuracy by epoch and by cumulative seconds, in one PNG."""
    curves = [(key, record["curve"]) for key, record in records.items()
              if isinstance(record.get("curve"), dict) and record["curve"].get("val_accuracy")]
    if not curves:
        return None
    from matplotlib import ticker
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    by_epoch, by_time = figure.subplots(1, 2, sharey=True)
    named = 0
    ordered = sorted(curves, key=lambda kc: kc[0] in front.on_front)  # the front drawn last, on top
    for key, curve in ordered:
        values = np.asarray(curve["val_accuracy"], dtype=float)
        seconds = np.cumsum(np.nan_to_num(np.asarray(curve.get("seconds") or [np.nan] * len(values), dtype=float)))
        epochs = np.arange(1, len(values) + 1)
        if key in front.on_front:
            label = None
            if named < MAX_CURVE_LEGEND:
                label = f"grid {key[1]}" + (f" r{key[2]}" if key[2] else "")
                named += 1
            style = dict(linewidth=1.4, alpha=0.95, label=label, zorder=3)
        else:
            style = dict(color="0.6", linewidth=0.6, alpha=0.35, zorder=1)
        (line,) = by_epoch.plot(epochs, values, **style)
        if len(seconds) == len(values):
            by_time.plot(seconds, values, **{**style, "label": None, "color": line.get_color()})
    by_epoch.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    by_epoch.set_xlabel("epoch")
    by_time.set_xlabel("training seconds (cumulative)")
    by_epoch.set_ylabel("val_accuracy (validation split)")
    for ax in (by_epoch, by_time):
        ax.grid(True, linewidth=0.4, alpha=0.5)
    if named:
        by_epoch.legend(fontsize=7, title="on the front (grey: the others)", title_fontsize=7, loc="lower right")
    figure.suptitle(f"Learning curves of {len(curves)} models (from their records)", fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=CURVES_DPI)
    return buffer.getvalue()


# --- machine and header ---------------------------------------------------------------------


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _machine(rows: pd.DataFrame, records: dict[tuple[Any, ...], dict[str, Any]]) -> str:
    trained_on = sorted({str((r.get("edge_protocol") or {}).get("latency_machine"))
                         for r in records.values() if (r.get("edge_protocol") or {}).get("latency_machine")})
    backends = _one(rows, "backend", "")
    items = []
    if trained_on:
        items.append(f"Models measured on (their records' edge protocol): {html.escape('; '.join(trained_on))}")
    else:
        items.append("Models trained on: not recorded (a record names its machine only where edge figures were "
                     "measured: edge_protocol.latency_machine)")
    if backends:
        items.append(f"Keras backend: {html.escape(backends)}")
    items.append(f"This report made on: {html.escape(platform.platform())}, {html.escape(_cpu_name())}, "
                 f"{os.cpu_count()} logical CPUs, Python {platform.python_version()}, bcpareto {__version__}")
    for column, what in (("wall_seconds", "to train and measure every model"),
                         ("train_seconds", "of training (every epoch with its validation pass)")):
        if column in rows:
            total = pd.to_numeric(rows[column], errors="coerce").sum()
            items.append(f"{column} summed: {total:,.0f} s ({total / 3600:.2f} h) {what}, over {len(rows)} models; "
                         "the elapsed time is shorter with several workers")
    if not any(c in rows for c in ("wall_seconds", "train_seconds")):
        items.append("Wall time: not in this CSV (no wall_seconds column)")
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _header(name: str, csv: Path, rows: pd.DataFrame, n_records: int, front: _Front) -> str:
    studies = _one(rows, "study", "")
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    facts = [f"{len(rows)} models", f"{n_records} with records", f"{front.n_front} on the front"]
    if studies:
        facts.append(f"study {html.escape(studies)}")
    links = " · ".join(f"<a href='#{i}'>{t}</a>" for i, t in (("front", "front"), ("table", "table"),
                                                               ("curves", "curves"), ("models", "models"),
                                                               ("data", "data check"), ("machine", "machine")))
    return (f"<h1>bcpareto report: {html.escape(name)}</h1>"
            f"<p class=meta><code>{html.escape(str(csv))}</code> · {' · '.join(facts)} · made {made}</p>"
            f"<nav>{links}</nav>")
