"""`bcpareto report`: one self-contained HTML file of a run, checked in a real headless browser.

Runs are synthesised in tmp_path (a metrics_log.csv and the records runs.save_record writes, and
for a cross-validated run the kept predictions), or are the shipped searchref run; nothing trains.
The browser tests need Debian's chromium (`.ci/run` installs it) and are skipped without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bcpareto.cli import cli
from bcpareto.errors import ConfigError
from bcpareto.htmlreport import html_report
from bcpareto.runs import save_image_table, save_predictions, save_record, study_dir

from .conftest import CLASSES, FIXTURES, ROOT

SEARCHREF = ROOT / "experiments" / "results" / "search" / "searchref"
GROUPS_SUMMARY = ROOT / "benchmarks" / "results" / "groups" / "summary.json"
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install -y chromium)")
STUDY = "fake-study"


# --- a synthetic run --------------------------------------------------------------------------


def make_run(root: Path, n_points: int, *, repeats: int = 1, epochs: int = 4, folds: int = 0,
             records: bool = True, seed: int = 0) -> Path:
    """A run folder: metrics_log.csv with one row per model and (``records``) each model's
    runs/<study>/grid_<id>[_r<repeat>].json; with ``folds`` also kept predictions (CV)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    folder = study_dir(root, STUDY)
    rows = []
    units = repeats * (folds or 1)
    for grid_id in range(n_points):
        size = float(0.01 * 1.03 ** grid_id + rng.uniform(0, 0.02))
        quality = 0.55 + 0.4 * (1 - np.exp(-size * 20)) + rng.normal(0, 0.03)
        for repeat in range(units):
            confusion = rng.integers(0, 40, size=(4, 4)) + np.diag(rng.integers(200, 500, size=4))
            recall = confusion.diagonal() / confusion.sum(axis=1)
            curve = {"val_accuracy": list(np.clip(quality - 0.3 * np.exp(-np.arange(epochs)), 0, 1)),
                     "seconds": list(rng.uniform(3, 5, size=epochs).round(3))}
            row = {
                "train_loss": 0.4, "train_accuracy": quality + 0.05, "val_loss": 0.5,
                "val_accuracy": float(np.clip(quality + rng.normal(0, 0.01), 0, 1)), "model_size(MB)": size,
                "grid_id": grid_id, "dense_layers": 0, "neurons": "[]", "filters": "[8,12,18]",
                "kernel_sizes": "[3,3,3]", "repeat": repeat,
                **({"fold": repeat % folds, "n_folds": folds} if folds else {}),
                "seed": repeat, "n_params": int(size * 2**20 / 4), "macs": 1_000_000 + grid_id, "backend": "tensorflow",
                "test_accuracy": float(confusion.trace() / confusion.sum()),
                "test_balanced_accuracy": float(recall.mean()),
                **{f"test_recall_{c.lower()}": float(r) for c, r in zip(CLASSES, recall)},
                "val_split": "TRAIN grouped 15% (41 of 263 source groups)",
                "test_split": "TEST minus 288 images sharing a source smear with TRAIN",
                "n_train": 8258, "n_val": 1699, "n_test": int(confusion.sum()), "epochs": epochs,
                "image_size": 48, "preset": "fake", "train_seconds": float(sum(curve["seconds"])),
                "wall_seconds": float(sum(curve["seconds"]) + 1), "study": STUDY, "trial": len(rows),
            }
            rows.append(row)
            if records:
                save_record(folder, grid_id, repeat=repeat, record={
                    "row": row, "confusion": confusion.tolist(), "classes": list(CLASSES),
                    "edge_protocol": None, "config": {"name": "fake"}, "curve": curve})
    pd.DataFrame(rows).to_csv(root / "metrics_log.csv", index=False)
    if folds:
        _keep_predictions(folder, rows, folds=folds, rng=rng)
    return root


def _keep_predictions(folder: Path, rows: list[dict], *, folds: int, rng: np.random.Generator) -> None:
    """Kept predictions as a CV search writes them: an image table, each fold model's probabilities."""
    groups_per_class, images_per_group = 6, 5
    paths, labels, groups, fold_of = [], [], [], []
    for split in ("TRAIN", "TEST"):
        for label, name in enumerate(CLASSES):
            for g in range(groups_per_class):
                for i in range(images_per_group):
                    paths.append(f"{split}/{name}/{g}_{i}.jpeg")
                    labels.append(label)
                    groups.append(f"{split}-{name}-{g}")
                    fold_of.append(g % folds if split == "TRAIN" else -2)
    table = {"path": np.array(paths), "label": np.array(labels), "group": np.array(groups), "fold": np.array(fold_of)}
    name = save_image_table(folder, table)
    labels, fold_of = np.array(labels), np.array(fold_of)
    for row in rows:
        skill = row["val_accuracy"]

        def probabilities(index: np.ndarray) -> np.ndarray:
            right = rng.random(len(index)) < skill
            guess = np.where(right, labels[index], (labels[index] + 1) % 4)
            return np.eye(4, dtype=np.float32)[guess] * 0.9 + 0.025

        val = np.flatnonzero(fold_of == row["fold"])
        test = np.flatnonzero(fold_of == -2)
        save_predictions(folder, row["grid_id"], repeat=row["repeat"], table=name, predictions=SimpleNamespace(
            val_paths=[paths[i] for i in val], val=probabilities(val), test_paths=[paths[i] for i in test],
            test=probabilities(test), val_int8=None, test_int8=None))


# --- what the file holds ----------------------------------------------------------------------


def _external_references(page: str) -> list[str]:
    """src/href values that would make the browser fetch something (data: URIs and #anchors don't)."""
    return [v for v in re.findall(r"""(?:src|href)\s*=\s*['"]?([^'"\s>]+)""", page)
            if not v.startswith(("data:", "#"))]


def test_report_of_a_run_holds_front_table_every_model_and_no_external_reference(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", 12, repeats=2)
    report = html_report(run, out=tmp_path / "out" / "report.html")
    page = report.path.read_text()
    assert (report.n_models, report.n_records, report.cross_validated) == (24, 24, False)
    assert _external_references(page) == []
    assert "<script" not in page.lower()
    assert page.count("data:image/png;base64,") == 2  # the front and all learning curves, no per-model image
    assert page.count("<details>") == 24 and page.count("<svg") == 24  # one curve per model, inline
    assert page.count("<table class=cm>") == 24  # confusion matrices as tables, rows = true class
    assert "TEST confusion (rows: true, columns: predicted)" in page
    assert "TEST recall per class" in page and "eosinophil" in page
    # the front table says which split each figure is on: chosen on validation, quoted on TEST
    table = page.split("<section id=table>")[1].split("</section>")[0]
    assert "validation · chosen on" in table and "TEST · quoted (held out)" in table
    assert f"Models on the front ({report.n_front})" in page and report.n_front >= 1
    assert "TRAIN grouped 15%" in table and "TEST minus 288 images" in table
    # machine and time; the data check says where to get it
    assert "This report made on:" in page and "wall_seconds summed:" in page
    assert "bcpareto data check --json" in page


def test_confusion_matrix_is_the_records_rows_true_class(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", 1)
    record = json.loads((study_dir(run, STUDY) / "grid_0.json").read_text())
    page = html_report(run, out=tmp_path / "r.html").path.read_text()
    cm = page.split("<table class=cm>")[1].split("</table>")[0]
    for true_class, counts in zip(CLASSES, record["confusion"]):
        row = cm.split(f"<th>{true_class[:4]}</th>")[-1].split("</tr>")[0]
        assert [int(n) for n in re.findall(r">(\d+)</td>", row)] == counts


def test_data_check_output_in_the_run_folder_is_included(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", 3)
    audit = {"root": "/data", "usable": True, "classes": list(CLASSES),
             "splits": {"TRAIN": {"name": "TRAIN", "present": True, "n_images": 9957,
                                  "images": dict(zip(CLASSES, (2497, 2483, 2478, 2499)))},
                        "TEST": {"name": "TEST", "present": True, "n_images": 2487,
                                 "images": dict(zip(CLASSES, (623, 620, 620, 624)))}},
             "duplicates": [{"first": "TRAIN", "second": "TEST", "total": 108, "counts": {"EOSINOPHIL": 23},
                             "cross_class": 0}],
             "problems": [], "warnings": ["a warning"],
             "source_groups": json.loads(GROUPS_SUMMARY.read_text())["summary"]}
    (run / "data_check.json").write_text(json.dumps(audit))
    page = html_report(run, out=tmp_path / "r.html").path.read_text()
    data = page.split("<section id=data>")[1].split("</section>")[0]
    assert "2,497" in data or "2497" in data
    assert "Byte-identical duplicates" in data and "a warning" in data and "usable" in data
    assert "329" in data  # source groups, rendered by audit.render_groups


def test_a_groups_summary_can_be_given_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", 2)
    page = html_report(run, out=tmp_path / "r.html", data_check=GROUPS_SUMMARY).path.read_text()
    assert "Source groups" in page and "12,437" in page
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"something": 1}))
    with pytest.raises(ConfigError, match="neither a `bcpareto data check --json` output"):
        html_report(run, out=tmp_path / "r2.html", data_check=bad)
    assert not (tmp_path / "r2.html").exists()


def test_a_metrics_csv_alone_gives_a_report_without_records(tmp_path: Path) -> None:
    report = html_report(FIXTURES / "seed_metrics_log_epoch_10.csv", out=tmp_path / "seed.html")
    page = report.path.read_text()
    assert report.n_records == 0 and report.n_models == 24
    assert "No records beside this CSV" in page and "No learning curves" in page
    assert "TEST folder (seed log: no validation split) · chosen on" in page  # the seed's val_accuracy is TEST


def test_a_cross_validated_run_shows_per_model_intervals(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", 5, folds=3)
    report = html_report(run, out=tmp_path / "r.html")
    page = report.path.read_text()
    assert report.cross_validated and report.n_models == 15
    assert "Every model&#x27;s intervals (5)" in page or "Every model's intervals (5)" in page
    assert "out-of-fold CV on TRAIN · chosen on" in page and "TEST · quoted (held out)" in page
    assert re.search(r"0\.\d{3} \[0\.\d{3}, 0\.\d{3}\]", page)  # value [lo, hi]
    assert page.count("<details>") == 15 + 1


def test_an_old_csv_without_a_study_column_finds_the_one_study_folder(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", 3)
    rows = pd.read_csv(run / "metrics_log.csv").drop(columns=["study"])
    rows.to_csv(run / "metrics_log.csv", index=False)
    assert html_report(run, out=tmp_path / "r.html").n_records == 3


@pytest.mark.slow  # a whole report in a new Python process
def test_making_a_report_never_imports_tensorflow(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", 3)
    code = ("import sys; from bcpareto.htmlreport import html_report; "
            f"html_report({str(run)!r}, out={str(tmp_path / 'r.html')!r}); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("make, message", [
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "no metrics_log.csv in this folder"),
    (lambda tmp: tmp / "missing.csv", "no such file or folder"),
])
def test_bad_run_arguments_are_refused_before_anything_is_written(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        html_report(make(tmp_path), out=tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_unknown_study_and_a_folder_as_out_are_refused(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", 2)
    with pytest.raises(ConfigError, match=f"--study 'nope': .* holds studies {STUDY}"):
        html_report(run, out=tmp_path / "r.html", study="nope")
    with pytest.raises(ConfigError, match="is a folder"):
        html_report(run, out=tmp_path)


# --- the command (needs the `report` command in cli.py) ----------------------------------------


def _command() -> None:
    assert "report" in cli.commands, "cli.py lacks the `bcpareto report` command (issue 27's patch)"


def test_report_command_writes_the_file(tmp_path: Path) -> None:
    _command()
    run = make_run(tmp_path / "run", 3)
    result = CliRunner().invoke(cli, ["report", str(run), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "Wrote" in result.output and "3 models (3 with records)" in result.output
    assert (tmp_path / "r.html").is_file()


def test_report_command_bad_input_exits_2_with_the_reason(tmp_path: Path) -> None:
    _command()
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2, result.output
    assert "no metrics_log.csv in this folder" in result.output


@pytest.mark.slow  # starts a bcpareto process
def test_python_m_bcpareto_report_on_the_shipped_run(tmp_path: Path) -> None:
    _command()
    out = tmp_path / "searchref.html"
    done = subprocess.run([sys.executable, "-m", "bcpareto", "report", str(SEARCHREF), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "74 models (74 with records)" in done.stdout
    assert out.stat().st_size < 2_000_000


# --- in a real browser ------------------------------------------------------------------------

# Appended to a copy of the report: after load, the title says how many images failed to decode
# and when the load event came (ms since navigation started).
_PROBE = ("<script>window.addEventListener('load',()=>{document.title='broken:'+"
          "[...document.images].filter(i=>!i.complete||i.naturalWidth===0).length+' of '+document.images.length"
          "+' load:'+Math.round(performance.now())+'ms'})</script>")
_TITLE = re.compile(r"<title>broken:(\d+) of (\d+) load:(\d+)ms</title>")


def _chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--enable-logging=stderr", "--v=0", *args], capture_output=True, text=True,
                          timeout=timeout)


def _console_errors(stderr: str) -> list[str]:
    """Console messages and uncaught exceptions in chromium's log (its own dbus/GPU warnings aside);
    the report has no script, so any console line is a problem."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def _probed(report: Path, tmp_path: Path) -> Path:
    probed = tmp_path / f"probed_{report.name}"
    probed.write_text(report.read_text().replace("</body>", _PROBE + "</body>"))
    return probed


@pytest.mark.slow  # starts a browser
@needs_chromium
def test_the_probe_itself_sees_broken_images_and_console_errors(tmp_path: Path) -> None:
    """The checks below are not vacuous: a broken image and a thrown error are both caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><title>x</title><img src='data:image/png;base64,AAAA'>"
                   "<script>throw new Error('boom')</script></body>")
    done = _chromium("--dump-dom", _probed(bad, tmp_path).as_uri())
    assert _TITLE.search(done.stdout).group(1, 2) == ("1", "1")
    assert any("Uncaught Error: boom" in line for line in _console_errors(done.stderr))


@pytest.mark.slow  # starts a browser
@needs_chromium
def test_shipped_run_report_loads_cleanly_in_chromium(tmp_path: Path) -> None:
    report = html_report(SEARCHREF, out=tmp_path / "searchref.html").path
    probed = _probed(report, tmp_path)
    done = _chromium("--dump-dom", probed.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    assert _TITLE.search(done.stdout).group(1, 2) == ("0", "2")  # both images (front, curves) decode
    assert _console_errors(done.stderr) == []
    assert done.stdout.count("<details") == 74
    shot = tmp_path / "shot.png"
    done = _chromium(f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    assert _console_errors(done.stderr) == []
    from PIL import Image

    with Image.open(shot) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1_000_000)
        assert rgb.size == (1280, 2000)
    assert len(colours) > 50  # a figure, text, tables: not blank
    white = max((n for n, c in colours if c == (255, 255, 255)), default=0)
    assert white < 0.95 * 1280 * 2000


@needs_chromium
@pytest.mark.slow
def test_a_300_model_report_is_under_10_mb_and_renders_in_under_3_s(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", 300, epochs=30)
    report = html_report(run, out=tmp_path / "big.html")
    assert report.n_models == 300 and report.n_records == 300
    assert report.size_bytes < 10_000_000, f"{report.size_bytes / 1e6:.1f} MB"
    probed = _probed(report.path, tmp_path)
    # chromium's own start-up (about 2 s on this project's busy 2-core machine) is timed on an
    # empty page and taken off: what must stay under 3 s is loading and rendering the report
    empty = tmp_path / "empty.html"
    empty.write_text("<!doctype html><title>empty</title>")
    _chromium("--dump-dom", empty.as_uri())  # caches warm
    started = time.perf_counter()
    _chromium("--dump-dom", empty.as_uri())
    start_up = time.perf_counter() - started
    started = time.perf_counter()
    done = _chromium("--dump-dom", probed.as_uri())
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-2000:]
    broken, images, load_ms = _TITLE.search(done.stdout).groups()
    assert (broken, images) == ("0", "2") and _console_errors(done.stderr) == []
    assert done.stdout.count("<details") == 300
    timing = (f"--dump-dom of the report {seconds:.2f} s, of an empty page {start_up:.2f} s; "
              f"load event at {load_ms} ms")
    assert seconds - start_up < 3.0 and int(load_ms) < 3000, timing
