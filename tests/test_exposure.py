"""Exposure estimators against values computed by hand."""

import math

import numpy as np
import pytest
from scipy import stats

from canaryaudit.exposure.estimators import (
    exposure_extrapolation,
    exposure_from_rank,
    exposure_interpolation,
    fit_skew_normal,
)

REFS = np.arange(1, 17, dtype=float)  # 1..16: N = 16, log2 N = 4


@pytest.mark.parametrize(
    ("px", "expected"),
    [
        (0.0, 4.0),  # better than all: rank 1
        (0.1, 4.0),
        (3.5, 2.0),  # refs 1, 2, 3 are <= 3.5: rank 4, 4 - 2
        (3.0, 2.0),  # tie with 3 counts against the canary: rank 4
        (20.0, 4.0 - math.log2(17)),  # worse than all: rank 17, -0.0875
    ],
)
def test_interpolation_by_hand(px, expected):
    assert exposure_interpolation(px, REFS) == pytest.approx(expected)


def test_interpolation_vectorised_and_unsorted_references():
    refs = REFS[::-1].copy()
    got = exposure_interpolation(np.array([0.0, 0.1, 3.5, 20.0]), refs)
    assert np.allclose(got, [4.0, 4.0, 2.0, 4.0 - math.log2(17)])


def test_from_rank():
    assert exposure_from_rank(1, 1024) == 10.0
    assert exposure_from_rank(4, 16) == 2.0
    assert exposure_from_rank(16, 16) == 0.0
    with pytest.raises(ValueError):
        exposure_from_rank(0, 16)


def test_extrapolation_matches_scipy_on_moderate_values():
    rng = np.random.default_rng(0)
    refs = stats.skewnorm.rvs(3.0, loc=30.0, scale=4.0, size=5000, random_state=rng)
    fit = fit_skew_normal(refs)
    for px in (25.0, 30.0, 36.0):
        got, _ = exposure_extrapolation(px, refs, fit)
        expected = -math.log2(stats.skewnorm.cdf(px, fit.shape, fit.loc, fit.scale))
        assert got == pytest.approx(expected, rel=1e-6)


def test_extrapolation_is_finite_and_monotone_far_in_the_tail():
    rng = np.random.default_rng(1)
    refs = stats.skewnorm.rvs(2.0, loc=30.0, scale=3.0, size=2000, random_state=rng)
    values, fit = exposure_extrapolation(np.array([20.0, 10.0, 2.0, -50.0]), refs)
    assert np.all(np.isfinite(values))
    assert np.all(np.diff(values) > 0), values  # lower px = more exposed
    assert values[2] > 100  # a memorized canary is far beyond what float CDFs can hold
    assert stats.skewnorm.cdf(-50.0, fit.shape, fit.loc, fit.scale) == 0.0  # the underflow this avoids


def test_log_space_tail_integral_agrees_with_scipy_where_both_work():
    fit = fit_skew_normal(stats.skewnorm.rvs(2.0, loc=30.0, scale=3.0, size=2000, random_state=np.random.default_rng(2)))
    for x in (24.0, 15.0, 5.0):
        forced = fit.log_cdf(x, direct_limit=0.0)  # always the integral path
        assert forced == pytest.approx(float(stats.skewnorm.logcdf(x, fit.shape, fit.loc, fit.scale)), rel=1e-6)


def test_cap_at_space_flags_every_capped_value():
    from canaryaudit.exposure.estimators import cap_at_space

    values, capped = cap_at_space(np.array([43.65, 29.9, 12.0, 29.897352853986263]), 29.897352853986263)
    assert values.tolist() == [29.897352853986263, 29.897352853986263, 12.0, 29.897352853986263]
    assert capped.tolist() == [True, True, False, False]  # exactly log2|R| is a value, not a cap


def test_interpolation_saturates_only_when_likelier_than_every_reference():
    from canaryaudit.exposure.estimators import interpolation_saturated

    refs = np.array([3.0, 4.0, 5.0, 6.0])
    px = np.array([2.9, 3.0, 4.5])
    assert interpolation_saturated(px, refs).tolist() == [True, False, False]  # a tie with the best is rank 2
    values = exposure_interpolation(px, refs)
    assert values[0] == pytest.approx(np.log2(4)) and values[1] == pytest.approx(np.log2(4) - 1)
