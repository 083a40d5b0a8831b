"""Many short continuations of many prefixes, each prefix computed once and batched across prefixes.

The PII attacks score N candidate values after each target's left context, and
decode the model's greedy continuation of that context. Recomputing the
context for every candidate spends most of the model's work on it; here each
distinct prefix goes through the model once (a transformers KV cache, or the
LSTM's recurrent state), and its continuations attend to that state.

Batching without padding where it would change results: prefixes are grouped
by their exact length (no attention mask is ever needed), continuations are
right-padded (causal attention: padding after a row's real tokens never changes
the logits at them, and padded positions are never read). Scores are the same
quantities as :func:`canaryaudit.extraction.metrics.token_log2probs` computes
from full sequences, equal to float32 rounding (tests compare the two).

Sequences must fit the model's window (callers route longer ones to the
windowed full-sequence scorer). Only :class:`~canaryaudit.training.models.CausalLM`
and :class:`~canaryaudit.training.models.CharLSTM` have a state to reuse:
:func:`prefix_runner` returns None for any other model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from canaryaudit.scoring import LN2, at_least_float32
from canaryaudit.training.models import CausalLM, CharLSTM


@dataclass(frozen=True)
class PrefixState:
    """What the model keeps of a batch of equal-length prefixes: per layer two tensors, batch first or second."""

    tensors: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # KV: (keys, values) [B, H, T, d]; LSTM: ((h, c),) [L, B, U]
    length: int  # tokens fed so far (the next token's position)


class PrefixRunner:
    """Feed tokens after a kept state; subclasses know where the model keeps it."""

    def feed(self, state: PrefixState | None, ids: torch.Tensor) -> tuple[PrefixState, torch.Tensor]:
        """Feed ``ids`` [B, S] after ``state`` (None: from the start); the new state and logits [B, S, V]."""
        raise NotImplementedError

    def select(self, state: PrefixState, rows: torch.Tensor) -> PrefixState:
        """The state of ``rows`` (indices into the batch, repeats allowed), as new tensors."""
        raise NotImplementedError


class KVCacheRunner(PrefixRunner):
    """A transformers causal LM: ``past_key_values`` with explicit positions counted from the first prefix token."""

    def __init__(self, model: CausalLM) -> None:
        self.hf = model.model
        self.takes_positions = model._takes_positions

    def feed(self, state: PrefixState | None, ids: torch.Tensor) -> tuple[PrefixState, torch.Tensor]:
        from transformers import DynamicCache

        start = 0 if state is None else state.length
        kwargs: dict[str, object] = {"input_ids": ids, "use_cache": True,
                                     "past_key_values": DynamicCache(None if state is None else state.tensors)}
        if self.takes_positions:
            positions = torch.arange(start, start + ids.shape[1], device=ids.device)
            kwargs["position_ids"] = positions.unsqueeze(0).expand(ids.shape[0], -1)
        out = self.hf(**kwargs)
        tensors = tuple((layer.keys, layer.values) for layer in out.past_key_values.layers)
        return PrefixState(tensors, start + ids.shape[1]), at_least_float32(out.logits)

    def select(self, state: PrefixState, rows: torch.Tensor) -> PrefixState:
        return PrefixState(tuple((k.index_select(0, rows), v.index_select(0, rows)) for k, v in state.tensors),
                           state.length)


class LSTMStateRunner(PrefixRunner):
    """The character LSTM: its (h, c) state after the prefix."""

    def __init__(self, model: CharLSTM) -> None:
        self.model = model

    def feed(self, state: PrefixState | None, ids: torch.Tensor) -> tuple[PrefixState, torch.Tensor]:
        hidden, (h, c) = self.model.lstm(self.model.embed(ids), None if state is None else state.tensors[0])
        start = 0 if state is None else state.length
        return PrefixState(((h, c),), start + ids.shape[1]), at_least_float32(self.model.head(hidden))

    def select(self, state: PrefixState, rows: torch.Tensor) -> PrefixState:
        (h, c), = state.tensors
        return PrefixState(((h.index_select(1, rows).contiguous(), c.index_select(1, rows).contiguous()),),
                           state.length)


def prefix_runner(model: nn.Module) -> PrefixRunner | None:
    """The runner that keeps ``model``'s prefix state, or None when the model has none to reuse."""
    if isinstance(model, CausalLM):
        return KVCacheRunner(model)
    if isinstance(model, CharLSTM):
        return LSTMStateRunner(model)
    return None


def _log2_softmax_picked(logits: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
    """log2 Pr(picked) under ``logits`` [..., V] (bits, <= 0), as token_log2probs computes it."""
    chosen = logits.gather(-1, picked.unsqueeze(-1)).squeeze(-1)
    return (chosen - torch.logsumexp(logits, dim=-1)) / LN2


def _chunks_of_rows(keys: Sequence[tuple[int, ...]], members: dict[tuple[int, ...], list[int]],
                    batch_size: int) -> Iterator[list[tuple[int, ...]]]:
    """Prefixes in chunks of at most ``batch_size``, closed once their continuations fill a batch."""
    chunk: list[tuple[int, ...]] = []
    rows = 0
    for key in keys:
        chunk.append(key)
        rows += len(members[key])
        if len(chunk) == batch_size or rows >= batch_size:
            yield chunk
            chunk, rows = [], 0
    if chunk:
        yield chunk


def _padded(rows: Sequence[Sequence[int]], device: torch.device) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return torch.as_tensor(out, device=device)


@torch.no_grad()
def continuation_log2probs(runner: PrefixRunner, sequences: Sequence[tuple[Sequence[int], int]], batch_size: int,
                           device: torch.device) -> list[np.ndarray]:
    """For each (ids, first): log2 Pr(ids[j] | ids[:j]) for j = first .. len(ids) - 1 (bits, <= 0).

    ``first`` >= 1 tokens form the prefix; sequences with the same prefix share one pass over it.
    Every sequence must fit the model's window.
    """
    members: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, (ids, first) in enumerate(sequences):
        if not 1 <= first < len(ids):
            raise ValueError(f"sequence {i}: needs 1 <= first ({first}) < length ({len(ids)})")
        members[tuple(ids[:first])].append(i)
    by_length: dict[int, list[tuple[int, ...]]] = defaultdict(list)
    for key in members:
        by_length[len(key)].append(key)
    out: list[np.ndarray] = [np.zeros(0)] * len(sequences)
    for length in sorted(by_length):
        # Prefixes whose continuations are alike in length share chunks: less padding in the suffix passes.
        keys = sorted(by_length[length], key=lambda k: max(len(sequences[i][0]) for i in members[k]))
        for chunk in _chunks_of_rows(keys, members, batch_size):
            state, logits = runner.feed(None, torch.tensor(chunk, dtype=torch.long, device=device))
            last = logits[:, -1]  # predicts each member's first scored token
            jobs = [(row, i) for row, key in enumerate(chunk) for i in members[key]]
            firsts = torch.tensor([sequences[i][0][length] for _, i in jobs], device=device)
            rows = torch.tensor([row for row, _ in jobs], device=device)
            first_log2p = _log2_softmax_picked(last.index_select(0, rows), firsts).cpu().numpy()
            for n, (_, i) in enumerate(jobs):
                out[i] = np.array([first_log2p[n]], dtype=np.float64)
            longer = sorted((job for job in jobs if len(sequences[job[1]][0]) > length + 1),
                            key=lambda job: len(sequences[job[1]][0]))
            for begin in range(0, len(longer), batch_size):
                _score_suffixes(runner, state, longer[begin : begin + batch_size], sequences, out, device)
    return out


def _score_suffixes(runner: PrefixRunner, state: PrefixState, jobs: Sequence[tuple[int, int]],
                    sequences: Sequence[tuple[Sequence[int], int]], out: list[np.ndarray], device: torch.device) -> None:
    """Append to ``out[i]`` the log2 probabilities of tokens first + 1 .. of each job's (prefix row, sequence i)."""
    length = state.length
    inputs = [list(sequences[i][0][length:-1]) for _, i in jobs]  # each predicts the token after it
    targets = [list(sequences[i][0][length + 1 :]) for _, i in jobs]
    rows = torch.tensor([row for row, _ in jobs], device=device)
    _, logits = runner.feed(runner.select(state, rows), _padded(inputs, device))
    log2p = _log2_softmax_picked(logits, _padded(targets, device)).cpu().numpy()
    for n, (_, i) in enumerate(jobs):
        out[i] = np.concatenate([out[i], log2p[n, : len(targets[n])].astype(np.float64)])


@torch.no_grad()
def greedy_decode(runner: PrefixRunner, prompts: Sequence[Sequence[int]], budgets: Sequence[int], batch_size: int,
                  device: torch.device, settled: Callable[[int, list[int]], bool]) -> list[list[int]]:
    """Each prompt's greedy continuation (the likeliest token at every step, the first on a tie), up to its
    budget of tokens; a row stops earlier once ``settled(index, tokens so far)`` says more tokens cannot
    change what the caller decides. Prompts (each >= 1 token) plus budgets must fit the model's window."""
    out: list[list[int]] = [[] for _ in prompts]
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, prompt in enumerate(prompts):
        if not prompt:
            raise ValueError(f"prompt {i} is empty: every prompt needs at least one token")
        by_length[len(prompt)].append(i)
    for length in sorted(by_length):
        group = by_length[length]
        for begin in range(0, len(group), batch_size):
            batch = group[begin : begin + batch_size]
            state, logits = runner.feed(None, torch.tensor([list(prompts[i]) for i in batch], device=device))
            alive = [i for i in batch if budgets[i] > 0]
            keep = torch.tensor([n for n, i in enumerate(batch) if budgets[i] > 0], dtype=torch.long, device=device)
            state, last = runner.select(state, keep), logits[:, -1].index_select(0, keep)
            while alive:
                chosen = last.argmax(dim=-1)
                for i, token in zip(alive, chosen.tolist()):
                    out[i].append(token)
                going = [n for n, i in enumerate(alive) if len(out[i]) < budgets[i] and not settled(i, out[i])]
                if not going:
                    break
                index = torch.tensor(going, dtype=torch.long, device=device)
                state, logits = runner.feed(runner.select(state, index), chosen.index_select(0, index).unsqueeze(1))
                alive, last = [alive[n] for n in going], logits[:, -1]
    return out
