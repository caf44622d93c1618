"""metrics_log.csv: one row per completed grid point, regenerated from the study storage.

Models stopped by successive halving (``status`` "stopped", with ``stopped_at_epoch``) and
models over a device limit (``status`` "infeasible", never trained) have rows too, after the
completed ones, so the CSV shows what the search spent; the front leaves them out.

The storage is the truth; the CSV is rewritten from it after every trial (to a temporary file,
then renamed), so it never holds a torn or duplicate row, and rows of other studies stay.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .runs import write_atomic
from .storage import file_lock

if TYPE_CHECKING:
    import optuna

CSV_NAME = "metrics_log.csv"


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


def write_metrics_csv(path: Path, *, study_name: str, rows: list[dict[str, Any]]) -> None:
    """Replace this study's rows in the CSV (other studies' rows stay), atomically."""
    kept: list[dict[str, Any]] = []
    columns: list[str] = []
    if path.exists():
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            kept = [r for r in reader if r.get("study") != study_name]
    elif not rows:
        return  # nothing to log yet: no header-only file
    for row in rows:
        columns += [c for c in row if c not in columns]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(kept + rows)
    write_atomic(path, text.getvalue())


def update_metrics_csv(study: optuna.Study, run_dir: Path) -> None:
    """Regenerate this study's rows of run_dir/metrics_log.csv from the storage (file-locked)."""
    with file_lock(run_dir / f".{CSV_NAME}.lock"):
        rows = completed_rows(study) + stopped_rows(study)
        write_metrics_csv(run_dir / CSV_NAME, study_name=study.study_name, rows=rows)
