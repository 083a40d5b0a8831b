"""Prefix-shared scoring and greedy decoding against full sequences through the model, one at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from canaryaudit.extraction.metrics import token_log2probs
from canaryaudit.shared_prefix import continuation_log2probs, greedy_decode, prefix_runner
from canaryaudit.training.models import ModelSpec, build_model

VOCAB = 30
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module", params=["gpt2", "lstm"])
def model(request):
    torch.manual_seed(1)
    spec = ModelSpec(arch=request.param, vocab_size=VOCAB, layers=2, width=16, heads=2, context=32)
    return build_model(spec).eval()


def _sequences(seed: int) -> list[tuple[list[int], int]]:
    """Prefixes of several lengths, each continued by a few sequences of different lengths (some single-token)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(12):
        prefix = rng.integers(1, VOCAB, size=int(rng.integers(1, 9))).tolist()
        for _ in range(int(rng.integers(1, 5))):
            out.append((prefix + rng.integers(0, VOCAB, size=int(rng.integers(1, 12))).tolist(), len(prefix)))
    return out


def _brute_log2probs(model, ids: list[int]) -> np.ndarray:
    """log2 Pr(ids[j] | ids[:j]) for j >= 1, from one full-sequence forward pass in float64."""
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0].double()
    log2p = torch.log_softmax(logits, dim=-1) / np.log(2.0)
    return log2p[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].numpy()


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_continuation_log2probs_equal_full_sequence_scores(model, batch_size):
    sequences = _sequences(batch_size)
    ours = continuation_log2probs(prefix_runner(model), sequences, batch_size, CPU)
    theirs = token_log2probs(model, [ids for ids, _ in sequences], 7, CPU)  # the windowed full-sequence scorer
    for (ids, first), got, full in zip(sequences, ours, theirs):
        assert got.shape == (len(ids) - first,)
        assert np.allclose(got, full[first - 1 :], atol=1e-4)
        assert np.allclose(got, _brute_log2probs(model, ids)[first - 1 :], atol=1e-4)


def test_continuation_log2probs_groups_by_the_exact_prefix():
    # Two sequences share their first 3 tokens but declare different prefixes: each is scored from its own.
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch="gpt2", vocab_size=VOCAB, layers=1, width=16, heads=2, context=16)).eval()
    sequences = [([3, 4, 5, 6, 7], 3), ([3, 4, 5, 6, 7], 2), ([3, 4, 5, 6, 7], 4)]
    got = continuation_log2probs(prefix_runner(model), sequences, 8, CPU)
    full = _brute_log2probs(model, [3, 4, 5, 6, 7])
    for (_, first), row in zip(sequences, got):
        assert np.allclose(row, full[first - 1 :], atol=1e-5)
    with pytest.raises(ValueError, match="first"):
        continuation_log2probs(prefix_runner(model), [([1, 2], 2)], 8, CPU)


def _brute_greedy(model, prompt: list[int], budget: int) -> list[int]:
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(budget):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt) :]


def test_greedy_decode_equals_step_by_step_argmax(model):
    rng = np.random.default_rng(3)
    prompts = [rng.integers(1, VOCAB, size=int(rng.integers(1, 10))).tolist() for _ in range(25)]
    budgets = [int(b) for b in rng.integers(0, 8, size=len(prompts))]
    got = greedy_decode(prefix_runner(model), prompts, budgets, 4, CPU, lambda _i, _t: False)
    assert got == [_brute_greedy(model, p, b) for p, b in zip(prompts, budgets)]


def test_greedy_decode_stops_a_row_once_settled(model):
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8]]
    full = [_brute_greedy(model, p, 6) for p in prompts]
    got = greedy_decode(prefix_runner(model), prompts, [6, 6, 6], 8, CPU, lambda i, tokens: i == 1 and len(tokens) == 2)
    assert got == [full[0], full[1][:2], full[2]]  # row 1 stopped after two tokens; the others ran on unchanged


def test_prefix_runner_only_for_models_with_a_state():
    assert prefix_runner(torch.nn.Linear(2, 2)) is None
