"""Study storage shared between machines: two searches with their own run dirs on one PostgreSQL
study (needs BCPARETO_TEST_PG_URL: `.ci/postgres.sh`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import BLOOD_CELLS, TINY_GRID, needs_data, write_workbook
from .searches import SPACE, _rows

train = pytest.mark.train


@needs_data
@train
def test_two_machines_sampling_one_study_on_postgresql_train_n_trials_once(tmp_path: Path) -> None:
    """Two searches with their own run dirs (as on two machines) draw from one study at once:
    exactly --n-trials models in all, each id once, none trained twice."""
    import uuid

    from .conftest import PG_URL
    from .procs import _env, _finish, _setup, _start, _trials

    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("BCPARETO_TEST_PG_URL is unset under CI")
        pytest.skip("BCPARETO_TEST_PG_URL unset: start a server with eval \"$(bash .ci/postgres.sh)\"")
    _setup(tmp_path, TINY_GRID)
    write_workbook(tmp_path / "grid.xlsx", SPACE)  # the same file name _start passes, now with a space
    study = f"pg-{uuid.uuid4().hex[:8]}"
    env = _env(BCPARETO_STORAGE=PG_URL)
    args = ("--data-dir", str(BLOOD_CELLS), "--limit-per-class", "3", "--study", study,
            "--sampler", "random", "--n-trials", "4")
    procs = [_start(tmp_path, "--run-dir", f"machine{i}", *args, env=env) for i in range(2)]
    outs = [_finish(p) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outs)
    trials = _trials(PG_URL, study)
    ids = [t.user_attrs["grid_id"] for t in trials]
    assert len(set(ids)) == len(ids)
    trained = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert len(trained) == 4  # --n-trials new models; proposals of known ones are told on top
    assert all(t.state.name == "COMPLETE" for t in trained), [t.state for t in trained]
    # no model trained twice, not even two proposals of one model on the two machines at once
    assert len({t.user_attrs["architecture"] for t in trained}) == len(trained)
    by_number = {t.number: t for t in trials}
    for t in trials:
        if "duplicate_of" in t.user_attrs:  # told the earlier result, or dropped while it trained
            original = by_number[t.user_attrs["duplicate_of"]]
            assert original in trained and original.user_attrs["architecture"] == t.user_attrs["architecture"]
            assert t.state.name == "COMPLETE" or "in training" in t.user_attrs["fail_reason"], t.user_attrs
    joined = "\n".join(outs)
    for t in trained:
        assert joined.count(f"grid point {t.user_attrs['grid_id']} done in") == 1, joined
    assert len(_rows(tmp_path / "machine0")) == len(trained) == len(_rows(tmp_path / "machine1"))

