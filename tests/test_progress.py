"""progress.py: the study-level ETA a worker of several prints (no TensorFlow, no training)."""

from __future__ import annotations

import pytest

from bcpareto.progress import clock, study_eta


def test_nothing_finished_gives_no_eta_and_nothing_left_gives_zero() -> None:
    assert study_eta([], [10, 20], workers=2) is None
    assert study_eta([(10, 30.0)], [], workers=2) == 0


def test_models_left_are_predicted_on_the_line_of_seconds_against_multiply_adds() -> None:
    done = [(1_000, 10.0), (3_000, 30.0)]  # 10 s per 1,000 multiply-adds, through the origin
    assert study_eta(done, [2_000, 5_000], workers=1) == pytest.approx(20.0 + 50.0)
    assert study_eta(done, [2_000, 5_000], workers=2) == pytest.approx(35.0)  # shared by the workers


def test_one_size_finished_predicts_its_mean_and_never_less_than_the_fastest() -> None:
    assert study_eta([(1_000, 10.0), (1_000, 14.0)], [1_000, 9_000], workers=1) == pytest.approx(24.0)
    # a line falling with size (noise) is not extrapolated downwards: the fastest model done is the floor
    done = [(1_000, 30.0), (2_000, 10.0)]
    assert study_eta(done, [100_000], workers=1) == pytest.approx(20.0)
    assert study_eta([(1_000, 10.0), (3_000, 30.0)], [0], workers=1) == pytest.approx(10.0)


def test_clock_reads_hours_minutes_seconds() -> None:
    assert clock(3_725.9) == "1:02:05" and clock(-5) == "0:00:00"
