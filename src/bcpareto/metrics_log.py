"""metrics_log.csv: one row per completed grid point, regenerated from the study storage.

Models stopped by successive halving (``status`` "stopped", with ``stopped_at_epoch``) and
models over a device limit (``status`` "infeasible", never trained) have rows too, after the
completed ones, so the CSV shows what the search spent; the front leaves them out.

The storage is the truth; the CSV is rewritten from it after every trial (to a temporary file,
then renamed), so it never holds a torn or duplicate row, and rows of other studies stay. What
a user did to the file survives that: a column of their own keeps its values on this study's
rows (matched by study, grid_id and repeat; a row whose key cells were deleted is rebuilt
without them), a symlink stays a link (its target is rewritten), and a file that cannot be read
as a CSV is moved aside, never overwritten, with a message for the caller to show.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BcParetoError
from .runs import write_atomic
from .storage import file_lock

if TYPE_CHECKING:
    import optuna

CSV_NAME = "metrics_log.csv"
UNREADABLE_SUFFIX = ".unreadable-"  # metrics_log.csv.unreadable-20261207-153000: a file moved aside


class MetricsLogError(BcParetoError):
    """metrics_log.csv's path cannot hold the file: a folder is there, or it cannot be written."""


class MetricsLogWarning(UserWarning):
    """An unreadable metrics_log.csv was moved aside (when the caller passed no ``echo``)."""


class _Unreadable(Exception):
    """The existing file is not a comma-separated CSV of UTF-8 text; the message says why."""


def completed_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per completed (grid point, repeat), in grid order (the first completion wins)."""
    from optuna.trial import TrialState

    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        row = trial.user_attrs.get("row")
        key = (row["grid_id"], int(row.get("repeat", 0))) if row is not None else None
        if key is not None and key not in rows:
            edge = study.user_attrs.get(f"edge:{key[0]}:{key[1]}") or {}  # filled by `bcpareto edge`
            rows[key] = {**row, **edge, "study": study.study_name, "trial": trial.number}
    return [rows[k] for k in sorted(rows)]


def stopped_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """Rows of models stopped by halving or found infeasible (PRUNED trials), in trial order."""
    from optuna.trial import TrialState

    return [
        {**trial.user_attrs["row"], "study": study.study_name, "trial": trial.number}
        for trial in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
        if trial.user_attrs.get("row") is not None
    ]


def write_metrics_csv(path: Path, *, study_name: str, rows: list[dict[str, Any]]) -> str | None:
    """Replace this study's rows in the CSV (other studies' rows stay), atomically.

    Columns of the existing file that none of ``rows`` has (the user's own) keep their values
    on this study's rows with the same study, grid_id and repeat. A symlink is written through
    to its target. Returns a message for the user when the existing file could not be read and
    was moved aside (``metrics_log.csv.unreadable-<time>``); MetricsLogError when a folder or
    an unwritable place is at ``path``.
    """
    target = _target(path)
    note = None
    header: list[str] = []
    old_rows: list[dict[str, str]] = []
    if target.exists():
        try:
            header, old_rows = _read(target)
        except _Unreadable as reason:
            aside = _move_aside(target, reason=str(reason), shown=path)
            note = (f"{path} could not be read as a CSV ({reason}); moved it to {aside} and wrote a "
                    f"new one from study {study_name!r}'s rows (other studies' rows stay in the moved file)")
    if not header and not rows:
        return note  # nothing to log yet: no header-only file
    kept = [r for r in old_rows if r.get("study") != study_name]
    written = {column for row in rows for column in row}
    own = [c for c in header if c not in written]  # the user's columns
    theirs: dict[tuple[str, int, int] | None, dict[str, str]] = {}
    for old in old_rows:
        key = _key(old)
        if old.get("study") == study_name and key is not None and key not in theirs:
            theirs[key] = {c: old[c] for c in own if old.get(c) not in (None, "")}
    merged = [{**theirs.get(_key(row), {}), **row} for row in rows]
    columns = list(header)
    for row in rows:
        columns += [c for c in row if c not in columns]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(kept + merged)
    try:
        write_atomic(target, text.getvalue())  # a failed write leaves the old file whole
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            hint = ("the disk is full: the file is left as it was and the study storage keeps every "
                    "result; free some space and run the same command again to bring it up to date")
        else:
            hint = "expected a writable file in a writable folder"
        raise MetricsLogError(f"{_shown(path, target)}: cannot write it ({exc.strerror or exc}); {hint}") from None
    return note


def check_metrics_csv(run_dir: Path) -> None:
    """run_dir/metrics_log.csv can be written (cheap; nothing is created): MetricsLogError if not.

    For a search's up-front checks: a run directory that does not exist yet passes."""
    path = Path(run_dir) / CSV_NAME
    if path.is_symlink() or path.exists():
        _target(path)


def update_metrics_csv(
    study: optuna.Study, run_dir: Path, *, echo: Callable[[str], None] | None = None,
    pending: list[dict[str, Any]] | None = None,
) -> str | None:
    """Regenerate this study's rows of run_dir/metrics_log.csv from the storage (file-locked).

    ``pending``: rows of models about to be told to the study, written with the others unless
    the study already has a row for their grid_id and repeat. If the existing file could not be
    read and was moved aside, says so through ``echo`` (else as a MetricsLogWarning) and
    returns the message.
    """
    with file_lock(run_dir / f".{CSV_NAME}.lock"):
        done, stopped = completed_rows(study), stopped_rows(study)
        have = {(int(r["grid_id"]), int(r.get("repeat", 0))) for r in done + stopped}
        extra = [{**row, "study": study.study_name} for row in pending or []
                 if (int(row["grid_id"]), int(row.get("repeat", 0))) not in have]
        if extra:  # in completed_rows' order
            done = sorted(done + extra, key=lambda r: (int(r["grid_id"]), int(r.get("repeat", 0))))
        rows = done + stopped
        note = write_metrics_csv(run_dir / CSV_NAME, study_name=study.study_name, rows=rows)
    if note is not None:
        if echo is not None:
            echo(f"  warning: {note}")
        else:
            warnings.warn(note, MetricsLogWarning, stacklevel=2)
    return note


def _target(path: Path) -> Path:
    """The file to rewrite: ``path``, or the file a symlink at ``path`` points to."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if target.is_dir():
        raise MetricsLogError(
            f"{_shown(path, target)} is a folder; bcpareto writes its metrics log to this path: "
            "rename or move the folder, or use another --run-dir"
        )
    if target != path and not target.parent.is_dir():
        raise MetricsLogError(f"{_shown(path, target)}: the folder {target.parent} does not exist; "
                              "expected the link to point into an existing folder")
    return target


def _shown(path: Path, target: Path) -> str:
    return str(path) if target == Path(path) else f"{path} (a link to {target})"


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of an existing CSV; _Unreadable when rewriting it would lose data."""
    try:
        text = path.read_bytes().decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as exc:
        raise _Unreadable(f"byte {exc.start} is not UTF-8 text (saved in another encoding?)") from None
    except OSError as exc:
        raise MetricsLogError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] = []
    rows: list[dict[str, str]] = []
    try:
        for record in reader:
            if not record:
                continue  # a blank line, as csv.DictReader skips it
            if not header:
                header = record
                _check_header(header)
            elif len(record) > len(header):
                raise _Unreadable(f"line {reader.line_num} has {len(record)} fields but the header "
                                  f"has {len(header)}")
            else:
                rows.append(dict(zip(header, record + [""] * (len(header) - len(record)))))
    except csv.Error as exc:
        raise _Unreadable(f"not a CSV at line {reader.line_num}: {exc}") from None
    return header, rows


def _check_header(header: list[str]) -> None:
    if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
        raise _Unreadable(f"its header {header[0][:60]!r} is not comma-separated")
    doubled = sorted({c for c in header if header.count(c) > 1})
    if doubled:
        raise _Unreadable(f"column {doubled[0]!r} appears more than once in its header")


def _key(row: dict[str, Any]) -> tuple[str, int, int] | None:
    """(study, grid_id, repeat) of a row; None where a key cell is missing or not a whole number
    (a spreadsheet may have turned 3 into 3.0)."""
    try:
        numbers = [float(row["grid_id"]), float(row.get("repeat") or 0)]
    except (KeyError, TypeError, ValueError):
        return None
    if row.get("study") in (None, "") or not all(n.is_integer() for n in numbers):
        return None
    return str(row["study"]), int(numbers[0]), int(numbers[1])


def _move_aside(path: Path, *, reason: str, shown: Path) -> Path:
    """Rename the unreadable file beside itself, to a name no file has yet."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}{UNREADABLE_SUFFIX}{stamp}")
    n = 1
    while aside.exists() or aside.is_symlink():
        n += 1
        aside = path.with_name(f"{path.name}{UNREADABLE_SUFFIX}{stamp}-{n}")
    try:
        os.rename(path, aside)
    except OSError as exc:
        raise MetricsLogError(f"{shown} could not be read as a CSV ({reason}), nor moved aside to "
                              f"{aside} ({exc.strerror or exc}); move or fix it") from None
    return aside
