"""Membership-inference evaluation against values counted by hand."""

import numpy as np
import pytest

from canaryaudit.privacy.membership import (
    auc_of_resamples,
    bootstrap_ci,
    bootstrap_cis,
    evaluate_membership,
    membership_documents,
    roc_auc,
    roc_curve,
    roc_points,
    roc_rows,
    tpr_at_fpr,
    tpr_at_fpr_of_resamples,
)

# members [3, 2, 2], non-members [2, 1]; of the 6 pairs: 3>2, 3>1, 2=2, 2>1, 2=2, 2>1 -> (4 + 2 * 1/2) / 6
TIE_SCORES = np.array([3.0, 2.0, 2.0, 2.0, 1.0])
TIE_LABELS = np.array([1, 1, 1, 0, 0])


def test_auc_by_hand_with_ties():
    assert roc_auc(TIE_SCORES, TIE_LABELS) == pytest.approx(5 / 6)
    # order of the inputs does not matter
    assert roc_auc(TIE_SCORES[::-1], TIE_LABELS[::-1]) == pytest.approx(5 / 6)


def test_auc_extremes():
    labels = np.array([1, 1, 0, 0, 0])
    assert roc_auc(np.array([5.0, 4.0, 3.0, 2.0, 1.0]), labels) == 1.0
    assert roc_auc(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), labels) == 0.0
    assert roc_auc(np.full(5, 7.0), labels) == 0.5
    assert roc_auc(np.array([1.0, 0.0]), np.array([True, False])) == 1.0


def test_auc_of_resamples_row_by_row():
    members = np.array([[3.0, 2.0, 2.0], [1.0, 1.0, 1.0]])
    nonmembers = np.array([[2.0, 1.0], [1.0, 2.0]])
    # row 2: each member ties one non-member (1/2) and loses to the other (0): 3 * 1/2 / 6
    assert np.allclose(auc_of_resamples(members, nonmembers), [5 / 6, 0.25])


def test_roc_curve_moves_through_tie_groups_together():
    fpr, tpr = roc_curve(TIE_SCORES, TIE_LABELS)
    # thresholds inf, 3, 2, 1: the tie at 2 (two members, one non-member) is one step
    assert np.allclose(fpr, [0.0, 0.0, 0.5, 1.0])
    assert np.allclose(tpr, [0.0, 1 / 3, 1.0, 1.0])


def test_input_validation():
    with pytest.raises(ValueError, match="members and non-members"):
        roc_auc(np.array([1.0, 2.0]), np.array([1, 1]))
    with pytest.raises(ValueError, match="0 .* or 1"):
        roc_auc(np.array([1.0, 2.0]), np.array([1, 2]))
    with pytest.raises(ValueError, match="NaN or infinity"):
        roc_auc(np.array([1.0, np.inf]), np.array([1, 0]))
    with pytest.raises(ValueError, match="equally long"):
        roc_curve(np.array([1.0, 2.0]), np.array([1, 0, 0]))


# a hand-built curve: vertical steps at FPR 0 and 0.1
CURVE_FPR = np.array([0.0, 0.0, 0.1, 0.1, 0.3, 1.0])
CURVE_TPR = np.array([0.0, 0.2, 0.2, 0.5, 0.7, 1.0])


@pytest.mark.parametrize(
    ("target", "expected"),
    [(0.0, 0.2), (0.05, 0.2), (0.1, 0.5), (0.29, 0.5), (0.3, 0.7), (0.99, 0.7), (1.0, 1.0)],
)
def test_tpr_at_fpr_on_hand_built_curve(target, expected):
    assert tpr_at_fpr(CURVE_FPR, CURVE_TPR, target) == expected


def test_tpr_at_fpr_validation():
    with pytest.raises(ValueError, match="FPR target"):
        tpr_at_fpr(CURVE_FPR, CURVE_TPR, 1.5)
    with pytest.raises(ValueError, match="start at"):
        tpr_at_fpr(np.array([0.5, 1.0]), np.array([0.5, 1.0]), 0.1)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (0.0, 0.25),  # no false positive: threshold above 4.5 keeps only member 5
        (0.25, 0.5),  # one false positive (4.5): threshold 4 keeps 5 and 4
        (0.49, 0.5),
        (0.5, 1.0),  # two (4.5 and 3): threshold 2 keeps every member
        (1.0, 1.0),
    ],
)
def test_tpr_at_fpr_of_resamples_by_hand(target, expected):
    members = np.array([[5.0, 4.0, 3.0, 2.0]])
    nonmembers = np.array([[4.5, 3.0, 1.0, 0.0]])
    assert tpr_at_fpr_of_resamples(target)(members, nonmembers)[0] == expected
    scores = np.concatenate([members[0], nonmembers[0]])
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    assert tpr_at_fpr(*roc_curve(scores, labels), target) == expected


def test_tpr_at_fpr_of_resamples_ties_and_rounding():
    # the member ties the only non-member above 1: at FPR 0 nothing is detected
    assert tpr_at_fpr_of_resamples(0.0)(np.array([[3.0, 3.0]]), np.array([[3.0, 1.0]]))[0] == 0.0
    # 0.29 * 100 = 28.999999999999996 in floating point; 29 false positives must still be allowed
    nonmembers = np.arange(100, dtype=float)[None, :]  # 29 of them (71..99) lie above 70.5
    assert tpr_at_fpr_of_resamples(0.29)(np.array([[70.5]]), nonmembers)[0] == 1.0
    assert tpr_at_fpr_of_resamples(0.28)(np.array([[70.5]]), nonmembers)[0] == 0.0


def separable_sample(n: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat([1, 0], n)
    return rng.normal(size=2 * n).round(1) + 0.8 * labels, labels  # rounded: plenty of ties


def test_bootstrap_ci_contains_estimate_and_is_seeded():
    scores, labels = separable_sample()
    low, high = bootstrap_ci(scores, labels, auc_of_resamples, n_boot=500, seed=3)
    assert 0.0 <= low < roc_auc(scores, labels) < high <= 1.0
    assert bootstrap_ci(scores, labels, auc_of_resamples, n_boot=500, seed=3) == (low, high)
    assert bootstrap_ci(scores, labels, auc_of_resamples, n_boot=500, seed=4) != (low, high)
    wider = bootstrap_ci(scores, labels, auc_of_resamples, n_boot=500, seed=3, level=0.99)
    assert wider[0] <= low and wider[1] >= high


def test_bootstrap_is_stratified():
    # perfectly separated: every resample that keeps both classes has AUC 1
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    labels = np.array([1, 1, 0, 0, 0])
    assert bootstrap_ci(scores, labels, auc_of_resamples, n_boot=200, seed=0) == (1.0, 1.0)


def test_bootstrap_intervals_equal_a_per_resample_loop_with_sklearn():
    """The vectorised resample statistics against a second path: the same resamples drawn again here
    (members then non-members, chunk by chunk, as bootstrap_cis draws them), each scored by sklearn."""
    from sklearn.metrics import roc_auc_score

    from canaryaudit.privacy import membership as mia

    scores, labels = separable_sample(n=300)
    got = bootstrap_cis(scores, labels, {"auc": auc_of_resamples}, n_boot=400, seed=3)["auc"]
    members, nonmembers = scores[labels == 1], scores[labels == 0]
    rng = np.random.default_rng(3)
    chunk = max(1, mia._CHUNK_SCORES // scores.size)
    aucs = []
    for start in range(0, 400, chunk):
        rows = min(chunk, 400 - start)
        m = members[rng.integers(0, members.size, size=(rows, members.size))]
        n = nonmembers[rng.integers(0, nonmembers.size, size=(rows, nonmembers.size))]
        aucs += [roc_auc_score(np.r_[np.ones(members.size), np.zeros(nonmembers.size)], np.r_[a, b])
                 for a, b in zip(m, n)]
    assert got == pytest.approx(tuple(np.quantile(aucs, [0.025, 0.975])), abs=1e-12)


def test_bootstrap_validation():
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(TIE_SCORES, TIE_LABELS, auc_of_resamples, n_boot=0, seed=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(TIE_SCORES, TIE_LABELS, auc_of_resamples, n_boot=10, seed=0, level=1.0)


def test_roc_points_downsamples_a_long_curve():
    scores, labels = separable_sample(n=2000, seed=1)
    scores = scores + np.random.default_rng(2).normal(scale=1e-3, size=scores.size)  # distinct: ~4000 points
    fpr, tpr = roc_curve(scores, labels)
    assert fpr.size > 1000
    small_fpr, small_tpr = roc_points(fpr, tpr, max_points=200)
    assert 10 < small_fpr.size <= 200
    assert (small_fpr[0], small_tpr[0]) == (0.0, 0.0)
    assert (small_fpr[-1], small_tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(small_fpr) >= 0) and np.all(np.diff(small_tpr) >= 0)
    # the low-FPR region keeps its detail: exact TPR at FPR 0, 0.1 % and 1 %
    for target in (0.0, 0.001, 0.01):
        assert tpr_at_fpr(small_fpr, small_tpr, target) == tpr_at_fpr(fpr, tpr, target)


def test_roc_points_short_curve_unchanged_and_validation():
    small_fpr, small_tpr = roc_points(CURVE_FPR, CURVE_TPR, max_points=200)
    assert np.array_equal(small_fpr, CURVE_FPR) and np.array_equal(small_tpr, CURVE_TPR)
    with pytest.raises(ValueError, match="max_points"):
        roc_points(CURVE_FPR, CURVE_TPR, max_points=3)


def test_evaluate_membership_block_by_hand():
    block = evaluate_membership({"perplexity": TIE_SCORES, "flipped": -TIE_SCORES}, TIE_LABELS, n_boot=50, seed=0)
    assert (block["members"], block["nonmembers"]) == (3, 2)
    assert block["low_fpr_resolution"] == 0.5
    assert "2 non-members" in block["low_fpr_note"]
    metric = block["metrics"]["perplexity"]
    assert metric["auc"] == pytest.approx(5 / 6)
    # with 2 non-members both low-FPR targets allow no false positive: only member 3 beats non-member 2
    assert metric["tpr_at_1pct_fpr"] == pytest.approx(1 / 3)
    assert metric["tpr_at_0_1pct_fpr"] == pytest.approx(1 / 3)
    assert block["metrics"]["flipped"]["auc"] == pytest.approx(1 / 6)
    for name in ("auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr"):
        low, high = metric[f"{name}_ci"]
        assert 0.0 <= low <= high <= 1.0


def test_evaluate_membership_enough_nonmembers_has_no_note():
    scores, labels = separable_sample(n=1000)
    block = evaluate_membership({"perplexity": scores}, labels, n_boot=20, seed=0)
    assert block["low_fpr_resolution"] == 0.001
    assert block["low_fpr_note"] is None


def test_roc_rows_for_the_plot():
    rows = roc_rows({"a": TIE_SCORES, "b": -TIE_SCORES}, TIE_LABELS)
    assert [row["metric"] for row in rows] == ["a"] * 4 + ["b"] * 4
    assert rows[1] == {"metric": "a", "fpr": 0.0, "tpr": pytest.approx(1 / 3)}


def codes(text: str) -> list[int]:
    return [ord(character) for character in text]


MEMBER_TEXTS = ["abcdefg", "hij", "kl", "mnopqr"]  # 3-token segments: abc def | hij | - | mno pqr
NONMEMBER_TEXTS = ["xyz12", ""]  # xyz


def test_membership_documents_segments_equal_counts():
    members, nonmembers = membership_documents(MEMBER_TEXTS, NONMEMBER_TEXTS, codes, tokens=3, max_samples=10, seed=0)
    # one non-member segment exists (xyz), so one member segment is drawn too: equal counts
    assert nonmembers == [codes("xyz")]
    assert len(members) == 1 and members[0] in [codes(s) for s in ("abc", "def", "hij", "mno", "pqr")]
    wide = NONMEMBER_TEXTS + ["0123456789abcdefghij"]  # 7 non-member segments now
    members, nonmembers = membership_documents(MEMBER_TEXTS, wide, codes, tokens=3, max_samples=10, seed=0)
    assert members == [codes(s) for s in ("abc", "def", "hij", "mno", "pqr")]  # all five, in document order
    assert len(nonmembers) == 5


def test_membership_documents_samples_are_seeded():
    more = NONMEMBER_TEXTS + ["0123456789"]

    def sample(seed, nonmember_texts=more):
        return membership_documents(MEMBER_TEXTS, nonmember_texts, codes, tokens=3, max_samples=2, seed=seed)

    members, nonmembers = sample(5)
    assert len(members) == 2 and len(nonmembers) == 2
    assert all(len(segment) == 3 for segment in members + nonmembers)
    all_segments = [codes(s) for s in ("abc", "def", "hij", "mno", "pqr")]
    assert all(segment in all_segments for segment in members) and members[0] != members[1]
    assert sample(5) == (members, nonmembers)
    assert len({tuple(map(tuple, sample(seed)[0])) for seed in range(20)}) > 1  # seeds do matter
    # each side has its own stream: more non-member text (same count drawn) leaves the member sample alone
    assert sample(5, more + ["abcdefghijkl"])[0] == members


def test_membership_documents_validation():
    with pytest.raises(ValueError, match="tokens"):
        membership_documents(MEMBER_TEXTS, NONMEMBER_TEXTS, codes, tokens=0, max_samples=2, seed=0)
    with pytest.raises(ValueError, match="max_samples"):
        membership_documents(MEMBER_TEXTS, NONMEMBER_TEXTS, codes, tokens=3, max_samples=-1, seed=0)
