"""Many short continuations of many prefixes, each prefix computed once and batched across prefixes.

The PII attacks score N candidate values after each target's left context, and
decode the model's greedy continuation of that context. Recomputing the
context for every candidate spends most of the model's work on it; here each
distinct prefix goes through the model once (a transformers KV cache, or the
LSTM's recurrent state), and its continuations attend to that state.

Batching: rows are right-padded (causal attention: padding after a row's real
tokens never changes the logits at them, and padded positions are never read).
A transformers model batches prefixes of any lengths: each row gets its own
position ids, and an attention mask hides a short prefix's padding from the
tokens fed after it; the LSTM, whose state would run through padding, batches
prefixes of one length at a time. Few, full forward calls matter on a busy CPU
(every call synchronises its threads). Scores are the same
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

from canaryaudit.exposure.scoring import LN2, at_least_float32, max_positions
from canaryaudit.training.models import CausalLM, CharLSTM


@dataclass(frozen=True)
class PrefixState:
    """What the model keeps of a batch of prefixes: per layer two tensors, and where each row stands."""

    tensors: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # KV: (keys, values) [B, H, T, d]; LSTM: ((h, c),) [L, B, U]
    lengths: torch.Tensor  # [B] real tokens fed per row (the next token's position)
    valid: torch.Tensor  # [B, T] bool: which kept positions hold real tokens (padding does not)


class PrefixRunner:
    """Feed tokens after a kept state; subclasses know where the model keeps it."""

    #: Whether rows of different lengths may share a batch (right-padded, the padding masked out).
    pads = False

    def feed(self, state: PrefixState | None, ids: torch.Tensor,
             lengths: torch.Tensor | None = None) -> tuple[PrefixState, torch.Tensor]:
        """Feed ``ids`` [B, S] after ``state`` (None: from the start); the new state and logits [B, S, V].
        ``lengths`` [B]: real tokens per row of ``ids`` (the rest is right padding); None: all of them."""
        raise NotImplementedError

    def select(self, state: PrefixState, rows: torch.Tensor) -> PrefixState:
        """The state of ``rows`` (indices into the batch, repeats allowed), as new tensors."""
        raise NotImplementedError


def _grown(state: PrefixState | None, ids: torch.Tensor,
           lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(first position per row [B], valid [B, T + S], lengths after [B]) once ``ids`` [B, S] are fed."""
    rows, width = ids.shape
    start = torch.zeros(rows, dtype=torch.long, device=ids.device) if state is None else state.lengths
    real = torch.ones(rows, width, dtype=torch.bool, device=ids.device) if lengths is None else (
        torch.arange(width, device=ids.device).unsqueeze(0) < lengths.unsqueeze(1))
    valid = real if state is None else torch.cat([state.valid, real], dim=1)
    return start, valid, start + (width if lengths is None else lengths)


class KVCacheRunner(PrefixRunner):
    """A transformers causal LM: ``past_key_values``, explicit positions per row from its first token, and an
    attention mask over the kept positions whenever a batch holds padding."""

    def __init__(self, model: CausalLM) -> None:
        self.hf = model.model
        self.pads = model._takes_positions  # per-row positions are what make padded rows exact
        self.last_position = (max_positions(model) or 2**62) - 1

    def feed(self, state: PrefixState | None, ids: torch.Tensor,
             lengths: torch.Tensor | None = None) -> tuple[PrefixState, torch.Tensor]:
        from transformers import DynamicCache

        start, valid, after = _grown(state, ids, lengths)
        kwargs: dict[str, object] = {"input_ids": ids, "use_cache": True,
                                     "past_key_values": DynamicCache(None if state is None else state.tensors)}
        if self.pads:
            # Padding may run past the window: its positions are clamped (never read, never attended to).
            positions = start.unsqueeze(1) + torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
            kwargs["position_ids"] = positions.clamp(max=self.last_position)
        if not bool(valid.all()):
            kwargs["attention_mask"] = valid.long()
        out = self.hf(**kwargs)
        tensors = tuple((layer.keys, layer.values) for layer in out.past_key_values.layers)
        return PrefixState(tensors, after, valid), at_least_float32(out.logits)

    def select(self, state: PrefixState, rows: torch.Tensor) -> PrefixState:
        return PrefixState(tuple((k.index_select(0, rows), v.index_select(0, rows)) for k, v in state.tensors),
                           state.lengths.index_select(0, rows), state.valid.index_select(0, rows))


class LSTMStateRunner(PrefixRunner):
    """The character LSTM: its (h, c) state after the prefix (rows of one batch have equal lengths)."""

    def __init__(self, model: CharLSTM) -> None:
        self.model = model

    def feed(self, state: PrefixState | None, ids: torch.Tensor,
             lengths: torch.Tensor | None = None) -> tuple[PrefixState, torch.Tensor]:
        if lengths is not None and bool((lengths != ids.shape[1]).any()):
            raise ValueError("an LSTM state cannot skip padding: feed rows of equal length")
        hidden, (h, c) = self.model.lstm(self.model.embed(ids), None if state is None else state.tensors[0])
        _, valid, after = _grown(state, ids, None)
        return PrefixState(((h, c),), after, valid), at_least_float32(self.model.head(hidden))

    def select(self, state: PrefixState, rows: torch.Tensor) -> PrefixState:
        (h, c), = state.tensors
        return PrefixState(((h.index_select(1, rows).contiguous(), c.index_select(1, rows).contiguous()),),
                           state.lengths.index_select(0, rows), state.valid.index_select(0, rows))


def prefix_runner(model: nn.Module) -> PrefixRunner | None:
    """The runner that keeps ``model``'s prefix state, or None when the model has none to reuse."""
    if isinstance(model, CausalLM):
        return KVCacheRunner(model)
    if isinstance(model, CharLSTM):
        return LSTMStateRunner(model)
    return None


def _batches_of_prefixes(runner: PrefixRunner, prefixes: Sequence[Sequence[int]], batch_size: int,
                         size: Callable[[int], tuple[int, ...] | int]) -> Iterator[list[int]]:
    """Indices of ``prefixes`` in batches of at most ``batch_size``: of any lengths when the runner pads (by
    ``size``, so alike rows batch together), else of one length each."""
    if runner.pads:
        groups = [sorted(range(len(prefixes)), key=size)]
    else:
        by_length: dict[int, list[int]] = defaultdict(list)
        for i in sorted(range(len(prefixes)), key=size):
            by_length[len(prefixes[i])].append(i)
        groups = [by_length[length] for length in sorted(by_length)]
    for group in groups:
        for first in range(0, len(group), batch_size):
            yield group[first : first + batch_size]


def _log2_softmax_picked(logits: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
    """log2 Pr(picked) under ``logits`` [..., V] (bits, <= 0), as token_log2probs computes it."""
    chosen = logits.gather(-1, picked.unsqueeze(-1)).squeeze(-1)
    return (chosen - torch.logsumexp(logits, dim=-1)) / LN2


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

    ``first`` >= 1 tokens form the prefix; sequences with the same prefix share one pass over it, batched
    ``batch_size`` prefixes at a time, their continuations ``batch_size`` rows at a time. Every sequence
    must fit the model's window.
    """
    members: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, (ids, first) in enumerate(sequences):
        if not 1 <= first < len(ids):
            raise ValueError(f"sequence {i}: needs 1 <= first ({first}) < length ({len(ids)})")
        members[tuple(ids[:first])].append(i)
    keys = list(members)
    out: list[np.ndarray] = [np.zeros(0)] * len(sequences)
    # Prefixes whose continuations are alike in length share batches: less padding in the continuation passes.
    longest = [max(len(sequences[i][0]) for i in members[key]) for key in keys]
    for chunk in _batches_of_prefixes(runner, keys, batch_size, lambda k: (longest[k], len(keys[k]))):
        prefixes = [keys[k] for k in chunk]
        lengths = torch.tensor([len(p) for p in prefixes], device=device)
        state, logits = runner.feed(None, _padded(prefixes, device), lengths)
        last = logits[torch.arange(len(prefixes), device=device), lengths - 1]  # predicts the first scored token
        jobs = [(row, i) for row, key in enumerate(prefixes) for i in members[key]]
        firsts = torch.tensor([sequences[i][0][len(prefixes[row])] for row, i in jobs], device=device)
        rows = torch.tensor([row for row, _ in jobs], device=device)
        first_log2p = _log2_softmax_picked(last.index_select(0, rows), firsts).cpu().numpy()
        for n, (_, i) in enumerate(jobs):
            out[i] = np.array([first_log2p[n]], dtype=np.float64)
        longer = sorted((job for job in jobs if len(sequences[job[1]][0]) > sequences[job[1]][1] + 1),
                        key=lambda job: len(sequences[job[1]][0]) - sequences[job[1]][1])
        for begin in range(0, len(longer), batch_size):
            _score_suffixes(runner, state, longer[begin : begin + batch_size], sequences, out, device)
    return out


def _score_suffixes(runner: PrefixRunner, state: PrefixState, jobs: Sequence[tuple[int, int]],
                    sequences: Sequence[tuple[Sequence[int], int]], out: list[np.ndarray], device: torch.device) -> None:
    """Append to ``out[i]`` the log2 probabilities of tokens first + 1 .. of each job's (prefix row, sequence i)."""
    inputs = [list(sequences[i][0][sequences[i][1] : -1]) for _, i in jobs]  # each predicts the token after it
    targets = [list(sequences[i][0][sequences[i][1] + 1 :]) for _, i in jobs]
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
    if any(not prompt for prompt in prompts):
        raise ValueError("every prompt needs at least one token")
    for batch in _batches_of_prefixes(runner, prompts, batch_size, lambda i: len(prompts[i])):
        lengths = torch.tensor([len(prompts[i]) for i in batch], device=device)
        state, logits = runner.feed(None, _padded([prompts[i] for i in batch], device), lengths)
        last = logits[torch.arange(len(batch), device=device), lengths - 1]
        keep = torch.tensor([n for n, i in enumerate(batch) if budgets[i] > 0], dtype=torch.long, device=device)
        alive = [i for i in batch if budgets[i] > 0]
        state, last = runner.select(state, keep), last.index_select(0, keep)
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
