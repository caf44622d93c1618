"""Bad input, as a new user would type it: each case runs `bcpareto` as a real process and checks
the exit code, the message and the files left behind (issue #11).

A user error exits 2 with a message naming the file, option or key and the expected form, and
leaves nothing behind: no bcpareto.db, no lock file, no empty run directory. The cases that stop
before training need no TensorFlow and take a second or two each; the two that must train (an
oversized grid point beside a small one, and passwords through every message path) are marked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import bcpareto

from .conftest import copy_subset, needs_data, write_sheet

# Real processes (each imports TensorFlow): the full suite's, not the fast tier's.
pytestmark = pytest.mark.slow

SRC = str(Path(bcpareto.__file__).resolve().parents[1])
TINY = [["dense_layers", "neurons", "filters", "kernel_sizes"], ["[1]", "[[8]]", "[[4, 8]]", "[3, 3]"]]
# One point of 10^9 filters beside a small one: the big one cannot be built on any machine.
OVERSIZED = [["dense_layers", "neurons", "filters", "kernel_sizes"],
             ["[1]", "[[8]]", "[[4, 8], [1000000000, 8]]", "[3, 3]"]]
FAST = ["--image-size", "32", "--epochs", "1", "--no-edge"]


def bcpareto_run(cwd: Path, *args: str, env: dict[str, str] | None = None,
                 timeout: int = 300) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "BCPARETO_STORAGE"}
    environment.update({"PYTHONPATH": SRC, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    return subprocess.run([sys.executable, "-m", "bcpareto", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def left_behind(folder: Path, *, before: set[str]) -> set[str]:
    return {p.name for p in folder.iterdir()} - before


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    """A throwaway folder with a tiny sheet; data sets are made per case."""
    write_sheet(tmp_path / "tiny.xlsx", TINY)
    return tmp_path


# --------------------------------------------------------------------------- data set makers


def _unreadable_class(root: Path) -> Path:
    data = copy_subset(root / "data", per_class=3)
    for path in (data / "TRAIN" / "MONOCYTE").iterdir():
        path.write_bytes(b"not an image")
    return data


def _empty_class(root: Path) -> Path:
    data = copy_subset(root / "data", per_class=2)
    for path in (data / "TRAIN" / "LYMPHOCYTE").iterdir():
        path.unlink()
    return data


def _link_loop(root: Path) -> Path:
    data = copy_subset(root / "data", per_class=2)
    (data / "TRAIN" / "MONOCYTE" / "a.jpeg").symlink_to("b.jpeg")
    (data / "TRAIN" / "MONOCYTE" / "b.jpeg").symlink_to("a.jpeg")
    return data


def _decompression_bomb(root: Path) -> Path:
    """A class whose only file is a PNG Pillow refuses as a decompression bomb (196 M pixels)."""
    from PIL import Image

    data = copy_subset(root / "data", per_class=2)
    folder = data / "TRAIN" / "NEUTROPHIL"
    for path in folder.iterdir():
        path.unlink()
    Image.new("1", (14000, 14000)).save(folder / "huge.png")  # 24 kB on disk
    return data


def _good(root: Path) -> Path:
    return copy_subset(root / "data", per_class=2)


def _no_data(root: Path) -> Path:
    return root / "no-such-folder"


# --------------------------------------------------------------------------- the corpus

# (id, data set maker, extra arguments, files the run may write, exit code, message parts)
SEARCH_CASES: list[tuple[str, Callable[[Path], Path], list[str], int, list[str]]] = [
    ("1-class-vanishes", _unreadable_class, [], 2,
     ["TRAIN/MONOCYTE: no usable image", "all 3 file(s) were unreadable and skipped", ".jpeg"]),
    ("1-class-vanishes-on-bad-image-fail", _unreadable_class, ["--on-bad-image", "fail"], 2,
     ["3 unreadable image file(s) in TRAIN"]),
    ("2-preset-wrong-type", _good, ["--config", "bad_type.toml"], 2,
     ["bad_type.toml", "bn_momentum = 'high': expected a number"]),
    ("5-missing-data-dir", _no_data, [], 2, ["no-such-folder does not exist", "--data-dir"]),
    ("5-empty-class", _empty_class, [], 2, ["TRAIN/LYMPHOCYTE: class folder holds no images"]),
    ("5-bad-storage-scheme", _good, ["--storage", "mysql://bob:SECRET/PW@db.example.org/cells"], 2,
     ["--storage mysql://bob:***@db.example.org/cells: unsupported scheme 'mysql'",
      "postgresql://USER:PASSWORD@HOST"]),
    ("5-storage-no-path", _good, ["--storage", "sqlite://"], 2, ["an SQLite URL needs a file path"]),
    ("6-preset-string-numbers", _good, ["--config", "strings.toml"], 2,
     ["strings.toml", "learning_rate = '0.01': expected a number (write learning_rate = 0.01 without "
      "quotes)", "seed = 'abc': expected a whole number"]),
    ("6-link-loop", _link_loop, ["--on-bad-image", "fail"], 2,
     ["2 unreadable image file(s) in TRAIN", "MONOCYTE/a.jpeg"]),
    ("6-decompression-bomb-skipped", _decompression_bomb, [], 2,
     ["TRAIN/NEUTROPHIL: no usable image", "huge.png"]),
    ("6-run-dir-under-a-file", _good, ["--run-dir", "tiny.xlsx/run"], 2,
     ["--run-dir tiny.xlsx/run: cannot be created: tiny.xlsx is a file, not a folder"]),
    ("6-image-size-too-big", _good, ["--image-size", "100000"], 2,
     ["--image-size 100000: expected 8-512 px", "320x240"]),
    ("7-study-escapes-run-dir", _good, ["--study", "../../x"], 2,
     ["'--study': '../../x': expected letters, digits"]),
]


@needs_data
@pytest.mark.parametrize("case", SEARCH_CASES, ids=[c[0] for c in SEARCH_CASES])
def test_search_bad_input_exits_2_and_leaves_nothing(
    work: Path, case: tuple[str, Callable[[Path], Path], list[str], int, list[str]]
) -> None:
    _, make_data, extra, code, parts = case
    data = make_data(work)
    (work / "bad_type.toml").write_text('bn_momentum = "high"\n')
    (work / "strings.toml").write_text('learning_rate = "0.01"\nseed = "abc"\n')
    before = {p.name for p in work.iterdir()}
    args = [a if a not in ("bad_type.toml", "strings.toml") else str(work / a) for a in extra]
    image_size = [] if "--image-size" in args else ["--image-size", "32"]
    result = bcpareto_run(work, "search", "tiny.xlsx", *image_size, "--epochs", "1", "--no-edge",
                          "--data-dir", str(data), *args)
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output, output
    for part in parts:
        assert part in output, output
    assert "SECRET" not in output
    assert left_behind(work, before=before) == set(), output  # no db, no lock, no run dir
    assert not (work / "runs").exists() and not (work.parent / "x").exists()


@needs_data
def test_data_check_reports_a_link_loop_instead_of_a_traceback(work: Path) -> None:
    data = _link_loop(work)
    result = bcpareto_run(work, "data", "check", str(data))
    assert result.returncode == 1, result.stdout + result.stderr  # not usable: problems listed
    assert "a.jpeg: unreadable (Too many levels of symbolic links)" in result.stdout
    assert "Traceback" not in result.stderr


def test_status_on_an_empty_db_writes_nothing(work: Path) -> None:
    (work / "bcpareto.db").touch()
    result = bcpareto_run(work, "status")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "bcpareto.db: holds no studies (an empty file)" in result.stderr
    assert (work / "bcpareto.db").stat().st_size == 0
    assert {p.name for p in work.iterdir()} == {"tiny.xlsx", "bcpareto.db"}  # no lock file either


def test_status_on_a_missing_db_creates_none(work: Path) -> None:
    result = bcpareto_run(work, "status", "--run-dir", "elsewhere")
    assert result.returncode == 2 and "no study storage at" in result.stderr
    assert {p.name for p in work.iterdir()} == {"tiny.xlsx"}


def test_plot_refuses_a_million_columns_quickly(work: Path) -> None:
    header = ",".join(f"c{i}" for i in range(10**6))
    (work / "wide.csv").write_text(header + "\n" + ",".join("1" for _ in range(10**6)) + "\n")
    result = bcpareto_run(work, "plot", "wide.csv", "--out", "out", timeout=60)
    assert result.returncode == 2, result.stderr
    assert "wide.csv: its header has at least" in result.stderr and "columns" in result.stderr
    assert len(result.stderr) < 500  # not a list of every column
    assert not (work / "out").exists()


def test_plot_lists_at_most_60_columns(work: Path) -> None:
    (work / "w.csv").write_text(",".join(f"c{i}" for i in range(200)) + "\n" + ",".join("1" * 200) + "\n")
    result = bcpareto_run(work, "plot", "w.csv", "--out", "out")
    assert result.returncode == 2
    assert "c59, ... (140 more)" in result.stderr and "c60" not in result.stderr


def test_export_out_under_a_file_and_study_outside_run_dir(work: Path) -> None:
    result = bcpareto_run(work, "export", "0", "--out", "tiny.xlsx/model")
    assert result.returncode == 2
    assert "--out tiny.xlsx/model: cannot be created: tiny.xlsx is a file" in result.stderr
    result = bcpareto_run(work, "export", "0", "--out", "model", "--study", "../x")
    assert result.returncode == 2 and "'--study': '../x'" in result.stderr
    assert {p.name for p in work.iterdir()} == {"tiny.xlsx"}


@needs_data
@pytest.mark.train
def test_oversized_point_fails_with_its_reason_and_the_small_one_trains(work: Path) -> None:
    write_sheet(work / "big.xlsx", OVERSIZED)
    data = copy_subset(work / "data", per_class=3)
    result = bcpareto_run(work, "search", "big.xlsx", *FAST, "--data-dir", str(data))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # a failed point: exit 1 at the end, as documented
    assert "Traceback" not in output
    assert "FAILED grid point 1" in output and "needs at least" in output and "GiB" in output
    assert "1/2 grid points completed" in output
    rows = (work / "metrics_log.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split(",")[5] == "0"  # grid point 0's row
    status = bcpareto_run(work, "status")
    assert status.returncode == 0 and "1 completed" in status.stdout and "1 failed" in status.stdout
    assert "needs at least" in status.stdout


# --------------------------------------------------------------------------- storage URLs


def test_redaction_parses_every_password_form() -> None:
    from bcpareto.storage import redact

    forms = {  # URL -> (as shown, its password as a driver might quote it, decoded)
        "postgresql://bob:SECRET/PW@db.example.org/cells":
            ("postgresql://bob:***@db.example.org/cells", "SECRET/PW"),
        "postgresql://bob@db.example.org/cells?sslmode=require&password=SECRET%20PW":
            ("postgresql://bob@db.example.org/cells?sslmode=require&password=***", "SECRET PW"),
        "postgresql://bob:SE%40CRET%2FPW@db.example.org:5433/cells":
            ("postgresql://bob:***@db.example.org:5433/cells", "SE@CRET/PW"),
        "postgresql+psycopg2://bob:SECRET:PW@[::1]/cells?sslpassword=SECRETKEY":
            ("postgresql+psycopg2://bob:***@[::1]/cells?sslpassword=***", "SECRET:PW"),
        "postgresql://bob:ab@h/cells": ("postgresql://bob:***@h/cells", None),  # short: the URL still masked
    }
    for url, (shown, decoded) in forms.items():
        assert redact(url) == shown
        message = f"cannot connect to {url}: password {decoded} refused ({url.split('://')[1]})"
        masked = redact(message, url)
        assert "SECRET" not in masked and shown in masked, (url, masked)
        assert "db.example.org" in masked or "[::1]" in masked or "@h/" in masked


def test_missing_driver_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from bcpareto.errors import StorageError
    from bcpareto.storage import check_storage_url, engine_url

    assert engine_url("postgresql://u:p@h/db") == "postgresql+psycopg2://u:p@h/db"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "psycopg2" else real(n, *a))
    with pytest.raises(StorageError, match=r"driver psycopg2 is not installed; install it with: "
                                           r"pip install 'bcpareto\[postgres\]'"):
        check_storage_url("postgresql://u:SECRET@h/db")


@needs_data
def test_unreachable_server_exits_2_without_password(work: Path) -> None:
    data = copy_subset(work / "data", per_class=1)
    for url in ("postgresql://bob:SECRET/PW@127.0.0.1:1/cells",
                "postgresql://bob@127.0.0.1:1/cells?password=SECRETPW"):
        for args in (["status", "--storage", url],
                     ["search", "tiny.xlsx", "--storage", url, "--data-dir", str(data)]):
            result = bcpareto_run(work, *args)
            output = result.stdout + result.stderr
            assert result.returncode == 2, output
            assert "127.0.0.1:1/cells" in output and "SECRET" not in output, output
            assert {p.name for p in work.iterdir()} == {"tiny.xlsx", "data"}


PG_URL = os.environ.get("BCPARETO_TEST_PG_URL")
needs_pg = pytest.mark.skipif(not PG_URL, reason="BCPARETO_TEST_PG_URL not set (.ci/postgres.sh)")
# '/', '@', '%' and ':' in one password; written raw where SQLAlchemy allows it, else encoded.
TRICKY = "Se/cr@t%pw:x"


@pytest.fixture()
def tricky_password() -> Iterator[Any]:
    """The test server's role with TRICKY as its password, restored afterwards."""
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL)
    params = dict(host=url.host, port=url.port, dbname=url.database, user=url.username)

    def set_password(old: str, new: str) -> None:
        with psycopg2.connect(password=old, **params) as conn, conn.cursor() as cur:
            cur.execute("ALTER ROLE CURRENT_USER PASSWORD %s", (new,))
        conn.close()

    set_password(url.password, TRICKY)
    try:
        yield url
    finally:
        set_password(TRICKY, url.password)


@needs_pg
@needs_data
@pytest.mark.train
def test_bare_postgresql_url_works_and_no_password_form_leaks(
    work: Path, tricky_password: Any
) -> None:
    """`postgresql://` (no driver) connects with the installed extra; a password with '/', '@',
    '%' and ':' in the userinfo or as ?password= never shows in errors, status, the CSV or the
    search's log, nor in the failed point's stored reason."""
    import uuid

    url = tricky_password
    where = f"{url.host}:{url.port}/{url.database}"
    forms = [
        f"postgresql://{url.username}:Se/cr%40t%25pw:x@{where}",
        f"postgresql://{url.username}@{where}?password=Se%2Fcr%40t%25pw%3Ax",
    ]
    leaks = ("cr@t", "cr%40t", "Se%2Fcr", "Se/cr")
    write_sheet(work / "big.xlsx", OVERSIZED)
    data = copy_subset(work / "data", per_class=2)
    study = f"redact-{uuid.uuid4().hex[:8]}"
    texts: list[str] = []
    for i, form in enumerate(forms):
        args = ["search", "big.xlsx", *FAST, "--data-dir", str(data), "--study", study,
                "--run-dir", f"run{i}"]
        result = bcpareto_run(work, *args, env={"BCPARETO_STORAGE": form})
        texts += [result.stdout, result.stderr]
        # first form: point 0 trains, point 1 fails (exit 1); second: the same study, nothing left
        assert result.returncode == (1 if i == 0 else 0), result.stdout + result.stderr
        assert "Study 'redact-" in result.stdout and "***" in result.stdout
        status = bcpareto_run(work, "status", "--study", study, env={"BCPARETO_STORAGE": form})
        assert status.returncode == 0, status.stderr
        assert "1 completed" in status.stdout and "1 failed" in status.stdout
        texts += [status.stdout, status.stderr, (work / f"run{i}" / "metrics_log.csv").read_text()]
        wrong = form.replace("pw:x", "pw:y").replace("pw%3Ax", "pw%3Ay")  # a wrong password
        for cmd in (["status"], ["search", "big.xlsx", *FAST, "--data-dir", str(data)]):
            failed = bcpareto_run(work, *cmd, env={"BCPARETO_STORAGE": wrong})
            assert failed.returncode == 2, failed.stderr
            assert "password authentication failed" in failed.stderr
            texts += [failed.stdout, failed.stderr]
    for text in texts:
        for leak in leaks:
            assert leak not in text, text

