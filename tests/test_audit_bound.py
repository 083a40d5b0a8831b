"""One-run epsilon lower bound (Steinke, Nasr, Jagielski 2023) against closed forms and hand counts."""

import math

import numpy as np
import pytest

from canaryaudit.privacy.empirical_epsilon import (
    choose_guesses,
    empirical_epsilon,
    epsilon_ceiling_one_run,
    epsilon_lower_bound_one_run,
    p_value_one_run,
)


def all_right_closed_form(r: int, p: float) -> float:
    """delta = 0, v = r: q^r = p with q = e^eps / (1 + e^eps), so eps = -ln(p^(-1/r) - 1), floored at 0."""
    return max(0.0, -math.log(p ** (-1.0 / r) - 1.0))


@pytest.mark.parametrize("r", [1, 4, 5, 16, 100])
@pytest.mark.parametrize("p", [0.05, 0.01])
def test_every_guess_right_matches_closed_form(r, p):
    expected = all_right_closed_form(r, p)
    assert epsilon_lower_bound_one_run(200, r, r, 0.0, p) == pytest.approx(expected, abs=1e-9)
    assert epsilon_ceiling_one_run(200, r, 0.0, p) == pytest.approx(expected, abs=1e-9)


def test_known_values():
    # r = 16, p = 0.05: -ln(20^(1/16) - 1) = -ln(0.205889...) = 1.58032
    assert epsilon_ceiling_one_run(64, 16, 0.0, 0.05) == pytest.approx(1.580323, abs=1e-6)
    # r = 1 or 4 cannot reach 95 % confidence: q = 0.05^(1/r) is below 1/2 (eps < 0); 0.5^4 = 0.0625 > 0.05
    assert epsilon_ceiling_one_run(64, 1, 0.0, 0.05) == 0.0
    assert epsilon_ceiling_one_run(64, 4, 0.0, 0.05) == 0.0


def test_one_wrong_guess_matches_closed_form():
    # delta = 0, v = r - 1: P[Bin(r, q) >= r - 1] = q^r + r q^(r-1) (1 - q) must equal p at the bound
    r, p = 16, 0.05
    eps = epsilon_lower_bound_one_run(64, r, r - 1, 0.0, p)
    q = math.exp(eps) / (1 + math.exp(eps))
    assert q**r + r * q ** (r - 1) * (1 - q) == pytest.approx(p, abs=1e-10)
    assert 0 < eps < all_right_closed_form(r, p)


def test_p_value_by_hand_with_delta():
    # m = 2, r = v = 2, eps = ln 3 -> q = 3/4. f(2) = 9/16; pmf(1) = 3/8, pmf(0) = 1/16.
    # max over i of (f(2 - i) - f(2)) / i = max(3/8, (3/8 + 1/16) / 2 = 7/32) = 3/8.
    # p = 9/16 + 2 * 2 * 0.01 * 3/8 = 0.5775
    assert p_value_one_run(2, 2, 2, math.log(3), 0.01) == pytest.approx(0.5775, abs=1e-12)
    assert p_value_one_run(2, 2, 2, math.log(3), 0.0) == pytest.approx(9 / 16, abs=1e-12)
    # v = 0: "at least 0 correct" is certain
    assert p_value_one_run(2, 2, 0, 1.0, 0.01) == 1.0


@pytest.mark.parametrize("delta", [0.0, 1e-5, 1e-3])
def test_monotone_in_correct_guesses(delta):
    bounds = [epsilon_lower_bound_one_run(64, 16, v, delta, 0.05) for v in range(17)]
    assert all(later >= earlier for earlier, later in zip(bounds, bounds[1:]))
    assert bounds[-1] > 0


def test_zero_at_or_below_chance_and_without_guesses():
    for v in range(0, 9):  # r = 16: v = 8 is chance
        assert epsilon_lower_bound_one_run(64, 16, v, 0.0, 0.05) == 0.0
    # even at a confidence below 50 % (p = 0.6) chance-level guessing is no evidence
    assert epsilon_lower_bound_one_run(64, 16, 8, 0.0, 0.6) == 0.0
    assert epsilon_lower_bound_one_run(64, 0, 0, 0.0, 0.05) == 0.0
    assert epsilon_ceiling_one_run(64, 0, 1e-5, 0.05) == 0.0


def test_delta_never_raises_the_bound():
    for v in range(17):
        without = epsilon_lower_bound_one_run(64, 16, v, 0.0, 0.05)
        assert epsilon_lower_bound_one_run(64, 16, v, 1e-5, 0.05) <= without
        assert epsilon_lower_bound_one_run(64, 16, v, 1e-3, 0.05) <= without
    assert epsilon_ceiling_one_run(64, 16, 1e-3, 0.05) < epsilon_ceiling_one_run(64, 16, 0.0, 0.05)


def test_bound_with_delta_is_where_the_p_value_reaches_p():
    m, r, v, delta, p = 64, 16, 15, 1e-3, 0.05
    eps = epsilon_lower_bound_one_run(m, r, v, delta, p)
    assert p_value_one_run(m, r, v, eps, delta) == pytest.approx(p, abs=1e-9)
    assert p_value_one_run(m, r, v, eps + 0.01, delta) > p


@pytest.mark.parametrize(
    ("m", "r", "v", "delta", "p"),
    [
        (10, 5, 6, 0.0, 0.05),  # v > r
        (10, 11, 3, 0.0, 0.05),  # r > m
        (10, 5, -1, 0.0, 0.05),  # v < 0
        (10, 5, 3, 1.0, 0.05),  # delta must be < 1
        (10, 5, 3, -1e-9, 0.05),
        (10, 5, 3, float("nan"), 0.05),
        (10, 5, 3, 0.0, 0.0),  # p in (0, 1)
        (10, 5, 3, 0.0, 1.0),
        (10, 5.5, 3, 0.0, 0.05),  # counts are integers
    ],
)
def test_argument_validation(m, r, v, delta, p):
    with pytest.raises(ValueError):
        epsilon_lower_bound_one_run(m, r, v, delta, p)


def test_p_value_rejects_negative_eps():
    with pytest.raises(ValueError, match="eps"):
        p_value_one_run(10, 5, 3, -0.1, 0.0)


# ranked by score descending, then index ascending: 0 (5), 1 (3), 2 (3), 3 (3), 4 (1), 5 (1)
TIE_SCORES = np.array([5.0, 3.0, 3.0, 3.0, 1.0, 1.0])
TIE_INCLUDED = np.array([True, False, True, False, False, True])


def test_choose_guesses_with_ties():
    got = choose_guesses(TIE_SCORES, TIE_INCLUDED, 2, 1)
    # top 2: index 0, then index 1 wins the three-way tie at 3; bottom 1: index 5 loses the tie at 1
    assert got.guessed_included == (0, 1)
    assert got.guessed_excluded == (5,)
    # 0 included (right), 1 held out (wrong), 5 included (wrong)
    assert (got.guesses, got.correct) == (3, 1)


def test_choose_guesses_all_and_none():
    every = choose_guesses(TIE_SCORES, TIE_INCLUDED, 3, 3)
    assert every.guessed_included == (0, 1, 2) and every.guessed_excluded == (3, 4, 5)
    # right: 0, 2 (included) and 3, 4 (held out)
    assert (every.guesses, every.correct) == (6, 4)
    none = choose_guesses(TIE_SCORES, TIE_INCLUDED, 0, 0)
    assert (none.guesses, none.correct, none.guessed_included, none.guessed_excluded) == (0, 0, (), ())


def test_choose_guesses_validation():
    with pytest.raises(ValueError, match="sum"):
        choose_guesses(TIE_SCORES, TIE_INCLUDED, 4, 3)
    with pytest.raises(ValueError):
        choose_guesses(TIE_SCORES, TIE_INCLUDED, -1, 0)
    with pytest.raises(ValueError, match="equally long"):
        choose_guesses(TIE_SCORES, TIE_INCLUDED[:-1], 1, 1)
    with pytest.raises(ValueError, match="NaN"):
        choose_guesses(np.array([1.0, np.nan]), np.array([True, False]), 1, 1)


def perfectly_separated(m: int) -> tuple[np.ndarray, np.ndarray]:
    included = np.arange(m) % 2 == 0
    return np.where(included, 10.0, -10.0), included


def test_empirical_epsilon_block():
    scores, included = perfectly_separated(16)
    block = empirical_epsilon(scores, included, 8, 8, 0.0, 0.05, accountant_epsilon=1.0)
    assert (block["canaries"], block["guesses"], block["correct"]) == (16, 16, 16)
    assert block["epsilon_lower_bound"] == pytest.approx(1.580323, abs=1e-6)
    assert block["ceiling"] == pytest.approx(1.580323, abs=1e-6)
    assert (block["delta"], block["p"], block["accountant_epsilon"]) == (0.0, 0.05, 1.0)
    assert block["exceeds_accountant"] is True
    assert "exceeds the accountant" in block["warning"]
    assert block["score"] == "-px_bits"


def test_empirical_epsilon_within_accountant_and_non_private():
    scores, included = perfectly_separated(16)
    within = empirical_epsilon(scores, included, 8, 8, 0.0, 0.05, accountant_epsilon=8.0)
    assert within["exceeds_accountant"] is False and within["warning"] is None
    for non_private in (None, math.inf):
        block = empirical_epsilon(scores, included, 8, 8, 0.0, 0.05, accountant_epsilon=non_private)
        assert block["accountant_epsilon"] is None
        assert block["exceeds_accountant"] is None and block["warning"] is None


def test_empirical_epsilon_reversed_scores_give_zero():
    scores, included = perfectly_separated(16)
    block = empirical_epsilon(-scores, included, 4, 4, 1e-5, 0.05)
    assert block["correct"] == 0
    assert block["epsilon_lower_bound"] == 0.0
    # 8 guesses: -ln(20^(1/8) - 1) = 0.7897 at delta = 0; delta = 1e-5 lowers it slightly
    assert 0.78 < block["ceiling"] <= all_right_closed_form(8, 0.05)
