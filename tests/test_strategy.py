"""Beyond the grid: samplers over the space sheet, their options, repeated proposals, device limits.

The option checks run without training (in-memory Optuna studies); the searches train real Keras
models on a few real images at 32 px for one epoch. Halving in the storage is in test_halving.py,
refine in test_refine.py, `bcpareto edge` in test_edge_fill.py, two machines on one PostgreSQL
study in test_storage.py.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bcpareto.cli import cli
from bcpareto.gridspec import GridPoint
from bcpareto.space import read_space
from bcpareto.strategy import (
    MAX_REPEATED_PROPOSALS,
    Limits,
    RepeatedProposals,
    Strategy,
    distributions,
    encode,
)

from .conftest import TINY_GRID, needs_data, write_workbook
from .searches import SPACE, _rows, _search, _study, stuck_sampler

train = pytest.mark.train


# --- options checked before anything is created ------------------------------------------------


@pytest.mark.parametrize(("args", "fragments"), [
    (["--sampler", "tpe", "--n-trials", "3"], ["tiny.xlsx", "'space'", "--sampler grid"]),
    (["--n-trials", "3"], ["--n-trials", "--sampler random|tpe"]),
    (["--warm-start"], ["--warm-start"]),
    (["--sampler-seed", "3"], ["--sampler-seed", "--sampler grid draws nothing"]),
    (["--fidelity", "epochs", "--min-epochs", "5", "--epochs", "3"], ["--min-epochs (5)", "--epochs 3"]),
    (["--fidelity", "epochs", "--min-epochs", "3", "--epochs", "3"], ["judges at no epoch", "below --epochs 3"]),
])
def test_search_options_that_cannot_work_exit_2_and_create_nothing(
    tmp_path: Path, tiny_grid: Path, args: list[str], fragments: list[str],
) -> None:
    result = CliRunner().invoke(cli, ["search", str(tiny_grid), "--data-dir", str(tmp_path),
                                      "--run-dir", str(tmp_path / "run"), *args])
    assert result.exit_code == 2, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_a_sampler_needs_a_trial_count_or_a_budget(tmp_path: Path) -> None:
    sheet = write_workbook(tmp_path / "s.xlsx", SPACE)
    result = CliRunner().invoke(cli, ["search", str(sheet), "--sampler", "random", "--run-dir",
                                      str(tmp_path / "run")])
    assert result.exit_code == 2 and "--n-trials N or --budget-minutes M" in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_an_image_size_range_exits_2_naming_the_cell_and_creates_nothing(tmp_path: Path) -> None:
    sheet = write_workbook(tmp_path / "s.xlsx", [*SPACE, ["image_size", 32, 48]])  # row 7
    result = CliRunner().invoke(cli, ["search", str(sheet), "--sampler", "random", "--n-trials", "2",
                                      "--data-dir", str(tmp_path), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    for fragment in ("s.xlsx", "sheet 'space'", "cell C7 (high)", "range of image sizes", "[48, 64]"):
        assert fragment in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_a_broken_space_cell_exits_2_naming_the_cell_and_creates_nothing(tmp_path: Path) -> None:
    rows = [list(r) for r in SPACE]
    rows[2] = ["base_filters", None, None, None, "[4, eight]"]  # row 3, column E
    sheet = write_workbook(tmp_path / "s.xlsx", rows)
    result = CliRunner().invoke(cli, ["search", str(sheet), "--sampler", "tpe", "--n-trials", "2",
                                      "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "s.xlsx" in result.output and "E3" in result.output, result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed: gp can run")
def test_gp_without_its_extra_says_how_to_install_it(tmp_path: Path) -> None:
    sheet = write_workbook(tmp_path / "s.xlsx", SPACE)
    result = CliRunner().invoke(cli, ["search", str(sheet), "--sampler", "gp", "--n-trials", "2",
                                      "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "pip install 'bcpareto[gp]'" in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_study_names_keep_the_grid_s_and_separate_strategies() -> None:
    assert Strategy().name_suffix() == ""  # grid studies keep the names they had
    space = None
    tpe = Strategy(sampler="tpe", space=space, n_trials=10)
    assert tpe.name_suffix().startswith("-tpe-")
    assert tpe.name_suffix() == Strategy(sampler="tpe", n_trials=99, seed=7).name_suffix()  # same study, more trials
    assert tpe.name_suffix() != Strategy(sampler="random", n_trials=10).name_suffix()
    assert Strategy(eta=3).name_suffix().startswith("-grid-sh3-")
    assert Strategy(eta=3).name_suffix() != Strategy(eta=2).name_suffix()
    assert Strategy(limits=Limits(max_macs=1e6)).name_suffix() != Strategy(limits=Limits(max_macs=2e6)).name_suffix()


def test_limits_name_what_is_broken_and_by_how_much() -> None:
    limits = Limits(max_int8_mb=0.1, max_macs=5e6)
    violations = limits.violations({"tflite_int8_mb": 0.12, "macs": 4e6, "latency_ms": 3.0})
    assert violations == pytest.approx({"tflite_int8_mb": 0.02, "macs": -1e6})  # no latency limit set
    assert limits.describe(violations) == "int8 0.120 MB > --max-int8-mb 0.1"


def test_a_grid_point_the_space_can_express_is_encoded_exactly(tmp_path: Path) -> None:
    space = read_space(write_workbook(tmp_path / "s.xlsx", SPACE))
    point = GridPoint(grid_id=3, filters=(8, 8), kernel_sizes=(3, 3), neurons=(), block="separable")
    values = encode(space, point)
    assert values == {"conv_blocks": 2, "base_filters": 8, "kernel": 3, "dense_layers": 0, "block": "separable"}
    assert space.point(values, grid_id=3) == point
    for other in (GridPoint(3, (8, 16), (3, 3), ()),  # growth 2: the space has none (1 only)
                  GridPoint(3, (8,), (5,), ()),  # kernel 5 is not a choice
                  GridPoint(3, (8, 8), (3, 3), (), strides=(2, 1))):  # strides: not in the encoding
        assert encode(space, other) is None


def test_after_a_repeated_proposal_the_next_is_a_random_draw(tmp_path: Path) -> None:
    space = distributions(read_space(write_workbook(tmp_path / "s.xlsx", [
        *SPACE, ["growth", 1, 2], ["width", 0.25, 4, "yes"], ["dense_units", 16, 256, "yes"]])))
    rule = RepeatedProposals(seed=3)
    assert rule.values(space, number=5) == {}  # no repeat yet: the sampler chooses
    assert not rule.count(repeated=True)
    draws = [rule.values(space, number=n) for n in range(200)]
    assert draws[7] == RepeatedProposals(seed=3, in_a_row=1).values(space, number=7)  # seed and number fix it
    assert draws[7] != RepeatedProposals(seed=4, in_a_row=1).values(space, number=7)
    for name, distribution in space.items():
        values = [d[name] for d in draws]
        assert all(distribution._contains(distribution.to_internal_repr(v)) for v in values), name
        if not distribution.single():
            assert len(set(values)) > 1, name
    assert {d["conv_blocks"] for d in draws} == {1, 2} and {d["block"] for d in draws} == {"conv", "separable"}
    widths = [d["width"] for d in draws]  # log scale: about as many below 1 as above
    assert 60 < sum(w < 1 for w in widths) < 140
    assert not rule.count(repeated=False) and rule.values(space, number=9) == {}  # a new model: the sampler again
    for _ in range(MAX_REPEATED_PROPOSALS - 1):
        assert not rule.count(repeated=True)
    assert rule.count(repeated=True)  # the 25th in a row: stop


def test_a_model_in_training_elsewhere_is_not_trained_twice(tmp_path: Path) -> None:
    """Two workers' samplers can propose one model at once (or two proposals differ only in a
    value the model ignores): the later claim gives way while the earlier one trains, and is
    told the earlier result once there is one."""
    import optuna
    from optuna.trial import TrialState

    from bcpareto.study import needs_queueing as _needs_queueing, same_architecture as _same_architecture, tell_duplicate as _tell_duplicate

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}",
                                directions=["maximize", "minimize"])
    point = GridPoint(grid_id=0, filters=(8,), kernel_sizes=(3,), neurons=())

    def claim(architecture: str) -> Any:
        trial = study.ask()
        trial.set_user_attr("architecture", architecture)
        trial.set_user_attr("grid_id", trial.number)
        return trial

    first, second = claim("A"), claim("A")
    assert _same_architecture(study, first, point) is None  # the earlier claim trains
    same = _same_architecture(study, second, point)
    assert same is not None and same.number == first.number and same.state == TrialState.RUNNING
    _tell_duplicate(study, second, same)
    dropped = study.get_trials()[second.number]
    assert dropped.state == TrialState.FAIL  # no result to tell: samplers leave failed trials out
    assert dropped.user_attrs["duplicate_of"] == first.number
    assert "in training" in dropped.user_attrs["fail_reason"]
    assert not _needs_queueing([dropped], retry_failed=True)  # never queued as a failed model
    # once the first has a result, a third proposal of the model is told that result
    study.tell(first, [0.9, 0.1])
    third = claim("A")
    same = _same_architecture(study, third, point)
    assert same is not None and same.number == first.number  # not the dropped proposal
    _tell_duplicate(study, third, same)
    assert study.get_trials()[third.number].values == [0.9, 0.1]
    assert _same_architecture(study, claim("B"), point) is None



# --- real searches -------------------------------------------------------------------------------


@needs_data
@train
@pytest.mark.parametrize("sampler", ["random", "tpe", "nsga2", "gp"])
def test_each_sampler_trains_models_drawn_from_the_space(tmp_path: Path, sampler: str) -> None:
    if sampler == "gp" and importlib.util.find_spec("torch") is None:
        pytest.skip("gp needs the gp extra (torch, scipy)")
    sheet = write_workbook(tmp_path / "s.xlsx", SPACE)
    result = _search(tmp_path, sheet, "--sampler", sampler, "--n-trials", "3")
    assert result.exit_code == 0, result.output
    assert f"sampler {sampler}; 3 trials" in result.output
    study = _study(tmp_path / "run")
    assert f"-{sampler}-" in study.study_name
    trials = study.get_trials(deepcopy=False)
    space = read_space(sheet)
    trained = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert len(trained) == 3  # exactly --n-trials models; proposals of known ones are told on top
    for t in trials:
        assert t.state.name == "COMPLETE"
        assert set(t.params) == {"conv_blocks", "base_filters", "kernel", "dense_layers", "block"}
        assert all(p.contains(t.params[p.name]) for p in space.parameters)
        assert t.user_attrs["grid_id"] >= 1  # after the sheet's own id 0
    rows = _rows(tmp_path / "run")
    assert sorted(int(r["grid_id"]) for r in rows) == sorted(t.user_attrs["grid_id"] for t in trained)
    for r, t in zip(sorted(rows, key=lambda r: int(r["trial"])), sorted(trained, key=lambda t: t.number)):
        expected = space.point(t.params, grid_id=0)
        assert r["filters"] == expected.params()["filters"] and float(r["train_seconds"]) > 0
    # the same command continues the study: 3 are there, nothing more is trained
    again = _search(tmp_path, sheet, "--sampler", sampler, "--n-trials", "3")
    assert again.exit_code == 0 and "(0 trained now" in again.output, again.output


@pytest.mark.slow  # three searches on real images, 18 models drawn and measured
@needs_data
def test_the_sampler_seed_changes_the_draws_and_nothing_else(tmp_path: Path) -> None:
    """--max-macs 1 makes every draw infeasible, so nothing trains: only the draws are compared."""
    sheet = write_workbook(tmp_path / "s.xlsx", [*SPACE, ["stem", None, None, None, "[0, 8]"],
                                                 ["last_stride", 1, 2]])

    def draws(run: str, *seed: str) -> tuple[str, list[dict[str, Any]]]:
        result = _search(tmp_path, sheet, "--sampler", "random", "--n-trials", "6", "--max-macs", "1",
                         "--workers", "1", "--run-dir", str(tmp_path / run), *seed)
        assert result.exit_code == 0 and "(0 trained now, 6 infeasible" in result.output, result.output
        study = _study(tmp_path / run)
        return study.study_name, [t.params for t in sorted(study.get_trials(), key=lambda t: t.number)]

    name, default = draws("default")
    assert draws("seed0", "--sampler-seed", "0") == (name, default)  # the preset's seed is the default
    other_name, other = draws("seed5", "--sampler-seed", "5")
    assert other_name == name  # the same study: the seed is not part of what it searches
    assert other != default and len(other) == len(default) == 6


@needs_data
@train
def test_a_sampled_stem_and_last_stride_build_and_train(tmp_path: Path) -> None:
    fixed = [["name", "low", "high", "log", "choices"], ["conv_blocks", 2, 2],
             ["base_filters", None, None, None, "[8]"], ["kernel", None, None, None, "[3]"],
             ["block", None, None, None, "[separable]"], ["stem", 8, 8], ["last_stride", 1, 1]]
    sheet = write_workbook(tmp_path / "s.xlsx", fixed)
    result = _search(tmp_path, sheet, "--sampler", "random", "--n-trials", "1", "--workers", "1")
    assert result.exit_code == 0, result.output
    [row] = _rows(tmp_path / "run")
    assert (row["block"], row["stem"], row["strides"], row["filters"]) == ("separable", "8", "[2,1]", "[8,8]")
    assert 0 <= float(row["val_accuracy"]) <= 1 and float(row["train_seconds"]) > 0


@needs_data
@train
def test_a_model_sampled_again_is_told_not_trained(tmp_path: Path) -> None:
    """A space of one model and --n-trials 2: the second model never comes; the search stops
    after 25 proposals in a row of the one it has, each told, none trained."""
    fixed = [SPACE[0], ["conv_blocks", 1, 1], ["base_filters", 4, 4], ["kernel", None, None, None, "[3]"]]
    sheet = write_workbook(tmp_path / "s.xlsx", fixed)
    result = _search(tmp_path, sheet, "--sampler", "random", "--n-trials", "2")
    assert result.exit_code == 0, result.output
    assert "the same model as trial 0" in result.output, result.output
    assert f"{MAX_REPEATED_PROPOSALS} proposals in a row (random draws included)" in result.output
    assert f"{MAX_REPEATED_PROPOSALS} duplicates told, not trained" in result.output, result.output
    assert len(_rows(tmp_path / "run")) == 1
    status = CliRunner().invoke(cli, ["status", "--run-dir", str(tmp_path / "run")])
    assert "1 completed" in status.output, status.output
    assert f"{MAX_REPEATED_PROPOSALS} duplicate(s) not trained" in status.output, status.output


@needs_data
@train
def test_a_sampler_stuck_on_one_model_still_trains_n_trials_new_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A converged sampler proposes a model the study has: that one is told, and the next is a
    random draw, so --n-trials new models are trained (without the rule: 1, then 25 repeats)."""
    import bcpareto.study

    monkeypatch.setattr(bcpareto.study, "make_sampler", lambda strategy: stuck_sampler())
    sheet = write_workbook(tmp_path / "s.xlsx", SPACE)  # 8 models
    result = _search(tmp_path, sheet, "--sampler", "tpe", "--n-trials", "3")
    assert result.exit_code == 0, result.output
    trials = sorted(_study(tmp_path / "run").get_trials(deepcopy=False), key=lambda t: t.number)
    trained = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert len(trained) == 3 and len(_rows(tmp_path / "run")) == 3, result.output
    assert len({t.user_attrs["architecture"] for t in trained}) == 3
    assert len({t.user_attrs["grid_id"] for t in trials}) == len(trials)  # every trial its own id
    assert trials[0].user_attrs["sampled"] == "tpe" and "duplicate_of" not in trials[0].user_attrs
    for before, after in itertools.pairwise(trials):  # after each repeat, a random draw
        if "duplicate_of" in before.user_attrs:
            assert after.user_attrs["sampled"] == "random draw after a repeat", result.output
        else:
            assert after.user_attrs["sampled"] == "tpe"  # the stuck sampler's: its first model again
            assert "duplicate_of" in after.user_attrs
    assert "the next sampled model is a random draw" in result.output


@needs_data
@train
def test_a_warm_start_trains_the_grid_first_and_teaches_the_sampler(tmp_path: Path) -> None:
    grid = [TINY_GRID[0], ["[0]", "[[]]", "[[4, 4], [8]]", "[3, 3]"]]  # both expressible in SPACE
    sheet = write_workbook(tmp_path / "s.xlsx", SPACE, grid=grid)
    result = _search(tmp_path, sheet, "--sampler", "tpe", "--n-trials", "3", "--warm-start")
    assert result.exit_code == 0, result.output
    trials = sorted(_study(tmp_path / "run").get_trials(deepcopy=False), key=lambda t: t.number)
    assert [t.user_attrs["grid_id"] for t in trials[:2]] == [0, 1]  # the sheet's points first
    assert trials[0].params == {"conv_blocks": 2, "base_filters": 4, "kernel": 3, "dense_layers": 0, "block": "conv"}
    assert trials[1].params["conv_blocks"] == 1 and trials[1].params["base_filters"] == 8
    assert "sampled" in trials[2].user_attrs and trials[2].user_attrs["grid_id"] == 2


@needs_data
@train
def test_limits_record_infeasible_models_without_training_them(
    tmp_path: Path, tiny_grid: Path, recwarn: pytest.WarningsRecorder,
) -> None:
    # tiny grid: [4, 8] and [4, 8, 8] with a dense layer; at 32 px the second has more MACs
    from bcpareto.gridspec import read_grid
    from bcpareto.model import cost

    macs = [cost(p, image_size=32, channels=3, padding="same").macs for p in read_grid(tiny_grid)]
    assert macs[0] < macs[1]
    result = _search(tmp_path, tiny_grid, "--max-macs", str((macs[0] + macs[1]) // 2))
    assert result.exit_code == 0, result.output
    assert "grid point 1: infeasible, not trained (" in result.output and "> --max-macs" in result.output
    rows = {r["grid_id"]: r for r in _rows(tmp_path / "run")}
    assert rows["0"]["status"] == "" and rows["1"]["status"] == "infeasible"
    assert rows["1"]["val_accuracy"] == "" and float(rows["1"]["train_seconds"]) == 0
    assert not list((tmp_path / "run" / "runs").glob("*/grid_1*"))  # no model, no record
    trial = next(t for t in _study(tmp_path / "run").get_trials() if t.user_attrs["grid_id"] == 1)
    assert trial.state.name == "PRUNED" and trial.system_attrs["constraints:macs"] > 0
    trained = next(t for t in _study(tmp_path / "run").get_trials() if t.user_attrs["grid_id"] == 0)
    assert trained.state.name == "COMPLETE" and trained.system_attrs["constraints:macs"] <= 0
    # measured once, before training, and not set again (Optuna warns, and keeps the first)
    assert not [w for w in recwarn if "already set" in str(w.message)]
    status = CliRunner().invoke(cli, ["status", "--run-dir", str(tmp_path / "run")])
    assert "1 infeasible" in status.output and "infeasible grid point 1" in status.output, status.output
    # the int8 limit is measured on the untrained model: 1 KB is below any file, nothing trains
    tiny = _search(tmp_path, tiny_grid, "--max-int8-mb", "0.001", "--run-dir", str(tmp_path / "run2"))
    assert tiny.exit_code == 0 and "(0 trained now, 2 infeasible" in tiny.output, tiny.output
    assert all(float(r["tflite_int8_mb"]) > 0.001 for r in _rows(tmp_path / "run2"))

