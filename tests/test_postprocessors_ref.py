"""Checks of the reference post-processors themselves (``tests/helpers/postprocessors_ref.py``),
worked out by hand."""

from __future__ import annotations

import math

from .helpers.postprocessors_ref import (
    collapse_before,
    linear_at,
    loess_at,
    st_jitter,
    st_kurtosis,
    st_mean,
    st_median,
    st_popvar,
    st_skewness,
    st_std,
    st_var,
)


def test_reference_statistics_by_hand() -> None:
    assert st_mean([1.0, math.nan, 3.0]) == 2.0
    assert math.isnan(st_mean([math.nan]))
    assert st_var([1.0, 2.0, 3.0, 4.0]) == 5 / 3
    assert st_popvar([1.0, 2.0, 3.0, 4.0]) == 1.25
    assert st_std([7.0]) == 0.0
    assert st_median([3.0, 1.0, 2.0]) == 2.0
    assert st_median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert st_skewness([1.0, 2.0, 3.0]) == 0.0
    assert math.isnan(st_skewness([1.0, 1.0, 1.0]))
    # sample excess kurtosis of 1..4 (as Excel's KURT): -1.2
    assert abs(st_kurtosis([1.0, 2.0, 3.0, 4.0]) + 1.2) < 1e-12
    assert st_jitter([1.0, 3.0]) == math.sqrt(2) / 2


def test_reference_interpolations_by_hand() -> None:
    assert linear_at([0.0, 10.0], [0.0, 5.0], 4.0) == 2.0
    assert linear_at([0.0, 10.0], [1.0, 5.0], 11.0) == 1.0  # outside: first value
    assert linear_at([0.0], [3.0], 0.0) == 3.0
    xs = [float(i) for i in range(12)]
    assert abs(loess_at(xs, [2 * x + 1 for x in xs], 5.5) - 12.0) < 1e-9
    assert loess_at(xs[:6], [2 * x for x in xs[:6]], 2.0) == 0.0  # < 7 points: first value


def test_collapse_before_keeps_the_latest_early_row() -> None:
    rows = [(1, 0, 1, 0, 0, None), (2, 0, 2, 0, 0, None), (5, 0, 3, 0, 0, None)]
    assert collapse_before(rows, (3, 0)) == rows[1:]
    assert collapse_before(rows[:2], (3, 0)) == rows[1:2]
