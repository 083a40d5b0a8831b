"""The scoring engine: log-perplexity of candidates after a shared prefix, in bits.

Px(x) = sum_i -log2 Pr(x_i | x_<i) over the tokens after the prefix; lower =
more likely = more exposed. :func:`log_perplexity_bits` scores each candidate
as a full independent sequence (the baseline). :class:`NextTokenScorer`
computes the prefix once (KV cache or LSTM state) and :func:`score_tree`
evaluates each node of the candidates' token tree once.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from canaryaudit.sharding import round_robin, shard_devices
from canaryaudit.training.models import CausalLM, CharLSTM
from canaryaudit.training.tokenizers import Tokenizer

LN2 = math.log(2.0)


@torch.no_grad()
def log_perplexity_bits(
    model: nn.Module,
    tokenizer: Tokenizer,
    prefix: str,
    continuations: Sequence[str],
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Px of each continuation after ``prefix`` (bits). Continuations must tokenize to equal length."""
    prefix_ids = tokenizer.encode(prefix)
    if not prefix_ids:
        raise ValueError("prefix must encode to at least one token (the first continuation token needs a context)")
    encoded = [tokenizer.encode(prefix + c)[len(prefix_ids):] for c in continuations]
    lengths = {len(e) for e in encoded}
    if len(lengths) > 1:
        raise ValueError(f"continuations tokenize to different lengths {sorted(lengths)}; score them separately")
    model.eval()
    out = np.empty(len(encoded), dtype=np.float64)
    n_prefix = len(prefix_ids)
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        ids = torch.tensor([prefix_ids + c for c in chunk], dtype=torch.long, device=device)
        logprobs = torch.log_softmax(at_least_float32(model(ids[:, :-1])), dim=-1)
        targets = ids[:, n_prefix:]
        picked = logprobs[:, n_prefix - 1 :, :].gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        out[start : start + len(chunk)] = (-picked.sum(dim=1) / LN2).cpu().numpy()
    return out


def at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """Logits in float32, or float64 when they already are (bf16/fp16 are upcast, float64 kept)."""
    return logits if logits.dtype == torch.float64 else logits.float()


class _Replica:
    """One copy of the model on one device with the prefix computed once: a KV cache for transformers
    models, the recurrent state for the LSTM; other models recompute the prefix."""

    def __init__(self, model: nn.Module, prefix_ids: Sequence[int], device: torch.device, reuse_prefix: bool) -> None:
        self.model = model.eval()
        self.device = device
        self.prefix = torch.tensor([list(prefix_ids)], dtype=torch.long, device=device)
        self.kind = "full"
        with torch.no_grad():
            if reuse_prefix and isinstance(model, CausalLM):
                out = model.model(input_ids=self.prefix, use_cache=True)
                self.cache = out.past_key_values
                self.root = out.logits[0, -1].float()
                self.kind = "kv"
            elif reuse_prefix and isinstance(model, CharLSTM):
                hidden, self.state = model.lstm(model.embed(self.prefix))
                self.root = model.head(hidden)[0, -1].float()
                self.kind = "state"
            else:
                self.root = model(self.prefix)[0, -1].float()

    def all_logits(self, suffix: torch.Tensor) -> torch.Tensor:
        """Logits at every suffix position [n, d, V], the prefix computed once."""
        n, d = suffix.shape
        if self.kind == "kv":
            cache = copy.deepcopy(self.cache)
            cache.batch_repeat_interleave(n)
            start = self.prefix.shape[1]
            positions = torch.arange(start, start + d, device=self.device).unsqueeze(0).expand(n, d)
            return self.model.model(input_ids=suffix, past_key_values=cache, position_ids=positions,
                                    use_cache=True).logits
        if self.kind == "state":
            h, c = self.state
            state = (h.expand(-1, n, -1).contiguous(), c.expand(-1, n, -1).contiguous())
            hidden, _ = self.model.lstm(self.model.embed(suffix), state)
            return self.model.head(hidden)
        full = torch.cat([self.prefix.expand(n, -1), suffix], dim=1)
        return self.model(full)[:, self.prefix.shape[1] :]


class NextTokenScorer:
    """log2 Pr(next token | prefix + suffix) for batches of suffixes that share one prefix.

    The prefix is computed once per replica (:class:`_Replica`). With ``shards`` > 1 the model is
    replicated on ``shard_devices`` and the batches of one call are split over the replicas, each
    in its own thread (batch b to replica b mod shards): the batches are the ones a single device
    would score, so on identical devices the results are identical, bit for bit. Counts forward
    calls and rows (sequences) for the budgets and benchmarks.
    """

    def __init__(self, model: nn.Module, prefix_ids: Sequence[int], batch_size: int = 1024,
                 device: str | torch.device = "cpu", reuse_prefix: bool = True, max_suffix: int = 0,
                 shards: int = 1) -> None:
        if not prefix_ids:
            raise ValueError("the prefix must have at least one token")
        limit = max_positions(model)
        if limit is not None and len(prefix_ids) + max_suffix > limit:
            # The model never saw a longer window: condition on the last tokens of the prefix that fit.
            keep = limit - max_suffix
            if keep < 1:
                raise ValueError(f"a {max_suffix}-token candidate does not fit the model's {limit}-token context")
            prefix_ids = list(prefix_ids)[-keep:]
        devices = shard_devices(device, shards)
        self.replicas = [_Replica(model if i == 0 else copy.deepcopy(model).to(d), prefix_ids, d, reuse_prefix)
                         for i, d in enumerate(devices)]
        self.model = self.replicas[0].model
        self.device = devices[0]
        self.batch_size = batch_size
        self.prefix = self.replicas[0].prefix
        self.calls = 0
        self.rows = 0
        self.exact_rows = 0  # rows rescored in float64 by exact_px
        self._model64: nn.Module | None = None
        self._root_log2 = (torch.log_softmax(self.replicas[0].root, -1) / LN2).cpu().numpy().astype(np.float64)

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the model's weights (what the scores are computed in)."""
        return next((p.dtype for p in self.model.parameters() if p.is_floating_point()), torch.float32)

    def exact_px(self, candidates: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
        """Px (bits) of candidates (rows, or sequences of any lengths) by :func:`exact_px_bits`
        (float64, full sequences, same prefix)."""
        if self._model64 is None:
            self._model64 = float64_copy(self.model)
        self.exact_rows += len(candidates)
        prefix = self.prefix[0].tolist()
        return by_length(candidates, lambda rows: exact_px_bits(self._model64, prefix, rows, self.batch_size,
                                                                self.device))

    def _batches(self, n: int, score_batch) -> list:
        """``score_batch(replica, start, stop)`` for every batch of ``n`` rows, results in batch order,
        batch b on replica b mod shards (``sharding.round_robin``).

        ``score_batch`` returns (result, whether the model ran); model calls and rows are counted.
        """
        starts = list(range(0, n, self.batch_size))
        results = round_robin(len(starts), len(self.replicas), lambda b, r: score_batch(
            self.replicas[r], starts[b], min(starts[b] + self.batch_size, n)))
        for b, (_, called) in enumerate(results):
            if called:
                self.calls += 1
                self.rows += min(starts[b] + self.batch_size, n) - starts[b]
        return [result for result, _ in results]

    @torch.no_grad()
    def log2_next(self, suffixes: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """[N, V] log2 next-token probabilities after prefix + each suffix row ([N, d] ints, d >= 0).

        ``columns`` (token ids) keeps only those columns, [N, len(columns)], gathered on the device
        (a 50k-token vocabulary would otherwise move 400 KB per row); the values are the same.
        """
        n, d = suffixes.shape
        if d == 0:
            root = self._root_log2 if columns is None else self._root_log2[columns]
            return np.repeat(root[None, :], n, axis=0)

        def score(replica: _Replica, start: int, stop: int) -> np.ndarray:
            chunk = torch.as_tensor(suffixes[start:stop], dtype=torch.long, device=replica.device)
            log2p = torch.log_softmax(replica.all_logits(chunk)[:, -1].float(), -1) / LN2
            if columns is not None:
                log2p = log2p[:, torch.as_tensor(columns, dtype=torch.long, device=replica.device)]
            return log2p.cpu().numpy(), True

        width = self._root_log2.shape[0] if columns is None else len(columns)
        parts = self._batches(n, score)
        return np.concatenate(parts).astype(np.float64, copy=False) if parts else np.empty((0, width))

    @torch.no_grad()
    def log2_next_ragged(self, suffixes: Sequence[Sequence[int]],
                         columns: Sequence[np.ndarray] | None = None) -> list[np.ndarray] | np.ndarray:
        """Like :meth:`log2_next` for suffixes of different lengths, in one forward pass per batch.

        Rows are right-padded; causal attention means padding never changes the
        logits at a row's last real position, which is the one read. With ``columns``
        (token ids per row) each row keeps only its own columns and a list is returned.
        """
        def score(replica: _Replica, start: int, stop: int) -> list[np.ndarray]:
            chunk = suffixes[start:stop]
            lengths = np.array([len(s) for s in chunk])
            device = replica.device
            called = int(lengths.max()) > 0
            if not called:  # every suffix empty: the root's scores, no model call
                log2p = torch.as_tensor(self._root_log2, device=device).expand(len(chunk), -1)
            else:
                padded = np.zeros((len(chunk), int(lengths.max())), dtype=np.int64)
                for row, suffix in enumerate(chunk):
                    padded[row, : len(suffix)] = suffix
                logits = replica.all_logits(torch.as_tensor(padded, device=device))
                index = torch.as_tensor(np.maximum(lengths - 1, 0), device=device)
                last = logits[torch.arange(len(chunk), device=device), index]
                log2p = torch.log_softmax(last.float(), -1) / LN2
                root = torch.as_tensor(self._root_log2, device=device, dtype=log2p.dtype)
                log2p[torch.as_tensor(lengths == 0, device=device)] = root
            if columns is None:
                return [log2p[row].cpu().numpy().astype(np.float64) for row in range(len(chunk))], called
            return [log2p[row, torch.as_tensor(columns[start + row], dtype=torch.long, device=device)]
                    .cpu().numpy().astype(np.float64) for row in range(len(chunk))], called

        out = [row for part in self._batches(len(suffixes), score) for row in part]
        return out if columns is not None else np.array(out, dtype=np.float64).reshape(len(suffixes), -1)

    @torch.no_grad()
    def sequence_px(self, candidates: np.ndarray) -> np.ndarray:
        """Px (bits) of each full candidate row ([N, D] tokens after the prefix) in one pass per batch."""
        n, depth = candidates.shape

        def score(replica: _Replica, start: int, stop: int) -> np.ndarray:
            chunk = torch.as_tensor(candidates[start:stop], dtype=torch.long, device=replica.device)
            first = -self._root_log2[chunk[:, 0].cpu().numpy()]
            if depth == 1:
                return first, True
            log2p = torch.log_softmax(replica.all_logits(chunk[:, :-1]).float(), -1) / LN2
            rest = -log2p.gather(-1, chunk[:, 1:].unsqueeze(-1)).squeeze(-1).sum(dim=1).cpu().numpy()
            return first + rest, True

        parts = self._batches(n, score)
        return np.concatenate(parts).astype(np.float64, copy=False) if parts else np.empty(0)


def max_positions(model: nn.Module) -> int | None:
    """Longest sequence a model accepts (position embeddings), or None (recurrent models)."""
    if isinstance(model, CausalLM):
        config = model.model.config
        for name in ("n_positions", "max_position_embeddings"):
            value = getattr(config, name, None)
            if isinstance(value, int):
                return value
    return None


def float64_copy(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` on the same device, in eval mode (the original is untouched)."""
    return copy.deepcopy(model).double().eval()


@torch.no_grad()
def exact_px_bits(model64: nn.Module, prefix_ids: Sequence[int], candidates: np.ndarray,
                  batch_size: int = 256, device: str | torch.device = "cpu") -> np.ndarray:
    """Px (bits) of each candidate row ([N, D] ids after the prefix) by a full float64 forward pass.

    The reference computation of exact rank: no KV cache, no prefix sharing, every
    row the whole sequence prefix + candidate, in float64 (rounding ~1e-13 bits,
    against ~1e-6 for float32), so near-ties between candidates are resolved the
    same way whichever batch a candidate lands in. ``model64`` comes from
    :func:`float64_copy`.
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    n, depth = candidates.shape
    if depth == 0:
        return np.zeros(n, dtype=np.float64)
    prefix = torch.as_tensor(list(prefix_ids), dtype=torch.long, device=device)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, batch_size):
        chunk = torch.as_tensor(candidates[start : start + batch_size], device=device)
        ids = torch.cat([prefix.expand(len(chunk), -1), chunk], dim=1)
        logprobs = torch.log_softmax(model64(ids[:, :-1]).double(), dim=-1)[:, len(prefix) - 1 :]
        picked = logprobs.gather(-1, chunk.unsqueeze(-1)).squeeze(-1)
        out[start : start + len(chunk)] = (-picked.sum(dim=1) / LN2).cpu().numpy()
    return out


def by_length(sequences: np.ndarray | Sequence[Sequence[int]], score) -> np.ndarray:
    """``score`` applied to the sequences grouped by length ([n, d] arrays), results in input order.

    Under a BPE the candidates of one format take different numbers of tokens; each group is
    scored as one rectangular batch (the character tokenizer gives one group, as before).
    """
    if isinstance(sequences, np.ndarray) and sequences.ndim == 2:
        return score(sequences.astype(np.int64, copy=False)) if len(sequences) else np.zeros(0)
    out = np.empty(len(sequences), dtype=np.float64)
    groups: dict[int, list[int]] = {}
    for i, seq in enumerate(sequences):
        groups.setdefault(len(seq), []).append(i)
    for length, members in sorted(groups.items()):
        rows = np.array([list(sequences[i]) for i in members], dtype=np.int64).reshape(len(members), length)
        out[members] = score(rows)
    return out


def path_px(scorer: NextTokenScorer, tokens: Sequence[int]) -> float:
    """Px (bits) of one candidate's tokens after the prefix, scored position by position."""
    tokens = list(tokens)
    cost = 0.0
    for depth in range(len(tokens)):  # the same batch shapes as the tree search, so the same floats
        cost -= scorer.log2_next(np.array([tokens[:depth]], dtype=np.int64).reshape(1, depth))[0, tokens[depth]]
    return float(cost)


def score_candidates(scorer: NextTokenScorer, candidates: np.ndarray | Sequence[Sequence[int]],
                     progress: bool = False) -> np.ndarray:
    """Px (bits) of every candidate (rows, or sequences of any lengths), by the cheaper of two evaluations.

    Tree: each distinct k-token prefix is one row of k tokens (wins when
    candidates share prefixes, e.g. enumerating a subtree). Flat: each candidate
    is one row of D tokens (wins for scattered random candidates).
    """
    return by_length(candidates, lambda rows: _score_rows(scorer, rows, progress))


def _score_rows(scorer: NextTokenScorer, candidates: np.ndarray, progress: bool) -> np.ndarray:
    n, depth = candidates.shape
    if depth == 0:
        return np.zeros(n, dtype=np.float64)
    tree_tokens = sum(k * len(np.unique(candidates[:, :k], axis=0)) for k in range(1, depth))
    if tree_tokens < n * depth:
        return score_tree(scorer, candidates, progress)
    return scorer.sequence_px(candidates)


def score_tree(scorer: NextTokenScorer, candidates: np.ndarray, progress: bool = False) -> np.ndarray:
    """Px (bits) of every row of ``candidates`` ([N, D] token ids after the prefix).

    Level by level over the candidates' token tree: at depth k the distinct
    k-token prefixes are scored once each, however many candidates share them.
    """
    n, depth = candidates.shape
    px = np.zeros(n, dtype=np.float64)
    for k in tqdm(range(depth), desc="score tree", unit="level", disable=not progress, leave=False):
        if k == 0:
            unique, inverse = np.zeros((1, 0), dtype=np.int64), np.zeros(n, dtype=np.int64)
        else:
            unique, inverse = np.unique(candidates[:, :k], axis=0, return_inverse=True)
        log2p = scorer.log2_next(unique)
        px -= log2p[inverse.reshape(-1), candidates[:, k]]
    return px
