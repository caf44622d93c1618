"""Faults of the files around a search (issue 29, items 3 and 8), each in a real process.

Item 3: a FIFO, socket or dangling link named like an image in a class folder is never opened:
`data check` names it as a problem and finishes, a search skips it, and one SIGTERM while images
decode stops the search with the interrupted exit code (before the fix `data check` and the
search waited on the FIFO forever, and SIGTERM could not end them).

Item 8: the cache (BCPARETO_CACHE, else ~/.cache/bcpareto) that is read-only, full or a file is
said once and the command goes on without it; no temporary file is left in it, a damaged cache
file is discarded and computed again, and a rerun with a good cache fills it. A full disk while
metrics_log.csv is rewritten ends the search with a message and leaves the old file as it was.
A full disk is a file-size limit here (RLIMIT_FSIZE, SIGXFSZ ignored: a write past the limit
fails with EFBIG, as a write to a full disk fails with ENOSPC), since a small tmpfs needs root.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import BLOOD_CELLS, ROOT, copy_subset, needs_data, write_sheet

HOLDOUT = """\
image_size = 32          # tests: 32 px, one epoch, no TFLite measures
epochs = 1
batch_size = 8
edge_metrics = false
validation = "holdout"   # no source groups: only the decode cache is written
cell_crop = 0
"""
GRID_1 = [["dense_layers", "neurons", "filters", "kernel_sizes"], ["[1]", "[[8]]", "[[4, 8]]", "[3, 3]"]]
DATA_CHECK_TIMEOUT = 120  # seconds; before the fix a FIFO made it wait forever


def _env(cache: Path | None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
               TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", BCPARETO_WORKERS="1")
    env.pop("BCPARETO_STORAGE", None)
    env.pop("BCPARETO_CACHE", None)
    if cache is not None:
        env["BCPARETO_CACHE"] = str(cache)
    env.update(extra)
    return env


def _file_size_limit(limit: int) -> Callable[[], None]:
    """A child's preexec_fn: no file it writes may grow past ``limit`` bytes, as if the disk were
    full (SIGXFSZ ignored, so the write fails with EFBIG instead of killing the process)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _bound_by_modes() -> list[str]:
    """A command prefix under which a folder's modes bind the process: none for a user; for root
    (who writes into a 0500 folder anyway) setpriv without CAP_DAC_OVERRIDE, else the test skips."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, whom a folder's modes do not bind, and no setpriv to drop that")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}", "--"]


def _bcpareto(*args: str, cwd: Path, env: dict[str, str], timeout: float = DATA_CHECK_TIMEOUT,
              preexec_fn: Callable[[], None] | None = None,
              prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*(prefix or []), sys.executable, "-m", "bcpareto", *args], cwd=cwd, env=env,
                          text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                          preexec_fn=preexec_fn)


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


def _data(tmp_path: Path, per_class: int = 3) -> Path:
    if not (BLOOD_CELLS / "TRAIN").is_dir():
        pytest.skip(f"real data set not at {BLOOD_CELLS}")
    return copy_subset(tmp_path / "cells", per_class=per_class)


# --- item 3: files that are not files ------------------------------------------------------------


def _make_fifo(path: Path) -> str:
    os.mkfifo(path)
    return "a named pipe (FIFO)"


def _make_socket(path: Path) -> str:
    here = os.getcwd()
    os.chdir(path.parent)  # a socket's path must fit in 108 bytes: bind to the short relative name
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path.name)
        sock.close()  # the file stays
    finally:
        os.chdir(here)
    return "a socket"


def _make_dangling_link(path: Path) -> str:
    path.symlink_to(path.parent / "gone.jpeg")
    return "a symbolic link to a missing file"


def _make_link_to_fifo(path: Path) -> str:
    os.mkfifo(path.parent / ".pipe")
    path.symlink_to(path.parent / ".pipe")
    return "a named pipe (FIFO)"


@pytest.mark.slow  # starts bcpareto processes
@pytest.mark.parametrize("make", [_make_fifo, _make_socket, _make_dangling_link, _make_link_to_fifo],
                         ids=["fifo", "socket", "dangling-link", "link-to-fifo"])
def test_data_check_names_a_file_that_is_not_a_file_and_never_waits_on_it(
    tmp_path: Path, make: Callable[[Path], str]
) -> None:
    data = _data(tmp_path)
    odd = data / "TRAIN" / "EOSINOPHIL" / "pipe.jpeg"
    what = make(odd)
    started = time.monotonic()
    result = _bcpareto("data", "check", str(data), "--no-groups", cwd=tmp_path, env=_env(tmp_path / "cache"))
    assert result.returncode == 1, result.stdout  # not usable: one problem, listed
    assert f"{odd}: unreadable (not a regular file but {what}; never opened)" in result.stdout, result.stdout
    assert "NOT usable: 1 problem(s)" in result.stdout and "Traceback" not in result.stdout
    assert time.monotonic() - started < DATA_CHECK_TIMEOUT


@pytest.mark.slow  # starts bcpareto processes
def test_a_folder_named_like_an_image_is_a_folder_ignored(tmp_path: Path) -> None:
    data = _data(tmp_path)
    (data / "TRAIN" / "EOSINOPHIL" / "x.jpeg").mkdir()
    result = _bcpareto("data", "check", str(data), "--no-groups", cwd=tmp_path, env=_env(tmp_path / "cache"))
    assert result.returncode == 0, result.stdout
    assert f"{data / 'TRAIN' / 'EOSINOPHIL' / 'x.jpeg'}: folder ignored" in result.stdout


@needs_data
@pytest.mark.train
def test_a_search_skips_a_fifo_and_names_it(tmp_path: Path) -> None:
    data = _data(tmp_path, per_class=4)
    os.mkfifo(data / "TRAIN" / "EOSINOPHIL" / "pipe.jpeg")
    write_sheet(tmp_path / "grid.xlsx", GRID_1)
    (tmp_path / "fast.toml").write_text(HOLDOUT)
    result = _bcpareto("search", "grid.xlsx", "--config", "fast.toml", "--data-dir", str(data),
                       "--run-dir", "run", cwd=tmp_path, env=_env(tmp_path / "cache"), timeout=400)
    assert result.returncode == 0, result.stdout
    assert f"skipped 1 unreadable file(s): {data / 'TRAIN' / 'EOSINOPHIL' / 'pipe.jpeg'}" in result.stdout
    assert "Done: 1/1 grid points completed" in result.stdout, result.stdout


@needs_data
@pytest.mark.slow  # a search process (TensorFlow's start-up), stopped before it trains
def test_one_sigterm_while_images_decode_stops_the_search(tmp_path: Path) -> None:
    data = _data(tmp_path, per_class=4)
    os.mkfifo(data / "TRAIN" / "EOSINOPHIL" / "pipe.jpeg")  # the case that hung: a FIFO among them
    write_sheet(tmp_path / "grid.xlsx", GRID_1)
    (tmp_path / "fast.toml").write_text(HOLDOUT)
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    env = _env(tmp_path / "cache", BCPARETO_PAUSE_AT="decode", BCPARETO_PAUSE_DIR=str(pauses))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bcpareto", "search", "grid.xlsx", "--config", "fast.toml", "--data-dir",
         str(data), "--run-dir", "run"], cwd=tmp_path, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not list(pauses.glob("decode.*")):  # an image's decoding thread has started
            assert proc.poll() is None, f"the search ended before decoding:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, "no image was decoded within 240 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        out, _ = proc.communicate(timeout=60)
        stopped_in = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "Interrupted" in out and "Traceback" not in out, out
    assert stopped_in < 20, f"{stopped_in:.1f} s from SIGTERM to exit"
    assert not (tmp_path / "run" / "bcpareto.db").exists()  # stopped before any study existed
    assert not _temporaries(tmp_path / "cache")


# --- item 8: the cache --------------------------------------------------------------------------


@pytest.mark.slow  # starts bcpareto processes
def test_bcpareto_cache_naming_a_file_is_said_once_and_the_check_goes_on(tmp_path: Path) -> None:
    data = _data(tmp_path)
    cache = tmp_path / "cache.txt"
    cache.write_text("my notes\n")
    result = _bcpareto("data", "check", str(data), cwd=tmp_path, env=_env(cache))
    assert result.returncode == 0, result.stdout
    said = (f"warning: cache at {cache} is not a folder (a file is in its place): going on without a "
            "cache (what it would keep is computed again next time); set BCPARETO_CACHE to a writable folder")
    assert said in result.stdout and result.stdout.count("warning: cache at") == 1, result.stdout
    assert "Result: usable" in result.stdout and "source groups" in result.stdout.lower()
    assert cache.read_text() == "my notes\n" and "Traceback" not in result.stdout


@pytest.mark.slow  # starts bcpareto processes
def test_the_home_cache_being_a_file_is_said_with_its_path(tmp_path: Path) -> None:
    data = _data(tmp_path)
    home = tmp_path / "home"
    (home / ".cache").mkdir(parents=True)
    (home / ".cache" / "bcpareto").write_text("")
    result = _bcpareto("data", "check", str(data), cwd=tmp_path, env=_env(None, HOME=str(home)))
    assert result.returncode == 0, result.stdout
    assert f"warning: cache at {home / '.cache' / 'bcpareto'} is not a folder" in result.stdout, result.stdout


@pytest.mark.slow  # starts bcpareto processes
def test_with_json_the_cache_warning_goes_to_stderr(tmp_path: Path) -> None:
    data = _data(tmp_path)
    cache = tmp_path / "cache.txt"
    cache.write_text("")
    result = subprocess.run([sys.executable, "-m", "bcpareto", "data", "check", str(data), "--json"],
                            cwd=tmp_path, env=_env(cache), text=True, capture_output=True,
                            timeout=DATA_CHECK_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["usable"] is True  # stdout stays JSON
    assert f"cache at {cache} is not a folder" in result.stderr


@pytest.mark.slow  # starts bcpareto processes
def test_a_read_only_cache_is_said_once_and_left_as_it_was(tmp_path: Path) -> None:
    prefix = _bound_by_modes()
    data = _data(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        result = _bcpareto("data", "check", str(data), cwd=tmp_path, env=_env(cache), prefix=prefix)
        assert not list(cache.iterdir())
    finally:
        cache.chmod(0o700)
    assert result.returncode == 0, result.stdout
    assert f"warning: cache at {cache} is read-only (Permission denied)" in result.stdout, result.stdout
    assert result.stdout.count("warning: cache at") == 1 and "Traceback" not in result.stdout


@pytest.mark.slow  # starts bcpareto processes
def test_a_full_cache_leaves_no_temporary_file_and_a_rerun_fills_it(tmp_path: Path) -> None:
    data = _data(tmp_path)
    cache = tmp_path / "cache"
    full = _bcpareto("data", "check", str(data), cwd=tmp_path, env=_env(cache),
                     preexec_fn=_file_size_limit(4096))  # a feature file is about 16 KB
    assert full.returncode == 0, full.stdout
    assert f"warning: cache at {cache} is full (" in full.stdout, full.stdout
    assert full.stdout.count("warning: cache at") == 1 and "Traceback" not in full.stdout
    assert not _temporaries(cache), _temporaries(cache)
    assert not list(cache.rglob("*.json"))  # no grouping cached from a failed write

    again = _bcpareto("data", "check", str(data), cwd=tmp_path, env=_env(cache))  # space freed
    assert again.returncode == 0 and "warning" not in again.stdout, again.stdout
    assert len(list(cache.rglob("*.npz"))) == 24 and len(list(cache.rglob("*.json"))) == 1
    third = _bcpareto("data", "check", str(data), cwd=tmp_path, env=_env(cache))
    assert "source groups: cached" in third.stdout, third.stdout


@pytest.mark.slow  # starts bcpareto processes
def test_a_damaged_groups_cache_is_discarded_and_recomputed(tmp_path: Path) -> None:
    data = _data(tmp_path)
    cache = tmp_path / "cache"
    first = _bcpareto("data", "check", str(data), cwd=tmp_path, env=_env(cache))
    assert first.returncode == 0, first.stdout
    [groups] = cache.rglob("groups/*.json")
    whole = groups.read_bytes()
    groups.write_bytes(whole[: len(whole) // 2])  # torn, as after a crash without the rename
    features = sorted(cache.rglob("*.npz"))
    for feature in features[:3]:
        feature.write_bytes(feature.read_bytes()[:100])

    second = _bcpareto("data", "check", str(data), cwd=tmp_path, env=_env(cache))
    assert second.returncode == 0, second.stdout
    assert f"warning: cache entry {groups} could not be read back (" in second.stdout, second.stdout
    assert "discarded and computed again" in second.stdout and "Traceback" not in second.stdout
    assert second.stdout.count("warning: cache entry") == 2  # the grouping, and one line for the feature files
    assert json.loads(groups.read_text())["group"]  # written whole again
    assert first.stdout.split("Source groups")[1] == second.stdout.split("Source groups")[1]
    third = _bcpareto("data", "check", str(data), cwd=tmp_path, env=_env(cache))
    assert "source groups: cached" in third.stdout and "warning" not in third.stdout, third.stdout


@needs_data
@pytest.mark.train
def test_a_full_decode_cache_costs_decoding_only_and_a_damaged_entry_is_decoded_again(tmp_path: Path) -> None:
    data = _data(tmp_path, per_class=40)  # TRAIN decoded at 32 px: 160 x 3 KB, past the limit below
    write_sheet(tmp_path / "grid.xlsx", GRID_1)
    (tmp_path / "fast.toml").write_text(HOLDOUT)
    cache = tmp_path / "cache"
    args = ("search", "grid.xlsx", "--config", "fast.toml", "--data-dir", str(data), "--run-dir", "run")
    # 300 KB: the study's database (~120 KB), the model (~70 KB) and the CSV fit; TRAIN's 490 KB do not
    full = _bcpareto(*args, cwd=tmp_path, env=_env(cache), timeout=400,
                     preexec_fn=_file_size_limit(300_000))
    assert full.returncode == 0, full.stdout
    assert f"warning: cache at {cache} is full (" in full.stdout, full.stdout
    assert "set BCPARETO_CACHE to a writable folder" in full.stdout and "Traceback" not in full.stdout
    assert not _temporaries(cache) and not list(cache.glob("*/images.npy"))
    assert "Done: 1/1 grid points completed" in full.stdout

    again = _bcpareto(*args, cwd=tmp_path, env=_env(cache), timeout=400)  # space freed
    assert again.returncode == 0 and "warning: cache" not in again.stdout, again.stdout
    entries = sorted(cache.glob("*/images.npy"))
    assert len(entries) == 2 and not _temporaries(cache)

    biggest = max(entries, key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[:1000])  # torn
    third = _bcpareto(*args, cwd=tmp_path, env=_env(cache), timeout=400)
    assert third.returncode == 0, third.stdout
    assert f"warning: cache entry {biggest.parent} could not be read back (" in third.stdout, third.stdout
    assert biggest.stat().st_size > 100_000  # decoded and written again


@needs_data
@pytest.mark.train
def test_a_full_disk_while_the_csv_is_rewritten_keeps_the_old_csv(tmp_path: Path) -> None:
    data = _data(tmp_path, per_class=4)
    write_sheet(tmp_path / "grid.xlsx", GRID_1)
    (tmp_path / "fast.toml").write_text(HOLDOUT)
    run = tmp_path / "run"
    run.mkdir()
    csv_path = run / "metrics_log.csv"  # another study's 8,000 rows: 450 KB, past the limit below
    csv_path.write_text("study,grid_id,repeat,val_accuracy,note\n"
                        + "".join(f"older,{i},0,0.{i % 1000:03d}5,{'kept as it was ' * 2}\n" for i in range(8000)))
    before = csv_path.read_bytes()
    args = ("search", "grid.xlsx", "--config", "fast.toml", "--data-dir", str(data), "--run-dir", "run")
    full = _bcpareto(*args, cwd=tmp_path, env=_env(tmp_path / "cache"), timeout=400,
                     preexec_fn=_file_size_limit(300_000))
    assert full.returncode == 1, full.stdout
    assert ("metrics_log.csv: cannot write it (File too large); the disk is full: the file is left as it "
            "was") in full.stdout, full.stdout
    assert "Traceback" not in full.stdout
    assert csv_path.read_bytes() == before and not _temporaries(run)

    again = _bcpareto(*args, cwd=tmp_path, env=_env(tmp_path / "cache"), timeout=400)  # space freed
    assert again.returncode == 0, again.stdout
    assert "Done: 1/1 grid points completed" in again.stdout and "0 trained now" in again.stdout, again.stdout
    lines = csv_path.read_text().splitlines()
    assert len(lines) == 1 + 8000 + 1 and lines[1].startswith("older,0,0,")
