"""Sampling strategies: the distributions by hand, prompts, context windows, cache = recompute, determinism."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from canaryaudit.errors import RegistryError
from canaryaudit.extraction.sampling import (
    EOS_TEXT,
    STRATEGIES,
    KVCacheDecoder,
    LSTMStateDecoder,
    RecomputeDecoder,
    StrategyOptions,
    context_start,
    corpus_prefixes,
    decayed_temperature,
    decode_with_eos,
    generate_samples,
    sample_text,
    top_n_probs,
)
from canaryaudit.training.models import ModelSpec, build_model
from canaryaudit.training.tokenizers import CharTokenizer

TOKENIZER = CharTokenizer(sorted("abcdefghij ABC"))  # ids: 0 <eos>, 1 <unk>, 2 ' ', 3 'A', ...
CORPUS = ["abc def ghij", "jihgf edcba abc", "ab"]  # "ab" is too short for 5-token prompts


class FixedLogits(nn.Module):
    """Not a transformers or LSTM model: the same logits at every position (the recompute path)."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*input_ids.shape, -1).clone()


def tiny(arch: str, context: int = 8) -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelSpec(arch=arch, vocab_size=TOKENIZER.vocab_size, layers=1, width=32, heads=2,
                                 context=context)).eval()


# ------------------------------------------------------------------ distributions, by hand


def test_top_n_keeps_the_n_largest_renormalised():
    probs = top_n_probs(torch.tensor([[3.0, 1.0, 2.0, 0.0]]), 2)[0]
    z = math.exp(3) + math.exp(2)
    assert probs.tolist() == pytest.approx([math.exp(3) / z, 0.0, math.exp(2) / z, 0.0])


def test_top_n_keeps_ties_with_the_nth_and_n_at_least_vocab_is_plain_softmax():
    assert top_n_probs(torch.tensor([[1.0, 2.0, 2.0, 0.0]]), 2)[0].tolist() == pytest.approx([0, 0.5, 0.5, 0])
    assert top_n_probs(torch.tensor([[2.0, 2.0, 0.0]]), 1)[0].tolist() == pytest.approx([0.5, 0.5, 0])
    assert top_n_probs(torch.tensor([[0.0, math.log(3.0)]]), 5)[0].tolist() == pytest.approx([0.25, 0.75])


@pytest.mark.parametrize(("step", "temperature"), [(0, 10.0), (10, 5.5), (19, 1.45), (20, 1.0), (100, 1.0)])
def test_temperature_schedule_by_hand(step, temperature):
    # 10 + (1 - 10) * step / 20 up to step 20, then 1
    assert decayed_temperature(torch.tensor([step]), 10.0, 1.0, 20).item() == pytest.approx(temperature)


def test_temperature_schedule_is_applied_to_the_logits():
    """Row logits [0, T ln 2]: softmax(logits / T) = [1/3, 2/3] iff temperature T is applied at that step."""
    steps = torch.tensor([0, 10, 19, 20, 100])
    hand_t = torch.tensor([10.0, 5.5, 1.45, 1.0, 1.0])
    logits = torch.stack([torch.zeros(5), hand_t * math.log(2.0)], dim=1)
    probs = STRATEGIES.get("temperature_decay").probs(logits, steps, StrategyOptions())
    assert probs.flatten().tolist() == pytest.approx([1 / 3, 2 / 3] * 5, abs=1e-6)


def test_no_decay_is_constant_end_temperature():
    assert decayed_temperature(torch.tensor([0, 5]), 10.0, 2.0, 0).tolist() == [2.0, 2.0]


def test_generation_samples_the_scheduled_distribution():
    """Logits [0, -inf-ish, 10 ln 2]: token 2 has probability 2^(10/T) / (1 + 2^(10/T)) at temperature T."""
    model = FixedLogits([0.0, -1e4, 10 * math.log(2.0)])
    samples = generate_samples(model, TOKENIZER, "temperature_decay", 3000, 21, 3000, 5, "cpu", progress=False)
    generated = np.array([s.token_ids[1:] for s in samples])
    for step, temperature in [(0, 10.0), (10, 5.5), (20, 1.0)]:
        expected = 2 ** (10 / temperature) / (1 + 2 ** (10 / temperature))  # 2/3, 0.779, 0.999
        assert (generated[:, step] == 2).mean() == pytest.approx(expected, abs=0.03)
    assert not (generated == 1).any()


def test_top_n_generation_never_leaves_the_top_n():
    model = FixedLogits([0.0, 1.0, 2.0, 3.0, 4.0])
    samples = generate_samples(model, TOKENIZER, "top_n", 500, 10, 256, 1, "cpu", top_n=2, progress=False)
    generated = np.array([s.token_ids[1:] for s in samples])
    assert set(np.unique(generated)) == {3, 4}
    assert (generated == 4).mean() == pytest.approx(math.e / (1 + math.e), abs=0.03)  # e^4 / (e^3 + e^4)


# ------------------------------------------------------------------ prompts


def test_corpus_prefixes_are_spans_of_eligible_documents_of_min_to_max_tokens():
    corpus = tuple(tuple(TOKENIZER.encode(t)) for t in CORPUS)
    options = StrategyOptions(corpus=corpus, prefix_tokens=(5, 10))
    prompts = corpus_prefixes(300, np.random.default_rng(0), options)
    lengths = {len(p) for p in prompts}
    assert lengths == set(range(5, 11))
    for prompt in prompts:
        assert any(doc[i : i + len(prompt)] == tuple(prompt) for doc in corpus[:2] for i in range(len(doc)))
    assert len({tuple(p) for p in prompts}) > 60  # each sample draws its own (84 spans exist)


def test_prefix_length_capped_by_document_and_error_without_eligible_documents():
    options = StrategyOptions(corpus=(tuple(TOKENIZER.encode("abcdef")),), prefix_tokens=(5, 10))
    assert {len(p) for p in corpus_prefixes(50, np.random.default_rng(0), options)} == {5, 6}
    with pytest.raises(ValueError, match="at least 5 tokens"):
        corpus_prefixes(1, np.random.default_rng(0), StrategyOptions(corpus=((1, 2),), prefix_tokens=(5, 10)))


def test_prefix_samples_start_with_their_prompt_and_text_includes_it():
    samples = generate_samples(tiny("gpt2"), TOKENIZER, "prefix", 6, 7, 4, 3, "cpu", prompt_texts=CORPUS,
                               progress=False)
    assert [s.sample_id for s in samples] == [f"prefix-{i}" for i in range(6)]
    for s in samples:
        assert s.token_ids[: s.prompt_tokens] == s.prompt_ids and 5 <= s.prompt_tokens <= 10
        assert len(s.token_ids) == s.prompt_tokens + 7
        assert s.text.startswith(TOKENIZER.decode(s.prompt_ids))
    assert len({s.prompt_ids for s in samples[:4]}) > 1  # rows of one batch get different prompts
    with pytest.raises(ValueError, match="prompt texts"):
        generate_samples(tiny("gpt2"), TOKENIZER, "prefix", 2, 3, 2, 0, "cpu", progress=False)


def test_unconditional_text_drops_the_eos_prompt_and_shows_generated_eos_as_a_blank_line():
    a, b = TOKENIZER.encode("a"), TOKENIZER.encode("b")
    assert sample_text([0, *a, 0, *b], 1, TOKENIZER) == "a" + EOS_TEXT + "b"
    samples = generate_samples(FixedLogits([5.0, -1e4, 5.0]), TOKENIZER, "top_n", 2, 30, 2, 0, "cpu", progress=False)
    for s in samples:
        assert s.prompt_ids == (0,) and len(s.token_ids) == 31
        assert s.text == "".join(" " if t == 2 else EOS_TEXT for t in s.token_ids[1:])


def test_decode_with_eos_for_a_tokenizer_that_drops_special_tokens():
    class Dropping:
        eos_id = 9

        def decode(self, ids):
            return "".join(chr(ord("a") + i) for i in ids if i != 9)

    assert decode_with_eos([0, 1, 9, 2, 9], Dropping()) == "ab" + EOS_TEXT + "c" + EOS_TEXT


# ------------------------------------------------------------------ context windows and decoders


def test_context_start_by_hand():
    # limit 4, shift 2: positions 1-4 see everything, then windows start at 2, 4, 6 (contexts of 3-4 tokens)
    assert [context_start(p, 4) for p in range(1, 10)] == [0, 0, 0, 0, 2, 2, 4, 4, 6]
    assert context_start(1000, None) == 0
    assert [context_start(p, 1) for p in (1, 2, 3)] == [0, 1, 2]


@pytest.mark.parametrize("arch", ["gpt2", "lstm"])
def test_incremental_decoder_matches_recompute_across_window_slides(arch):
    model = tiny(arch, context=8)
    tokens = torch.randint(0, TOKENIZER.vocab_size, (3, 30), generator=torch.Generator().manual_seed(0))
    fast = KVCacheDecoder(model) if arch == "gpt2" else LSTMStateDecoder(model)
    slow = RecomputeDecoder(model)
    with torch.no_grad():
        for p in range(2, 31):  # positions 9.. slide the gpt2 window (limit 8) several times
            assert torch.allclose(fast.next_logits(tokens[:, :p]), slow.next_logits(tokens[:, :p]), atol=1e-5)


@pytest.mark.parametrize("arch", ["gpt2", "lstm"])
def test_cache_and_recompute_give_identical_samples(arch):
    model = tiny(arch, context=8)
    kwargs = dict(prompt_texts=CORPUS, progress=False)
    for strategy in ("top_n", "prefix"):
        cached = generate_samples(model, TOKENIZER, strategy, 5, 25, 3, 7, "cpu", **kwargs)
        plain = generate_samples(model, TOKENIZER, strategy, 5, 25, 3, 7, "cpu", use_cache=False, **kwargs)
        assert cached == plain


@pytest.mark.parametrize("arch", ["gpt2", "lstm"])
def test_samples_are_the_same_on_one_replica_or_three(arch):
    """Each batch draws from its own seeded generator, so splitting the batches over replicas
    (batch b on replica b mod 3, in threads) changes nothing: tokens and their log-probabilities."""
    model = tiny(arch, context=8)
    for strategy in ("top_n", "temperature_decay", "prefix"):
        one = generate_samples(model, TOKENIZER, strategy, 11, 9, 2, 5, "cpu", prompt_texts=CORPUS, progress=False)
        three = generate_samples(model, TOKENIZER, strategy, 11, 9, 2, 5, "cpu", prompt_texts=CORPUS,
                                 progress=False, shards=3)
        assert one == three and len(one) == 11  # 6 batches of 2 rows, the last ragged
        assert len({s.token_ids for s in one}) > 1


def test_same_seed_same_samples_other_seed_or_strategy_differs():
    model = tiny("gpt2")
    run = lambda seed, strategy="top_n": [s.token_ids for s in generate_samples(  # noqa: E731
        model, TOKENIZER, strategy, 4, 12, 4, seed, "cpu", progress=False)]
    assert run(1) == run(1)
    assert run(1) != run(2)
    assert run(1) != run(1, "temperature_decay")
    assert len(set(run(1))) == 4  # batch rows differ


def test_unknown_strategy_lists_known_ones():
    with pytest.raises(RegistryError, match="top_n, temperature_decay, prefix"):
        generate_samples(tiny("gpt2"), TOKENIZER, "beam", 1, 1, 1, 0, "cpu", progress=False)


@pytest.mark.parametrize("arch", ["gpt2", "lstm"])
def test_sample_log2probs_equal_a_separate_scoring_pass(arch):
    from canaryaudit.extraction.metrics import token_log2probs

    model = tiny(arch, context=8)
    samples = generate_samples(model, TOKENIZER, "prefix", 4, 20, 4, 2, "cpu", prompt_texts=CORPUS, progress=False)
    scored = token_log2probs(model, [s.token_ids for s in samples], batch_size=5)
    for sample, expected in zip(samples, scored):
        assert len(sample.log2probs) == len(sample.token_ids) - 1
        assert sample.log2probs == pytest.approx(expected.tolist(), abs=1e-4)
