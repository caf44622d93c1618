"""The report page's HTML: escaped values, tables, inline images, per-model widgets, stylesheet, page.

Only markup lives here, with the stylesheet its class names (``cm``, ``rc``, ``lc``, ``c0``..``c9``,
...) refer to, so a widget and its style change together; which models and numbers go on the
page is htmlreport.py's. Everything is inline (PNG data URIs, CSS, SVG; no script, nothing
fetched), so a page opens offline.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np


# --- values and blocks ---------------------------------------------------------------------


def as_float(value: Any) -> float:
    """The value as a float; inf where it is missing or not a finite number (sorts last)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.inf
    return number if math.isfinite(number) else math.inf


def fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return ""
        return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, (int, np.integer)) and abs(int(value)) >= 10_000:
        return f"{int(value):,}"
    return "" if value is None else str(value)


def cell(value: Any) -> str:
    return html.escape(fmt(value))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, escape_headers: bool = True) -> str:
    head = "".join(f"<th>{html.escape(str(h)) if escape_headers else h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{v if isinstance(v, str) else html.escape(fmt(v))}</td>" for v in row)
                   + "</tr>" for row in rows)
    return f"<div class=tw><table class=t><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def img(png: bytes, alt: str) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        width, height = image.size
    data = base64.b64encode(png).decode("ascii")
    return f"<img alt='{html.escape(alt)}' width='{width}' height='{height}' src='data:image/png;base64,{data}'>"


def notes(items: Sequence[str]) -> str:
    return "<ul class=notes>" + "".join(f"<li>{html.escape(n)}</li>" for n in items) + "</ul>" if items else ""


def section(anchor: str, title: str, body: str) -> str:
    return f"<section id={anchor}><h2>{html.escape(title)}</h2>{body}</section>"


_SHADES = ("#fff", "#eef4fb", "#dce9f6", "#c6dbef", "#a6cbe3", "#82b5da", "#5d9ecd", "#3d85bd", "#2369a8", "#08468c")
_ERRORS = ("#fff", "#fdf0ea", "#fde0d2", "#fcc9b1", "#fbac8d", "#f88b69", "#f0684a", "#de4733", "#c22b23", "#9a1218")
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;padding:1em 1.5em;color:#222;background:#fff}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.meta{color:#555;margin:.2em 0}nav a{margin-right:.3em}img{max-width:100%;height:auto}
.tw{overflow-x:auto}table.t{border-collapse:collapse;font-size:13px}.t th,.t td{border:1px solid #ddd;padding:2px 6px;text-align:right}
.t th{background:#f4f6f8;vertical-align:bottom}.t small{font-weight:normal;color:#2a5d9f}
details{border:1px solid #e3e3e3;border-radius:4px;margin:3px 0;padding:2px 8px}summary{cursor:pointer}
b.f{color:#1d7a33}.m{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start;padding:6px 0}
table.cm,table.rc,table.kv{border-collapse:collapse;font-size:12px}.cm td{width:3.2em;text-align:right;padding:1px 4px;border:1px solid #ddd}
.cm th,.rc th,.kv th{font-weight:normal;color:#555;text-align:left;padding:1px 4px}caption{font-size:11px;color:#555;text-align:left}
.rc td.r{position:relative;width:120px;padding:1px 4px}.rc i{position:absolute;left:0;top:2px;bottom:2px;background:#c6dbef}
.rc span{position:relative}.kv td{padding:1px 4px;font-family:ui-monospace,monospace;font-size:11px}
svg.lc{font:9px sans-serif;fill:#555}svg.lc path{fill:none;stroke:#999}svg.lc polyline{fill:none;stroke:#1f77b4;stroke-width:1.5}
svg.lc circle{fill:#1f77b4}.n{color:#777;font-size:12px}pre{background:#f6f8fa;padding:.6em;overflow-x:auto;font-size:12px}
""" + "".join(f".c{i}{{background:{c}{';color:#fff' if i > 5 else ''}}}" for i, c in enumerate(_SHADES)) \
    + "".join(f".e{i}{{background:{c}{';color:#fff' if i > 5 else ''}}}" for i, c in enumerate(_ERRORS))


def page(title: str, body: str) -> str:
    return (f"<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


# --- per-model widgets ---------------------------------------------------------------------


def confusion_table(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> str:
    """TEST confusion matrix as a small table: rows true class, columns predicted, shaded by row share."""
    titles = list(classes) or [str(i) for i in range(len(confusion))]
    names = [c[:4] for c in titles]
    head = "".join(f"<th title='{html.escape(c)}'>{html.escape(n)}</th>" for c, n in zip(titles, names))
    lines = [f"<table class=cm><caption>TEST confusion (rows: true, columns: predicted)</caption>"
             f"<tr><th></th>{head}</tr>"]
    for i, counts in enumerate(confusion):
        total = max(sum(counts), 1)
        cells = "".join(f"<td class={'c' if i == j else 'e'}{min(9, round(9 * n / total))}>{int(n)}</td>"
                        for j, n in enumerate(counts))
        lines.append(f"<tr><th>{html.escape(names[i] if i < len(names) else str(i))}</th>{cells}</tr>")
    return "".join(lines) + "</table>"


def recall_table(recall: Sequence[tuple[str, Any]]) -> str:
    cells = []
    for name, value in recall:
        v = as_float(value)
        bar = f"<i style='width:{round(100 * v)}%'></i>" if math.isfinite(v) else ""
        cells.append(f"<tr><th>{html.escape(name)}</th><td class=r>{bar}<span>{fmt(value, 3)}</span></td></tr>")
    return f"<table class=rc><caption>TEST recall per class</caption>{''.join(cells)}</table>"


def curve_svg(curve: dict[str, Sequence[float]], *, width: int = 220, height: int = 96) -> str:
    """Validation accuracy per epoch as a small inline SVG, its range written on the axis."""
    values = np.asarray(curve.get("val_accuracy") or [], dtype=float)
    finite = values[np.isfinite(values)]
    if not finite.size:
        return ""
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.01, hi + 0.01
    left, right, top, bottom = 34, 6, 8, 18
    n = len(values)
    xs = [left + (width - left - right) * (i / max(n - 1, 1)) for i in range(n)]
    ys = [top + (height - top - bottom) * (1 - (v - lo) / (hi - lo)) if math.isfinite(v) else None for v in values]
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys) if y is not None)
    dots = "".join(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='1.8'/>"
                   for x, y in zip(xs, ys) if y is not None) if n <= 30 else ""  # more: a line reads better
    seconds = sum(float(s) for s in curve.get("seconds") or [] if s is not None)
    return (f"<svg class=lc width='{width}' height='{height}' viewBox='0 0 {width} {height}' role='img'>"
            f"<title>val_accuracy per epoch ({n} epochs, {seconds:.1f} s of training)</title>"
            f"<path d='M{left} {top}V{height - bottom}H{width - right}'/>"
            f"<text x='{width - right}' y='{top + 4}' text-anchor='end'>val_accuracy</text>"
            f"<text x='{left - 3}' y='{top + 4}' text-anchor='end'>{hi:.3f}</text>"
            f"<text x='{left - 3}' y='{height - bottom}' text-anchor='end'>{lo:.3f}</text>"
            f"<text x='{left}' y='{height - 4}'>1</text>"
            f"<text x='{width - right}' y='{height - 4}' text-anchor='end'>epoch {n} · {seconds:.0f} s</text>"
            f"<polyline points='{points}'/>{dots}</svg>")
