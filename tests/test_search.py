"""Exact rank and shortest-path extraction against brute-force enumeration, on real small models."""

import random
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from torch import nn

from canaryaudit.canaries import parse_format
from canaryaudit.exposure.scoring import exact_px_bits, float64_copy, log_perplexity_bits, score_tree
from canaryaudit.exposure.search import (
    NextTokenScorer,
    canary_space,
    candidate_tokens,
    exact_rank,
    pruning_tolerance_bits,
    shortest_path,
)
from canaryaudit.sharding import shard_devices
from canaryaudit.training.loop import Trainer
from canaryaudit.training.pipeline import build_variant_model, prepare_data
from canaryaudit.training.tokenizers import CharTokenizer
from tests.test_training import TEXTS, settings

FORMAT = parse_format("pin", "my pin is {d}x2-{d}x2", {"d": "0123456789"})  # |R| = 10^4, a literal dash inside
CANARY = ["4", "8", "2", "1"]
MEMORIZED = [CANARY, ["7", "3", "0", "6"], ["1", "9", "5", "2"]]  # three canaries of one format, 40 copies each


@pytest.fixture(scope="module", params=["gpt2", "lstm"])
def trained(request):
    """A small model trained on emails with three canaries of FORMAT inserted 40 times each."""
    rng = random.Random(0)
    texts = list(TEXTS)
    for _ in range(40):
        for canary in MEMORIZED:
            i = rng.randrange(len(texts))
            texts[i] = texts[i] + "\n" + FORMAT.render(canary)
    s = settings(model={"arch": request.param, "width": 64, "context": 32}, epochs=4, optimizer={"lr": 0.02})
    data = prepare_data(s, texts[:-6], texts[-6:-3], texts[-3:])
    model, _ = build_variant_model(s, data.tokenizer)
    result = Trainer(s, model, data.train, data.valid, data.test, progress=False).run()
    return result.model, data.tokenizer


def brute_force(model, tokenizer):
    fillings = [FORMAT.fill_from_index(i) for i in range(FORMAT.space_size)]
    texts = [FORMAT.render(f)[len(FORMAT.prefix):] for f in fillings]
    return fillings, log_perplexity_bits(model, tokenizer, FORMAT.prefix, texts, batch_size=2048)


@pytest.fixture(scope="module")
def brute_force_exact(trained):
    """Every filling's Px in float64 by two independent full-sequence paths: token rows through
    exact_px_bits (what exact_rank rescored with) and text through log_perplexity_bits on a float64 copy."""
    model, tokenizer = trained
    space = canary_space(FORMAT, tokenizer)
    fillings = [FORMAT.fill_from_index(i) for i in range(FORMAT.space_size)]
    rows = np.array([candidate_tokens(space, FORMAT, f, tokenizer) for f in fillings])
    model64 = float64_copy(model)
    by_rows = exact_px_bits(model64, space.prefix_ids, rows, batch_size=1000)
    texts = [FORMAT.render(f)[len(FORMAT.prefix):] for f in fillings]
    by_text = log_perplexity_bits(model64, tokenizer, FORMAT.prefix, texts, batch_size=777)
    return fillings, rows, by_rows, by_text


def near_ties(px, gap=1e-5, count=4):
    """Indices of candidates whose Px lies within ``gap`` bits of another's (both of each pair)."""
    order = np.argsort(px, kind="stable")
    close = np.nonzero(np.diff(px[order]) < gap)[0]
    picked = []
    for k in close[np.linspace(0, len(close) - 1, min(count, len(close))).astype(int)]:
        picked.extend([int(order[k]), int(order[k + 1])])
    return picked


def test_exact_rank_equals_brute_force_in_near_ties(trained, brute_force_exact):
    """Canaries within 1e-5 bits of each other: exact_rank equals the brute-force count exactly."""
    model, tokenizer = trained
    space = canary_space(FORMAT, tokenizer)
    fillings, rows, by_rows, by_text = brute_force_exact
    assert np.abs(by_rows - by_text).max() < 1e-9  # the two float64 paths agree far below the gaps
    ties = near_ties(by_rows)
    assert len(ties) >= 4, "the trained model should give some near-ties among 10^4 fillings"
    memorized = [fillings.index(c) for c in MEMORIZED]
    for index in ties + memorized:
        result = exact_rank(NextTokenScorer(model, space.prefix_ids), space, rows[index], max_rows=200_000)
        expected = int((by_rows <= by_rows[index]).sum())  # ties count against the canary
        assert result.rank == expected == int((by_text <= by_text[index]).sum()), (fillings[index], result.message)
        assert result.canary_px == pytest.approx(by_rows[index], abs=1e-9)
        assert result.max_float_error < 1e-3


def test_exact_rank_undercounts_without_the_exact_rescoring(trained, brute_force_exact):
    """The defect this replaces: thresholding float32 search scores at 1e-6 bits misses near-tied
    candidates; rescoring survivors in float64 never does (checked on the same canaries)."""
    model, tokenizer = trained
    space = canary_space(FORMAT, tokenizer)
    _fillings, rows, by_rows, _ = brute_force_exact
    for index in near_ties(by_rows, gap=1e-6, count=6):
        tight = exact_rank(NextTokenScorer(model, space.prefix_ids), space, rows[index], 200_000, tolerance=0.0)
        if tight.exact:  # zero slack either survives by luck or is flagged: never silently wrong
            assert tight.rank == int((by_rows <= by_rows[index]).sum())


def test_shortest_path_top_k_is_the_brute_force_top_k(trained, brute_force_exact):
    """The top-K search confirms exactly the K likeliest fillings, in order (positions = exact ranks)."""
    model, tokenizer = trained
    space = canary_space(FORMAT, tokenizer)
    _fillings, rows, by_rows, _ = brute_force_exact
    for pop_batch in (1, 16):
        result = shortest_path(NextTokenScorer(model, space.prefix_ids), space, pop_batch, 100_000, top_k=5)
        assert result.within_budget and len(result.candidates) == 5
        order = np.argsort(by_rows, kind="stable")
        assert by_rows[order[5]] - by_rows[order[4]] > 1e-4  # the 5th and 6th are apart beyond float32 error
        assert [c for _, c in result.candidates] == [tuple(rows[i]) for i in order[:5]]  # gaps here are >= 3e-4 bits
        assert [px for px, _ in result.candidates] == pytest.approx(list(by_rows[order[:5]]), abs=1e-3)


def test_audit_format_extracts_every_memorized_canary(trained, brute_force_exact, request):
    """Three memorized canaries of one format: the extraction count is 3, not capped at one per format,
    and each canary's extraction position equals its exact rank."""
    from canaryaudit.config import ExposureParams
    from canaryaudit.exposure.audit import audit_format

    model, tokenizer = trained
    fillings, _rows, by_rows, _ = brute_force_exact
    ranks = [int((by_rows <= by_rows[fillings.index(c)]).sum()) for c in MEMORIZED]
    if "lstm" in request.node.name:
        assert sorted(ranks) == [1, 2, 3]  # the LSTM memorizes all three (precondition of the count)
    canaries = [{"canary_id": f"m{i}", "randomness": c, "text": FORMAT.render(c), "insertions": 40, "included": True,
                 "audit": False} for i, c in enumerate(MEMORIZED)]
    canaries.append({"canary_id": "held", "randomness": ["9", "0", "5", "7"], "text": FORMAT.render(["9", "0", "5", "7"]),
                     "insertions": 0, "included": False, "audit": False})
    params = ExposureParams(references=300, exact_rank={"max_estimated_rank": 10_000, "max_rows": 200_000},
                            extraction={"pop_batch": 16, "max_expansions": 50_000})
    rows, summary = audit_format(model, tokenizer, FORMAT, canaries, params, "cpu", random.Random(0))
    assert summary["extraction"]["top_k"] == 3  # default K: the format's canaries in the training data
    by_id = {r["canary_id"]: r for r in rows}
    for i, rank in enumerate(ranks):
        row = by_id[f"m{i}"]
        assert row["exact_rank"] == rank
        assert row["extracted"] is (rank <= 3) and row["extracted_top1"] is (rank == 1)
        assert row["extraction_position"] == (rank if rank <= 3 else None)
        assert 0 <= row["exposure_extrapolation"] <= FORMAT.log2_space_size
        assert row["exposure_extrapolation_lower_bound"] is (row["exposure_extrapolation_raw"] > FORMAT.log2_space_size)
    assert sum(r["extracted"] for r in rows if r["included"]) == sum(rank <= 3 for rank in ranks)
    assert all(r["exact_rank"] is not None or r["exact_rank_note"] for r in rows)


def brute_force_partials(model, tokenizer, space):
    """Every filling's token rows and cumulative Px (bits) after each of its tokens, float64 full sequences."""
    import torch

    fillings = [FORMAT.fill_from_index(i) for i in range(FORMAT.space_size)]
    rows = np.array([candidate_tokens(space, FORMAT, f, tokenizer) for f in fillings])
    model64 = float64_copy(model)
    prefix = torch.tensor(space.prefix_ids)
    out = []
    with torch.no_grad():
        for start in range(0, len(rows), 2000):
            chunk = torch.as_tensor(rows[start : start + 2000])
            ids = torch.cat([prefix.expand(len(chunk), -1), chunk], dim=1)
            logprobs = torch.log_softmax(model64(ids[:, :-1]).double(), -1)[:, len(prefix) - 1 :]
            out.append((-logprobs.gather(-1, chunk.unsqueeze(-1)).squeeze(-1) / np.log(2)).cumsum(1).numpy())
    return SimpleNamespace(rows=rows, px=np.concatenate(out))


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
    assert space.size == 10_000 and space.max_tokens == 5  # 4 digits and the dash
    fillings, px = brute_force(model, tokenizer)
    canary_px = px[fillings.index(CANARY)]
    result = exact_rank(NextTokenScorer(model, space.prefix_ids), space,
                        candidate_tokens(space, FORMAT, CANARY, tokenizer), max_rows=100_000)
    assert result.rank == between(px, canary_px)
    assert result.canary_px == pytest.approx(canary_px, abs=1e-3)
    # Rows scored = the canary's own path (one row per depth after the root, which needs no model call)
    # + every partial candidate of 1..D-1 tokens within the threshold (pruned: its subtree is never
    # scored), counted here from float64 per-token scores of all 10^4 fillings.
    partial = brute_force_partials(model, tokenizer, space)
    threshold = result.canary_px + pruning_tolerance_bits(NextTokenScorer(model, space.prefix_ids).dtype, space.max_tokens)
    bounds = [sum(len({tuple(r) for r in partial.rows[partial.px[:, k - 1] <= threshold + noise, :k]})
                  for k in range(1, space.max_tokens)) for noise in (-1e-4, 1e-4)]
    assert bounds[0] <= result.rows - (space.max_tokens - 1) <= bounds[1], (result.rows, bounds)
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


# ---------------------------------------------------------------- sharded scoring (replicas of the model)


def _scorers(model, space, batch_size=37):
    """One replica and three, with a batch size that leaves a ragged last batch."""
    return (NextTokenScorer(model, space.prefix_ids, batch_size, max_suffix=space.max_tokens),
            NextTokenScorer(model, space.prefix_ids, batch_size, max_suffix=space.max_tokens, shards=3))


def test_every_scoring_call_is_identical_with_three_replicas(trained):
    model, tokenizer = trained
    space = canary_space(FORMAT, tokenizer)
    one, three = _scorers(model, space)
    assert len(three.replicas) == 3 and three.replicas[1].model is not model  # real copies
    rng = np.random.default_rng(0)
    ids = np.array(space.prefix_ids[-3:])
    suffixes = rng.choice(ids, size=(200, 3))
    assert np.array_equal(one.log2_next(suffixes), three.log2_next(suffixes))
    columns = np.array([0, 2, 5])
    assert np.array_equal(one.log2_next(suffixes, columns), three.log2_next(suffixes, columns))
    ragged = [list(s[: i % 4]) for i, s in enumerate(suffixes)]
    assert all(np.array_equal(a, b) for a, b in zip(one.log2_next_ragged(ragged), three.log2_next_ragged(ragged)))
    rows = np.array([candidate_tokens(space, FORMAT, f, tokenizer) for f in
                     (FORMAT.fill_from_index(i) for i in range(0, FORMAT.space_size, 7))])
    assert np.array_equal(one.sequence_px(rows), three.sequence_px(rows))
    assert np.array_equal(score_tree(one, rows), score_tree(three, rows))
    assert (one.calls, one.rows) == (three.calls, three.rows)  # the same batches were scored


def test_exact_rank_and_extraction_are_identical_with_replicas(trained):
    model, tokenizer = trained
    space = canary_space(FORMAT, tokenizer)
    one, three = _scorers(model, space, batch_size=64)
    canary = np.array(candidate_tokens(space, FORMAT, MEMORIZED[0], tokenizer))
    rank_one, rank_three = (exact_rank(s, space, canary, max_rows=200_000) for s in (one, three))
    assert rank_one.rank is not None
    assert replace(rank_one, seconds=0.0) == replace(rank_three, seconds=0.0)  # rank, Px, rows, calls, rescoring
    a = shortest_path(one, space, pop_batch=32, max_expansions=3000, top_k=3)
    b = shortest_path(three, space, pop_batch=32, max_expansions=3000, top_k=3)
    assert len(a.candidates) == 3 and replace(a, seconds=0.0) == replace(b, seconds=0.0)


def test_shard_devices():
    import torch

    assert shard_devices("cpu", 2) == [torch.device("cpu")] * 2
    with pytest.raises(ValueError, match="at least 1"):
        shard_devices("cpu", 0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="2 shards but 0 CUDA devices"):
            shard_devices("cuda", 2)
