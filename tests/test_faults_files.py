"""Issue 29, file modes: the files bcpareto writes get the permissions any program's new files get
(0o666 less the umask), not mkstemp's 0600, so a group that shares a run directory can read them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bcpareto.runs import save_keras_atomic, write_atomic


@pytest.fixture(params=[0o022, 0o027, 0o002], ids=["umask 022", "umask 027", "umask 002"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("existing", [False, True], ids=["new file", "replacing a 0600 file"])
def test_write_atomic_gives_the_umasks_mode(tmp_path: Path, umask: int, existing: bool) -> None:
    path = tmp_path / "grid_0.json"
    if existing:  # written by a version with the bug
        path.write_text("old")
        os.chmod(path, 0o600)
    write_atomic(path, "{}")
    assert _mode(path) == 0o666 & ~umask
    assert path.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["grid_0.json"]


def test_save_keras_atomic_gives_the_umasks_mode(tmp_path: Path, umask: int) -> None:
    class Model:  # what save_keras_atomic needs of a keras.Model: save(path) writes the file
        def save(self, filepath: str) -> None:
            with open(filepath, "wb") as handle:
                handle.write(b"PK")

    path = tmp_path / "grid_0.keras"
    save_keras_atomic(Model(), path)  # type: ignore[arg-type]
    assert _mode(path) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["grid_0.keras"]


def test_metrics_log_csv_gets_the_umasks_mode(tmp_path: Path, umask: int) -> None:
    import optuna

    from bcpareto.metrics_log import CSV_NAME, update_metrics_csv

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="cells", directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(
        values=[0.5, 0.1], user_attrs={"row": {"val_accuracy": 0.5, "grid_id": 0, "repeat": 0}},
        state=optuna.trial.TrialState.COMPLETE))
    update_metrics_csv(study, tmp_path)
    assert _mode(tmp_path / CSV_NAME) == 0o666 & ~umask
