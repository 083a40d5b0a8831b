"""Membership metrics on hand-made log2-prob arrays; per-token log-probs of real and hand-built models."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from canaryaudit.errors import RegistryError
from canaryaudit.extraction.metrics import (
    EPS_BITS,
    METRICS,
    MetricInputs,
    compute_metrics,
    lowercased_ids,
    metric_inputs,
    min_k_count,
    token_log2probs,
    window_rows,
    zlib_bits,
)
from canaryaudit.extraction.sampling import context_start
from canaryaudit.training.models import CausalLM, ModelSpec, build_model
from canaryaudit.training.tokenizers import CharTokenizer

TOKENIZER = CharTokenizer(sorted("abcdABCD "))
ALL = METRICS.names()


def lp(*values):
    return np.array(values, dtype=np.float64)


def scores(name, target, **kwargs):
    return compute_metrics([name], MetricInputs(target=target, **kwargs))[name]


# ------------------------------------------------------------------ each metric by hand (higher = memorized)


def test_perplexity_is_minus_mean_bits():
    assert scores("perplexity", [lp(-1, -2, -3), lp(-0.5, -0.5)]).tolist() == [-2.0, -0.5]


def test_reference_ratio_is_reference_over_target_log_perplexity():
    target = [lp(-1, -1), lp(-4, -4)]
    reference = [lp(-3, -1), lp(-2, -2)]
    assert scores("reference_ratio", target, reference=reference).tolist() == [2.0, 0.5]


def test_zlib_is_compressed_bits_over_total_target_bits():
    # zlib of b"" is 8 bytes (2 header, 2 empty final block, 4 Adler-32); of b"a" 9 bytes
    assert zlib_bits("") == 64 and zlib_bits("a") == 72
    target = [lp(-2, -2, -2, -2), lp(-1, -1, -1)]  # 8 and 3 bits in all
    assert scores("zlib", target, texts=["", "a"]).tolist() == pytest.approx([64 / 8, 72 / 3])


def test_lowercase_is_lowercased_over_original_log_perplexity():
    target = [lp(-1, -1), lp(-2, -2)]
    lowered = [lp(-3, -3, -3), lp(-1, -1)]  # token counts may differ: means are compared
    assert scores("lowercase", target, lowercase=lowered).tolist() == [3.0, 0.5]


def test_window_finds_a_low_loss_stretch_only_at_the_very_end():
    # windows of 2: means 5, 5, 5, 3, 1; the last window (1, 1) is the minimum
    assert scores("window", [lp(-5, -5, -5, -5, -1, -1)], window_tokens=2).tolist() == [-1.0]


def test_window_ties_shorter_sequence_and_exact_length():
    assert scores("window", [lp(-2, -1, -1, -2, -1, -1)], window_tokens=2).tolist() == [-1.0]
    assert scores("window", [lp(-1, -3)], window_tokens=5).tolist() == [-2.0]  # one window: the whole sequence
    assert scores("window", [lp(-1, -3, -2)], window_tokens=3).tolist() == [-2.0]


def test_min_k_mean_of_lowest_fraction():
    ten = lp(*range(-1, -11, -1))
    assert scores("min_k", [ten], min_k_fraction=0.2).tolist() == [-9.5]  # the lowest 2: -10, -9
    assert scores("min_k", [lp(-1, -4, -2, -3)], min_k_fraction=0.2).tolist() == [-4.0]  # floor(0.8) -> at least 1
    assert scores("min_k", [lp(-3, -1, -3, -2)], min_k_fraction=0.5).tolist() == [-3.0]  # tied lowest two


def test_min_k_count_rounding():
    assert [min_k_count(n, 0.2) for n in (1, 4, 5, 9, 10, 256)] == [1, 1, 1, 1, 2, 51]
    assert min_k_count(100, 0.29) == 29  # 100 * 0.29 = 28.999999999999996 in floats
    assert min_k_count(7, 0.5) == 3 and min_k_count(3, 1.0) == 3


def test_zero_log_perplexity_gives_finite_scores():
    zero = [lp(0.0, 0.0, 0.0), lp(0.0, 0.0, 0.0)]
    result = compute_metrics(ALL, MetricInputs(target=zero, texts=["abc", ""], reference=[lp(-1, -1), lp(0.0)],
                                               lowercase=[lp(-2), lp(0.0, 0.0)], window_tokens=2))
    for name, values in result.items():
        assert np.isfinite(values).all(), name
    assert result["reference_ratio"].tolist() == pytest.approx([1 / EPS_BITS, 0.0])
    assert result["lowercase"].tolist() == pytest.approx([2 / EPS_BITS, 0.0])
    assert result["perplexity"].tolist() == [0.0, 0.0]


def test_every_metric_ranks_a_memorized_like_sample_higher():
    memorized, fresh = lp(-0.1, -0.2, -0.1, -0.1), lp(-3, -4, -2, -5)
    result = compute_metrics(ALL, MetricInputs(
        target=[memorized, fresh], texts=["my ssn is 123-45-6789", "my ssn is 123-45-6789"],
        reference=[lp(-3, -3, -3), lp(-3, -3, -3)], lowercase=[lp(-2, -2), lp(-3, -3)], window_tokens=2))
    for name, (mem, new) in result.items():
        assert mem > new, name


def test_missing_inputs_unknown_metric_empty_sequence():
    with pytest.raises(ValueError, match="reference"):
        scores("reference_ratio", [lp(-1)])
    with pytest.raises(ValueError, match="lowercase"):
        scores("lowercase", [lp(-1)])
    with pytest.raises(ValueError, match="texts"):
        scores("zlib", [lp(-1)])
    with pytest.raises(ValueError, match="2 reference entries for 1"):
        scores("reference_ratio", [lp(-1)], reference=[lp(-1), lp(-1)])
    with pytest.raises(RegistryError, match="perplexity, reference_ratio, zlib, lowercase, window, min_k"):
        compute_metrics(["ppl"], MetricInputs(target=[lp(-1)]))
    with pytest.raises(ValueError, match="sequence 1 has no predicted token"):
        compute_metrics(["perplexity"], MetricInputs(target=[lp(-1), lp()]))


# ------------------------------------------------------------------ per-token log-probs


def test_window_rows_by_hand():
    # limit 4, shift 2: positions 1-4 from window [0, 4), 5-6 from [2, 6), 7-8 from [4, 8), 9 from [6, 9)
    assert window_rows(10, 4) == [(0, 4, 0), (2, 6, 2), (4, 8, 2), (6, 9, 2)]
    assert window_rows(5, 4) == [(0, 4, 0)]
    assert window_rows(6, 4) == [(0, 4, 0), (2, 5, 2)]
    assert window_rows(1, 4) == [] and window_rows(300, None) == [(0, 299, 0)]


class ContextCounter(nn.Module):
    """A fake transformers model (context 4): log2 Pr(token 1) = -(tokens in the context)."""

    config = SimpleNamespace(n_positions=4)

    def forward(self, input_ids, position_ids=None, use_cache=False, past_key_values=None):
        seen = torch.arange(1, input_ids.shape[1] + 1, dtype=torch.float64).expand(input_ids.shape[0], -1)
        p1 = 2.0 ** -seen
        return SimpleNamespace(logits=torch.stack([torch.log1p(-p1), torch.log(p1)], dim=-1))


def test_token_log2probs_contexts_by_hand_with_padding_and_batches():
    model = CausalLM(ContextCounter())
    # contexts for positions 1..9 with limit 4: 1, 2, 3, 4, then 3, 4, 3, 4, 3 tokens
    out = token_log2probs(model, [[1] * 10, [1] * 3, [1]], batch_size=2)
    assert out[0].tolist() == pytest.approx([-1, -2, -3, -4, -3, -4, -3, -4, -3])
    assert out[1].tolist() == pytest.approx([-1, -2])
    assert len(out[2]) == 0


@pytest.mark.parametrize("arch", ["gpt2", "lstm"])
def test_token_log2probs_equals_one_forward_per_token(arch):
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch=arch, vocab_size=TOKENIZER.vocab_size, layers=1, width=32, heads=2,
                                  context=8)).eval()
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, TOKENIZER.vocab_size, n).tolist() for n in (21, 5, 12)]
    fast = token_log2probs(model, sequences, batch_size=3)
    limit = 8 if arch == "gpt2" else None
    with torch.no_grad():
        for seq, got in zip(sequences, fast):
            slow = [torch.log_softmax(model(torch.tensor([seq[context_start(p, limit):p]]))[0, -1], -1)[seq[p]].item()
                    / math.log(2) for p in range(1, len(seq))]
            assert got == pytest.approx(slow, abs=1e-4)


def test_lowercased_ids_keep_eos_in_place():
    enc = TOKENIZER.encode
    assert lowercased_ids([*enc("AbC"), 0, *enc("D a")], TOKENIZER) == [*enc("abc"), 0, *enc("d a")]
    assert lowercased_ids([0, *enc("A")], TOKENIZER) == [0, *enc("a")]


def test_metric_inputs_runs_only_the_needed_passes():
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch="gpt2", vocab_size=TOKENIZER.vocab_size, layers=1, width=16, heads=2,
                                  context=8))
    sequences = [[0, *TOKENIZER.encode("Abc dA")], [0, *TOKENIZER.encode("abba cab dad")]]
    only = metric_inputs(["perplexity", "window"], model, TOKENIZER, sequences)
    assert only.reference is None and only.lowercase is None
    assert [len(a) for a in only.target] == [6, 12]
    torch.manual_seed(1)
    reference = build_model(ModelSpec(arch="gpt2", vocab_size=TOKENIZER.vocab_size, layers=1, width=16, heads=2,
                                      context=8))
    full = metric_inputs(ALL, model, TOKENIZER, sequences, ["Abc dA", "abba cab dad"], reference_model=reference)
    alone = metric_inputs(["perplexity"], reference, TOKENIZER, sequences)  # the reference scored as a target
    assert all(np.array_equal(r, a) for r, a in zip(full.reference, alone.target))
    assert not np.allclose(full.reference[1], full.target[1])  # another model, other scores
    assert np.allclose(full.lowercase[1], full.target[1])  # already lowercase
    assert not np.allclose(full.lowercase[0], full.target[0])
    assert all(np.isfinite(v).all() for v in compute_metrics(ALL, full).values())
    with pytest.raises(ValueError, match="reference model"):
        metric_inputs(["reference_ratio"], model, TOKENIZER, sequences)


def test_degenerate_metrics_lowercase_on_lowercase_text_and_constant_scores():
    from canaryaudit.extraction.metrics import LOWERCASE_UNCHANGED_SHARE, degenerate_metrics

    scores = {"lowercase": np.array([1.0, 1.0 + 1e-9, 0.99]), "zlib": np.array([0.3, 0.3, 0.3]),
              "perplexity": np.array([-1.0, -2.0, -3.0])}
    lower = ["all lowercase here", "and here", "also"]
    found = degenerate_metrics(scores, lower)
    assert set(found) == {"lowercase", "zlib"}
    assert "100% of the scored texts are unchanged by lowercasing" in found["lowercase"]
    assert found["zlib"] == "every scored text gets the same score"
    # 19 of 20 unchanged = 95 %: degenerate; 18 of 20 = 90 %: informative
    texts = ["x"] * 19 + ["Y"]
    assert 19 / 20 >= LOWERCASE_UNCHANGED_SHARE and "lowercase" in degenerate_metrics(
        {"lowercase": np.arange(20.0)}, texts)
    assert degenerate_metrics({"lowercase": np.arange(20.0)}, ["x"] * 18 + ["Y", "Z"]) == {}
    assert degenerate_metrics({"perplexity": np.arange(3.0)}, lower) == {}  # lowercase only judged when scored
