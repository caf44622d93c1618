"""experiments/replay_search.py: the replay core on a hand-made 16-point table, and the loader on a
tiny workbook and run folder (no training, no TensorFlow)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from bcpareto.runs import save_record
from bcpareto.space import read_space
# the experiment itself, its replay core and loader: experiments/ is a package at the repository
# root, which pytest puts on sys.path because tests/ is a package (experiments/README.md)
from experiments import replay_search as bench

from .searches import stuck_sampler

ROOT = Path(__file__).resolve().parents[1]

NAMES = ("a", "b", "c", "d")


def entry(i: int) -> bench.Entry:
    """Even ids: a front, accuracy rising with size at every epoch. Odd ids: a little larger than
    the even id before them and far less accurate from epoch 1 on, so dominated at every rung."""
    seconds = (0.1 * (i + 1), 0.2, 0.3, 0.7)  # not whole numbers: totals must still be exact
    if i % 2:
        curve = (0.10, 0.12, 0.14, 0.15)
    else:
        curve = tuple(0.3 + 0.03 * i + 0.1 * e for e in range(4))
    return bench.Entry(i, curve, seconds, size=1.0 + i, val=curve[-1], test=curve[-1] - 0.01)


def table(recorded: range | list[int] = range(16)) -> bench.Table:
    values = list(itertools.product((0, 1), repeat=4))
    return bench.Table(
        names=NAMES,
        distributions={n: ("categorical", (0, 1)) for n in NAMES},
        ids={v: i for i, v in enumerate(values)},
        assignments={i: dict(zip(NAMES, v)) for i, v in enumerate(values)},
        entries={i: entry(i) for i in recorded},
        epochs=4,
    )


def test_grid_without_halving_charges_exactly_the_grid_seconds() -> None:
    t = table()
    result = bench.replay(t, sampler="grid", eta=None, seed=0)
    assert [r["grid_id"] for r in result.rows] == list(range(16))  # sheet order, each once
    assert result.charged == t.reference_seconds == math.fsum(math.fsum(entry(i).seconds) for i in range(16))
    assert result.stopped == [] and result.proposals == 16 and result.duplicates == 0
    assert result.ended_by == "all seen"


def test_halving_at_eta_2_stops_the_dominated_and_charges_less() -> None:
    t = table()
    full = bench.replay(t, sampler="grid", eta=None, seed=0)
    halved = bench.replay(t, sampler="grid", eta=2, seed=0)
    assert halved.stopped == list(range(1, 16, 2))  # every odd id, after epoch 1 (rungs [1, 2])
    assert all(r["stopped_at_epoch"] == 1 for r in halved.rows if r["grid_id"] % 2)
    expected = math.fsum([entry(i).seconds[0] if i % 2 else math.fsum(entry(i).seconds) for i in range(16)])
    assert halved.charged == pytest.approx(expected) and halved.charged < full.charged
    told = dict(halved.told)
    assert {g for g, s in told.items() if s == "PRUNED"} == set(range(1, 16, 2))
    refs = bench.references(t)
    # the stopped models are dominated anyway: the front is found for less
    assert bench.measure(halved, t, refs)[bench.VAL]["final_share"] == pytest.approx(1.0)


def test_random_halving_only_stops_dominated_models() -> None:
    result = bench.replay(table(), sampler="random", eta=2, seed=1)
    assert result.stopped and all(g % 2 for g in result.stopped)


def test_duplicates_cost_nothing_and_get_the_same_answer() -> None:
    t = table()
    result = bench.replay(t, sampler="random", eta=2, seed=0)
    assert result.duplicates > 0
    assert len(result.rows) == len({r["grid_id"] for r in result.rows})  # each model trained once
    assert result.proposals == len(result.told) == len(result.rows) + result.duplicates
    first: dict[int, str] = {}
    for grid_id, state in result.told:
        assert first.setdefault(grid_id, state) == state
    no_halving = bench.replay(t, sampler="random", eta=None, seed=0)
    assert no_halving.duplicates > 0 and no_halving.charged == t.reference_seconds


def test_random_sampler_with_a_fixed_seed_is_reproducible() -> None:
    t = table()
    one, two = (bench.replay(t, sampler="random", eta=3, seed=7) for _ in range(2))
    assert one.told == two.told and one.rows == two.rows
    assert bench.replay(t, sampler="random", eta=3, seed=8).told != one.told


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_model_based_samplers_run_within_the_limits(sampler: str) -> None:
    t = table()
    result = bench.replay(t, sampler=sampler, eta=2, seed=0)
    assert result.proposals <= bench.PROPOSALS_PER_POINT * 16
    if result.ended_by == "repeats":  # as the live search: known models proposed in a row
        assert result.told[-bench.MAX_REPEATED_PROPOSALS:] and result.duplicates >= bench.MAX_REPEATED_PROPOSALS
        assert len({g for g, _ in result.told[-bench.MAX_REPEATED_PROPOSALS:]} - {r["grid_id"] for r in result.rows}) == 0
    else:
        assert len(result.rows) == 16 or result.proposals == bench.PROPOSALS_PER_POINT * 16


def test_after_a_repeat_the_replay_draws_at_random_and_keeps_spending(monkeypatch) -> None:
    """A sampler stuck on one model: without the live search's rule the replay would train it
    once and end after 25 repeats; with it, each repeat is followed by random draws."""
    monkeypatch.setattr(bench, "_sampler", lambda name, seed: stuck_sampler())
    t = table()
    result = bench.replay(t, sampler="tpe", eta=None, seed=0)
    assert result.rows[0]["grid_id"] == 0  # the stuck sampler's model, trained once
    assert len(result.rows) >= 12 and result.charged > 0.5 * t.reference_seconds, (result.ended_by, result.told)
    assert result.drawn >= result.duplicates // 2 > 0
    again = bench.replay(t, sampler="tpe", eta=None, seed=0)
    assert again.told == result.told and bench.replay(t, sampler="tpe", eta=None, seed=1).told != result.told
    if result.ended_by == "repeats":  # only after 25 known models in a row, random draws included
        assert all(g in {r["grid_id"] for r in result.rows} for g, _ in result.told[-bench.MAX_REPEATED_PROPOSALS:])


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_model_based_samplers_find_most_of_a_small_table(sampler: str) -> None:
    """TPE and NSGA-II over 16 points soon repeat themselves; the random draws after each repeat
    find the rest. (Without them, seeds 0-5 ended on the repeats rule with 11-15 models for tpe
    and in 5 of 6 for nsga2.) The rule can still end a replay with a model or two left: 24 draws
    in a row that all miss the last 2 of 16."""
    results = [bench.replay(table(), sampler=sampler, eta=2, seed=seed) for seed in range(6)]
    found = [(r.ended_by, len(r.rows)) for r in results]
    assert sum(r.ended_by == "all seen" for r in results) >= 4, found
    assert min(len(r.rows) for r in results) >= 14, found


def test_partial_table_redraws_unrecorded_points() -> None:
    t = table(recorded=[i for i in range(16) if i != 5])
    assert t.missing == [5]
    result = bench.replay(t, sampler="random", eta=None, seed=0)
    assert 5 not in {r["grid_id"] for r in result.rows}
    assert result.redraws == sum(1 for g, s in result.told if s == "FAIL") > 0
    assert all(g == 5 for g, s in result.told if s == "FAIL")
    assert result.proposals - result.redraws <= bench.PROPOSALS_PER_POINT * 15  # re-draws counted apart


def test_measures_of_the_grid_replay() -> None:
    t = table()
    refs = bench.references(t)
    figures = bench.measure(bench.replay(t, sampler="grid", eta=None, seed=0), t, refs)
    val = figures[bench.VAL]
    assert val["final_share"] == pytest.approx(1.0) and val["reach_98%_pct"] <= 100
    assert 0 < val["share_at_budget"] < 1 and figures["charged_pct"] == pytest.approx(100)
    summary = bench.summarise([figures, figures])
    assert summary[bench.VAL]["median_share_at_budget"] == val["share_at_budget"]
    assert summary[bench.VAL]["reached_98%"] == 2


# --- the loader, on a tiny workbook and run folder ------------------------------------------


def workbook(path: Path) -> Path:
    """A space of 4 architectures (block x conv_blocks); the grid sheet lists them in reverse."""
    import openpyxl

    book = openpyxl.Workbook()
    grid = book.active
    grid.title = "grid"
    grid.append(["dense_layers", "neurons", "filters", "kernel_sizes", "block"])
    space = book.create_sheet("space")
    space.append(["name", "low", "high", "log", "choices"])
    space.append(["block", None, None, None, "[conv, separable]"])
    space.append(["conv_blocks", None, None, None, "[2, 3]"])
    space.append(["base_filters", 8, 8, None, None])
    space.append(["kernel", 3, 3, None, None])
    book.save(path)
    parsed = read_space(path)
    combos = list(itertools.product(("conv", "separable"), (2, 3)))
    for block, blocks in reversed(combos):
        point = parsed.point({"block": block, "conv_blocks": blocks}, grid_id=0)
        grid.append([f"[{point.dense_layers}]", f"[{list(point.neurons)}]", f"[{list(point.filters)}]",
                     f"{list(point.kernel_sizes)}", point.block])
    book.save(path)
    return path


def record(folder: Path, sheet: Path, grid_id: int, *, val: float, repeat: int = 0) -> None:
    from bcpareto.gridspec import read_grid

    point = read_grid(sheet)[grid_id]
    row = point.params() | {"model_size(MB)": 0.01 * point.channels[-1], "val_accuracy": val,
                            "test_accuracy": val - 0.02, "epochs": 2, "repeat": repeat}
    save_record(folder, grid_id, repeat=repeat, record={
        "row": row, "curve": {"val_accuracy": [val - 0.1, val], "seconds": [1.5, 2.5]}})


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, Path, Path]:
    sheet = workbook(tmp_path / "space.xlsx")
    folder = tmp_path / "run" / "runs" / "study-1"
    for grid_id, val in enumerate((0.9, 0.8, 0.7, 0.6)):
        record(folder, sheet, grid_id, val=val)
    return sheet, tmp_path / "run", folder


def test_load_matches_assignments_by_architecture_not_order(run) -> None:
    sheet, run_dir, _ = run
    t = bench.load_table(run_dir, sheet)
    assert len(t.entries) == 4 and t.epochs == 2 and t.study == "study-1" and t.reference_seconds == 16
    # the grid sheet is in reverse product order: (conv, 2) is its last row, id 3
    assert t.ids[("conv", 2, 8, 3)] == 3 and t.ids[("separable", 3, 8, 3)] == 0
    assert t.assignments[3] == {"block": "conv", "conv_blocks": 2, "base_filters": 8, "kernel": 3}


def test_load_refuses_a_partial_table_unless_asked(run) -> None:
    sheet, run_dir, folder = run
    (folder / "grid_2.json").unlink()
    with pytest.raises(bench.BenchError, match=r"3 of 4 space points have a record; no record for grid ids 2\. .*--allow-partial"):
        bench.load_table(run_dir, sheet)
    t = bench.load_table(run_dir, sheet, allow_partial=True)
    assert t.missing == [2] and sorted(t.entries) == [0, 1, 3]


def test_load_refuses_a_record_of_another_sheet(run) -> None:
    sheet, run_dir, folder = run
    data = json.loads((folder / "grid_1.json").read_text())
    data["row"]["filters"] = "[99,99]"
    (folder / "grid_1.json").write_text(json.dumps(data))
    with pytest.raises(bench.BenchError, match=r"grid_1\.json: filters \[99,99\] but grid id 1"):
        bench.load_table(run_dir, sheet)


def test_main_writes_json_and_plot(run, tmp_path: Path, capsys, monkeypatch) -> None:
    sheet, run_dir, folder = run
    record(folder, sheet, 1, val=0.82, repeat=1)
    monkeypatch.setattr(bench, "_gp_missing", lambda: "torch and scipy")  # the same with or without them
    out = tmp_path / "out"
    code = bench.main([str(run_dir), "--sheet", str(sheet), "--seeds", "2", "--samplers", "grid,random,gp",
                       "--etas", "none,2", "--json", str(out / "r.json"), "--plot", str(out / "r.png")])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "4 of 4 space points recorded" in printed and "| random | eta 2 | 2 |" in printed
    assert "| grid | no halving | 1 |" in printed and "| 4 / 0 / 0 / 0 | 100% | all seen 1 |" in printed
    assert "gp skipped: GPSampler needs torch and scipy" in printed
    payload = json.loads((out / "r.json").read_text())
    assert set(payload["results"]) == {"grid / no halving", "grid / eta 2", "random / no halving", "random / eta 2"}
    assert payload["noise"]["points_with_repeat"] == [1] and payload["machine"]["cpu_count"]
    assert (out / "r.png").read_bytes().startswith(b"\x89PNG")


def test_main_refuses_a_partial_table_with_a_message(run, capsys) -> None:
    sheet, run_dir, folder = run
    (folder / "grid_0.json").unlink()
    assert bench.main([str(run_dir), "--sheet", str(sheet), "--seeds", "1"]) == 1
    assert "--allow-partial" in capsys.readouterr().err


def test_the_committed_reference_table_covers_the_space_and_replays() -> None:
    """experiments/results/search/searchref holds the records of every point of
    configs/search_space.xlsx (learning curves, no model files): a clone replays without training."""
    committed = ROOT / "experiments" / "results" / "search" / "searchref"
    loaded = bench.load_table(committed, ROOT / "configs" / "search_space.xlsx")
    assert len(loaded.entries) == len(loaded.assignments) == 64 and not loaded.missing
    assert loaded.epochs == 4 and len(loaded.repeats) >= 4  # a second seed of some points: the noise
    assert not list(committed.rglob("*.keras")) and not list(committed.rglob("*.tflite"))
    result = bench.replay(loaded, sampler="tpe", eta=2, seed=0)
    assert result.rows and result.charged <= loaded.reference_seconds * (1 + 1e-9)
    assert result.stopped, "halving at eta 2 stops some of the 64 models"
