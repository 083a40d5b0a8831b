"""Exact rank and shortest-path extraction against brute-force enumeration, on real small models."""

import random

import numpy as np
import pytest
from torch import nn

from canaryaudit.canaries import parse_format
from canaryaudit.scoring import log_perplexity_bits
from canaryaudit.search import NextTokenScorer, TreeUnsupported, canary_space, candidate_tokens, exact_rank, shortest_path
from canaryaudit.training.loop import Trainer
from canaryaudit.training.pipeline import build_variant_model, prepare_data
from canaryaudit.training.tokenizers import CharTokenizer
from tests.test_training import TEXTS, settings

FORMAT = parse_format("pin", "my pin is {d}x2-{d}x2", {"d": "0123456789"})  # |R| = 10^4, a literal dash inside
CANARY = ["4", "8", "2", "1"]


@pytest.fixture(scope="module", params=["gpt2", "lstm"])
def trained(request):
    """A small model trained on emails with the canary inserted 40 times."""
    rng = random.Random(0)
    texts = list(TEXTS)
    for _ in range(40):
        i = rng.randrange(len(texts))
        texts[i] = texts[i] + "\n" + FORMAT.render(CANARY)
    s = settings(model={"arch": request.param, "width": 48}, epochs=4, optimizer={"lr": 0.01})
    data = prepare_data(s, texts[:-6], texts[-6:-3], texts[-3:])
    model, _ = build_variant_model(s, data.tokenizer)
    result = Trainer(s, model, data.train, data.valid, data.test, progress=False).run()
    return result.model, data.tokenizer


def brute_force(model, tokenizer):
    fillings = [FORMAT.fill_from_index(i) for i in range(FORMAT.space_size)]
    texts = [FORMAT.render(f)[len(FORMAT.prefix):] for f in fillings]
    return fillings, log_perplexity_bits(model, tokenizer, FORMAT.prefix, texts, batch_size=2048)


def between(px, threshold, float_noise=1e-3):
    """The brute-force rank, or any value that float noise (cached vs full forward) can explain."""
    low, high = int((px <= threshold - float_noise).sum()), int((px <= threshold + float_noise).sum())
    return pytest.approx((low + high) / 2, abs=(high - low) / 2 + 0.01)


def test_prefix_reuse_matches_full_recompute(trained):
    model, tokenizer = trained
    space = canary_space(FORMAT, tokenizer)
    suffixes = np.array([candidate_tokens(space, FORMAT, f, tokenizer)[:3] for f in (CANARY, ["0", "0", "0", "0"])])
    fast = NextTokenScorer(model, space.prefix_ids).log2_next(suffixes)
    slow = NextTokenScorer(model, space.prefix_ids, reuse_prefix=False).log2_next(suffixes)
    assert np.allclose(fast, slow, atol=1e-4)


def test_exact_rank_equals_brute_force(trained):
    model, tokenizer = trained
    space = canary_space(FORMAT, tokenizer)
    assert space.size == 10_000 and space.depth == 5  # 4 digits and the dash
    fillings, px = brute_force(model, tokenizer)
    canary_px = px[fillings.index(CANARY)]
    result = exact_rank(NextTokenScorer(model, space.prefix_ids), space,
                        candidate_tokens(space, FORMAT, CANARY, tokenizer), max_rows=100_000)
    assert result.rank == between(px, canary_px)
    assert result.canary_px == pytest.approx(canary_px, abs=1e-3)
    assert result.rows < 1 + 10 + 100 + 1000 + 1000  # pruning never scores more than the whole tree
    other = ["9", "0", "5", "7"]  # an arbitrary, non-memorized candidate
    rank_other = exact_rank(NextTokenScorer(model, space.prefix_ids), space,
                            candidate_tokens(space, FORMAT, other, tokenizer), max_rows=100_000).rank
    assert rank_other == between(px, px[fillings.index(other)])


def test_all_ties_count_against_the_canary():
    """A uniform model gives every candidate the same Px: rank = |R|, exposure 0."""
    tokenizer = CharTokenizer.train(["my pin is 0123456789-"])
    uniform = nn.Embedding(tokenizer.vocab_size, tokenizer.vocab_size)
    nn.init.zeros_(uniform.weight)
    space = canary_space(FORMAT, tokenizer)
    result = exact_rank(NextTokenScorer(uniform, space.prefix_ids), space,
                        candidate_tokens(space, FORMAT, CANARY, tokenizer), max_rows=100_000)
    assert result.rank == 10_000
    assert result.canary_px == pytest.approx(4 * np.log2(tokenizer.vocab_size) + np.log2(tokenizer.vocab_size))


def test_budget_exceeded_is_reported_not_guessed(trained):
    model, tokenizer = trained
    space = canary_space(FORMAT, tokenizer)
    worst = exact_rank(NextTokenScorer(model, space.prefix_ids), space,
                       candidate_tokens(space, FORMAT, ["9", "9", "9", "9"], tokenizer), max_rows=50)
    assert worst.rank is None and "exceed the budget of 50 rows" in worst.message


@pytest.mark.parametrize("pop_batch", [1, 16])
def test_shortest_path_finds_the_brute_force_best(trained, pop_batch):
    model, tokenizer = trained
    space = canary_space(FORMAT, tokenizer)
    fillings, px = brute_force(model, tokenizer)
    best = candidate_tokens(space, FORMAT, fillings[int(np.argmin(px))], tokenizer)
    canary = candidate_tokens(space, FORMAT, CANARY, tokenizer)
    result = shortest_path(NextTokenScorer(model, space.prefix_ids), space, pop_batch, 100_000, canary=canary)
    assert result.within_budget
    assert list(result.candidates[0][1]) == best
    assert result.candidates[0][0] == pytest.approx(float(px.min()), abs=1e-3)
    assert [c[0] for c in result.candidates] == sorted(c[0] for c in result.candidates)
    assert result.top_is_canary == (best == canary)
    assert result.nodes_expanded < 1111 + 1000  # far fewer than scoring all 10^4 candidates


def test_shortest_path_budget():
    tokenizer = CharTokenizer.train(["my pin is 0123456789-"])
    uniform = nn.Embedding(tokenizer.vocab_size, tokenizer.vocab_size)
    nn.init.zeros_(uniform.weight)
    space = canary_space(FORMAT, tokenizer)
    result = shortest_path(NextTokenScorer(uniform, space.prefix_ids), space, 4, max_expansions=20)
    assert not result.within_budget and result.nodes_expanded <= 20


def test_bpe_merging_digits_is_refused():
    from canaryaudit.training.tokenizers import BpeTokenizer

    bpe = BpeTokenizer.train(["my pin is 48-21 " * 50, "12 34 56 78 90 " * 50], vocab_size=300)
    with pytest.raises(TreeUnsupported):
        canary_space(parse_format("n", "my pin is {d}x2-{d}x2", {"d": "0123456789"}), bpe)
