"""Issue 29, metrics_log.csv: what a user did to the file survives the rewrite after every trial.

Their own columns keep their values (matched by study, grid_id and repeat), a file that cannot
be read is moved aside with a message instead of being overwritten, a symlink stays a link, and
a folder in the file's place is a BcParetoError naming the path."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import pytest

from bcpareto.errors import BcParetoError
from bcpareto.metrics_log import (
    CSV_NAME,
    MetricsLogWarning,
    check_metrics_csv,
    update_metrics_csv,
)


def _study(name: str = "cells", n: int = 3, *, repeats: int = 1) -> Any:
    """An in-memory study with n grid points x repeats completed, as the search records them."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, directions=["maximize", "minimize"])
    for grid_id in range(n):
        for repeat in range(repeats):
            row = {"train_loss": 1.0, "val_accuracy": 0.5 + grid_id / 10, "model_size(MB)": 0.1,
                   "grid_id": grid_id, "filters": "[4,8]", "repeat": repeat, "seed": 7 + repeat}
            study.add_trial(optuna.trial.create_trial(
                values=[row["val_accuracy"], 0.1], user_attrs={"row": row},
                state=optuna.trial.TrialState.COMPLETE))
    return study


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------- the user's columns


def test_the_users_own_columns_keep_their_values_on_the_next_rewrite(tmp_path: Path) -> None:
    study = _study(repeats=2)
    update_metrics_csv(study, tmp_path)
    log = tmp_path / CSV_NAME
    rows = _rows(log)
    for row in rows:
        row["my_notes"] = f"looked at {row['grid_id']}/{row['repeat']}"
        row["val_accuracy"] = "0.99"  # an edit of bcpareto's own column: the storage wins
    rows[1]["my_notes"] = ""
    rows.append({**rows[0], "study": "other", "my_notes": "another study's row"})
    _write(log, rows)

    update_metrics_csv(study, tmp_path)
    again = _rows(log)
    assert list(again[0])[-1] == "my_notes"  # the column stays where the user put it
    mine = [r for r in again if r["study"] == "cells"]
    assert [r["my_notes"] for r in mine] == [
        "looked at 0/0", "", "looked at 1/0", "looked at 1/1", "looked at 2/0", "looked at 2/1"]
    assert {r["val_accuracy"] for r in mine} == {"0.5", "0.6", "0.7"}
    assert [r["my_notes"] for r in again if r["study"] == "other"] == ["another study's row"]


def test_a_new_row_gets_an_empty_cell_and_the_next_rewrite_keeps_the_values(tmp_path: Path) -> None:
    study = _study(n=1)
    update_metrics_csv(study, tmp_path)
    log = tmp_path / CSV_NAME
    _write(log, [{**r, "reviewed": "yes"} for r in _rows(log)])
    import optuna

    row = {"val_accuracy": 0.9, "grid_id": 1, "repeat": 0}
    study.add_trial(optuna.trial.create_trial(values=[0.9, 0.1], user_attrs={"row": row},
                                              state=optuna.trial.TrialState.COMPLETE))
    update_metrics_csv(study, tmp_path)
    assert [(r["grid_id"], r["reviewed"]) for r in _rows(log)] == [("0", "yes"), ("1", "")]


@pytest.mark.parametrize("deleted", ["grid_id", "study"])
def test_rows_whose_key_cells_were_deleted_are_rebuilt(tmp_path: Path, deleted: str) -> None:
    study = _study(n=2)
    update_metrics_csv(study, tmp_path)
    log = tmp_path / CSV_NAME
    rows = [{**r, "mine": "kept"} for r in _rows(log)]
    rows[0][deleted] = ""
    _write(log, rows)
    update_metrics_csv(study, tmp_path)
    again = _rows(log)
    if deleted == "study":  # no longer this study's row: it stays as the user left it, and the
        assert [r["study"] for r in again] == ["", "cells", "cells"]  # storage's row comes back
        assert [r["mine"] for r in again] == ["kept", "", "kept"]
    else:
        assert [(r["grid_id"], r["mine"]) for r in again] == [("0", ""), ("1", "kept")]


# --------------------------------------------------------------------------- unreadable files


UNREADABLE = {
    "latin-1": ("grid_id,notes\n0,caf\xe9 cr\xe8me\n".encode("latin-1"), "not UTF-8"),
    "semicolons": (b"train_loss;val_accuracy;grid_id\n0,51;0,42;0\n0,49;0,45;1\n", "not comma-separated"),
    "ragged": (b"grid_id,study\n0,cells,oops,more\n", "line 2 has 4 fields but the header has 2"),
    "doubled column": (b"grid_id,notes,notes\n0,a,b\n", "'notes' appears more than once"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_an_unreadable_file_is_moved_aside_with_a_message_never_overwritten(
    tmp_path: Path, case: str,
) -> None:
    content, reason = UNREADABLE[case]
    log = tmp_path / CSV_NAME
    log.write_bytes(content)
    messages: list[str] = []
    note = update_metrics_csv(_study(), tmp_path, echo=messages.append)
    assert note is not None and len(messages) == 1 and note in messages[0]
    asides = sorted(tmp_path.glob(f"{CSV_NAME}.unreadable-*"))
    assert len(asides) == 1 and asides[0].read_bytes() == content  # the user's bytes, untouched
    assert str(log) in note and reason in note and str(asides[0]) in note
    assert [r["grid_id"] for r in _rows(log)] == ["0", "1", "2"]  # a fresh log from the study


def test_without_echo_the_message_is_a_warning_and_a_second_file_gets_another_name(tmp_path: Path) -> None:
    log = tmp_path / CSV_NAME
    for _ in range(2):
        log.write_bytes(b"\xff\xfe\x00garbage")
        with pytest.warns(MetricsLogWarning, match="could not be read as a CSV"):
            update_metrics_csv(_study(), tmp_path)
    assert len(list(tmp_path.glob(f"{CSV_NAME}.unreadable-*"))) == 2


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbfgrid_id,study,mine\n0,cells,x\n"],
                         ids=["empty", "utf-8 with a BOM"])
def test_an_empty_file_or_excels_utf8_bom_is_read_not_moved(tmp_path: Path, content: bytes) -> None:
    (tmp_path / CSV_NAME).write_bytes(content)
    assert update_metrics_csv(_study(), tmp_path, echo=pytest.fail) is None
    assert not list(tmp_path.glob("*.unreadable-*"))
    rows = _rows(tmp_path / CSV_NAME)
    assert [r["grid_id"] for r in rows] == ["0", "1", "2"]
    if content:  # the BOM is not part of the first column's name
        assert list(rows[0])[:3] == ["grid_id", "study", "mine"] and rows[0]["mine"] == "x"


def test_the_earlier_versions_log_is_kept_as_rows_of_no_study(tmp_path: Path) -> None:
    from .conftest import FIXTURES

    seed = (FIXTURES / "seed_metrics_log_epoch_10.csv").read_bytes()
    (tmp_path / CSV_NAME).write_bytes(seed)
    assert update_metrics_csv(_study(), tmp_path, echo=pytest.fail) is None
    rows = _rows(tmp_path / CSV_NAME)
    assert len(rows) == 24 + 3 and [r["study"] for r in rows[:24]] == [""] * 24


# --------------------------------------------------------------------------- links and folders


def test_a_symlinked_log_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    target = shared / "all_runs.csv"
    _write(target, [{"grid_id": "9", "study": "older", "mine": "x"}])
    run = tmp_path / "run"
    run.mkdir()
    (run / CSV_NAME).symlink_to(os.path.relpath(target, run))
    update_metrics_csv(_study(), run)
    assert (run / CSV_NAME).is_symlink()
    assert [(r["study"], r["grid_id"]) for r in _rows(target)] == [
        ("older", "9"), ("cells", "0"), ("cells", "1"), ("cells", "2")]
    assert not list(run.glob(".metrics_log.csv.*.tmp")) and not list(shared.glob(".*.tmp"))


def test_an_unreadable_link_target_is_moved_aside_beside_the_target(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.csv"
    target.write_bytes(b"a;b\n1;2\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / CSV_NAME).symlink_to(target)
    assert update_metrics_csv(_study(), run, echo=lambda _: None) is not None
    assert (run / CSV_NAME).is_symlink() and len(_rows(target)) == 3
    assert [p.read_bytes() for p in tmp_path.glob("elsewhere.csv.unreadable-*")] == [b"a;b\n1;2\n"]


@pytest.mark.parametrize("how", ["folder", "link to a folder", "link into a missing folder"])
def test_a_folder_in_the_logs_place_is_an_error_naming_the_path(tmp_path: Path, how: str) -> None:
    log = tmp_path / CSV_NAME
    if how == "folder":
        log.mkdir()
    elif how == "link to a folder":
        (tmp_path / "dir").mkdir()
        log.symlink_to(tmp_path / "dir")
    else:
        log.symlink_to(tmp_path / "gone" / "x.csv")
    for call in (lambda: update_metrics_csv(_study(), tmp_path), lambda: check_metrics_csv(tmp_path)):
        with pytest.raises(BcParetoError) as err:
            call()
        assert str(log) in str(err.value)
        assert ("is a folder" if how != "link into a missing folder" else "does not exist") in str(err.value)


def test_the_up_front_check_passes_a_run_dir_that_does_not_exist_yet(tmp_path: Path) -> None:
    check_metrics_csv(tmp_path / "new" / "run")
    (tmp_path / CSV_NAME).write_text("anything")
    check_metrics_csv(tmp_path)  # a file, readable or not, is the rewrite's business
