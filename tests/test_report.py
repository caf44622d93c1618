"""report_to_dict: the plot report as JSON (`bcpareto plot --json`)."""

from __future__ import annotations

import json

import pytest

from bcpareto.report import plot_report, report_to_dict

from .test_plot_cli import SEED_10, SIZE, read_rows, write_ours


def test_report_to_dict_is_strict_json_holding_the_front_hypervolumes_and_outputs(tmp_path):
    ours = write_ours(tmp_path / "metrics_log.csv", n=30, blank_latency_rows=range(30))
    out = tmp_path / "out"
    report = plot_report([ours, SEED_10], out_dir=out)  # the seed log has no test_accuracy
    back = json.loads(json.dumps(report_to_dict(report), allow_nan=False))

    assert back["objectives"] == [{"column": SIZE, "direction": "min"},
                                  {"column": "val_accuracy", "direction": "max"}]
    assert back["reference_point"]["default"] is True
    assert back["reference_point"]["values"] == pytest.approx(
        {SIZE: report.ref[0], "val_accuracy": report.ref[1]})
    assert [s["path"] for s in back["sources"]] == [str(ours), str(SEED_10)]
    for mine, source in zip(back["sources"], report.sources):
        assert mine["hypervolume"] == pytest.approx(source.hypervolume)
        assert (mine["n_rows"], mine["n_front"]) == (len(source.values), int(source.front.sum()))
    assert back["overall_hypervolume"] == pytest.approx(report.overall_hypervolume)

    written = read_rows(out / "pareto_front.csv")  # the same rows as pareto_front.csv
    assert [(r["source"], r["row"]) for r in back["front"]] == [
        (w["source"], int(w["row"])) for w in written]
    for row in back["front"]:
        assert isinstance(row["overall_front"], bool)
        if row["source"] == str(ours):
            assert row["latency_ms"] is None  # a blank cell: null, not NaN
            assert isinstance(row["grid_id"], int) and isinstance(row[SIZE], float)
    assert back["outputs"] == [str(out / name) for name in
                               ("pareto_front.png", "pareto_front.svg", "pareto_front.csv")]


def test_one_csv_has_no_overall_hypervolume(tmp_path):
    report = plot_report([write_ours(tmp_path / "m.csv")], out_dir=tmp_path / "out",
                         ref=[20, 0])
    data = report_to_dict(report)
    assert data["overall_hypervolume"] is None
    assert data["reference_point"] == {"values": {SIZE: 20.0, "val_accuracy": 0.0},
                                       "default": False}
