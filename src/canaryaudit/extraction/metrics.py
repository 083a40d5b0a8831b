"""Membership metrics for ranking generated samples (Carlini et al. 2021, section 5.2; Shi et al. 2023).

ONE direction for every metric: **higher score = more likely memorized** (a
training-set member). Every metric is computed from per-token log-probs in
**bits**: log2 Pr(x_i | x_<i) (<= 0) for the tokens i >= 1 of a sequence (the
first token has no prediction). The log-perplexity of a sequence is the mean of
-log2 p over those tokens, in bits/token (>= 0, lower = more likely).

Registered in :data:`METRICS` by their params.yaml names (lp = log-perplexity):

- ``perplexity``: -lp_target.
- ``reference_ratio``: lp_reference / lp_target. The paper ranks by
  lp_target / lp_reference ascending; ours is its reciprocal, the same order.
- ``zlib``: zlib bits / total target bits, where zlib bits = 8 x the length of
  zlib.compress(UTF-8 text) at the default level, and total target bits = the
  sum of -log2 p (= lp_target x tokens): how many times better than zlib the
  model compresses the sample. The paper ranks by lp_target / zlib ascending;
  with equal token counts this is the same order.
- ``lowercase``: lp_lowercased / lp_target, where lp_lowercased is the target
  model's log-perplexity of the lowercased sample (the paper's ratio, ranked
  highest first as in its reference code): a memorized sample's exact casing is
  much likelier than its lowercased form.
- ``window``: -min over every window of ``window_tokens`` consecutive tokens
  (all of them, the last included) of the window's log-perplexity; a sequence
  shorter than the window is one window.
- ``min_k``: Min-K% prob: the mean of the lowest floor(k x n) (at least one)
  token log2-probs, in bits (<= 0); higher = member.

Denominators are floored at :data:`EPS_BITS` bits/token, so a log-perplexity of
exactly 0 (probabilities that round to 1) gives a large finite score, never a
division by zero or nan.

Sequences longer than the model's context are scored with the windows of
:func:`canaryaudit.extraction.sampling.context_start` (half-window shift), the
same contexts the samples were generated with.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from canaryaudit.exposure.scoring import LN2, max_positions
from canaryaudit.extraction.sampling import window_shift
from canaryaudit.registry import Registry
from canaryaudit.training.tokenizers import Tokenizer

EPS_BITS = 1e-6  # floor of a log-perplexity (bits/token) used as a denominator


@dataclass(frozen=True)
class MetricInputs:
    """Everything the metrics read; compute each per-token array once and share it between metrics."""

    target: Sequence[np.ndarray]  # per sequence: log2 p of tokens 1.. under the audited model (bits)
    texts: Sequence[str] | None = None  # zlib
    reference: Sequence[np.ndarray] | None = None  # reference_ratio: the same sequences under the reference model
    lowercase: Sequence[np.ndarray] | None = None  # lowercase: the lowercased sequences under the audited model
    window_tokens: int = 50
    min_k_fraction: float = 0.2


# ---------------------------------------------------------------- per-sequence statistics (pure)


def log_perplexity(log2probs: np.ndarray) -> float:
    """Mean -log2 p (bits/token)."""
    return float(-np.mean(log2probs))


def min_window_log_perplexity(log2probs: np.ndarray, window: int) -> float:
    """Lowest log-perplexity (bits/token) over all windows of ``window`` consecutive tokens."""
    n = len(log2probs)
    if n <= window:
        return log_perplexity(log2probs)
    sums = np.concatenate([[0.0], np.cumsum(-np.asarray(log2probs, dtype=np.float64))])
    return float((sums[window:] - sums[:-window]).min() / window)  # n - window + 1 windows, the last included


def min_k_count(n: int, fraction: float) -> int:
    """floor(fraction x n), at least 1; the tiny slack keeps e.g. 0.29 x 100 at 29, not 28.999... -> 28."""
    return max(1, math.floor(n * fraction + 1e-9))


def min_k_mean(log2probs: np.ndarray, fraction: float) -> float:
    """Mean of the lowest ``min_k_count`` log2-probs (bits, <= 0)."""
    k = min_k_count(len(log2probs), fraction)
    return float(np.mean(np.sort(np.asarray(log2probs, dtype=np.float64))[:k]))


def zlib_bits(text: str) -> int:
    """Size in bits of zlib.compress (default level) of the UTF-8 text."""
    return 8 * len(zlib.compress(text.encode("utf-8")))


def _floored(log_ppl: np.ndarray) -> np.ndarray:
    return np.maximum(log_ppl, EPS_BITS)


# ---------------------------------------------------------------- the metrics (higher = more likely memorized)


def _need(inputs: MetricInputs, field: str, metric: str, what: str) -> Sequence:
    value = getattr(inputs, field)
    if value is None:
        raise ValueError(f"membership metric {metric!r} needs {what} (MetricInputs.{field}); "
                         f"compute it or drop {metric!r} from extract.metrics")
    if len(value) != len(inputs.target):
        raise ValueError(f"membership metric {metric!r}: {len(value)} {field} entries "
                         f"for {len(inputs.target)} sequences")
    return value


def _lp(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.array([log_perplexity(a) for a in arrays], dtype=np.float64)


def perplexity_score(inputs: MetricInputs) -> np.ndarray:
    return -_lp(inputs.target)


def reference_ratio_score(inputs: MetricInputs) -> np.ndarray:
    reference = _need(inputs, "reference", "reference_ratio", "the reference model's log-probs")
    return _lp(reference) / _floored(_lp(inputs.target))


def zlib_score(inputs: MetricInputs) -> np.ndarray:
    texts = _need(inputs, "texts", "zlib", "the sample texts")
    total_bits = _floored(_lp(inputs.target)) * np.array([len(a) for a in inputs.target])
    return np.array([zlib_bits(t) for t in texts], dtype=np.float64) / total_bits


def lowercase_score(inputs: MetricInputs) -> np.ndarray:
    lowered = _need(inputs, "lowercase", "lowercase", "the audited model's log-probs of the lowercased samples")
    return _lp(lowered) / _floored(_lp(inputs.target))


def window_score(inputs: MetricInputs) -> np.ndarray:
    if inputs.window_tokens < 1:
        raise ValueError(f"window_tokens must be >= 1, got {inputs.window_tokens}")
    return -np.array([min_window_log_perplexity(a, inputs.window_tokens) for a in inputs.target], dtype=np.float64)


def min_k_score(inputs: MetricInputs) -> np.ndarray:
    if not 0.0 < inputs.min_k_fraction <= 1.0:
        raise ValueError(f"min_k_fraction must be in (0, 1], got {inputs.min_k_fraction}")
    return np.array([min_k_mean(a, inputs.min_k_fraction) for a in inputs.target], dtype=np.float64)


METRICS: Registry[Callable[[MetricInputs], np.ndarray]] = Registry("membership metric")
METRICS.add("perplexity", perplexity_score)
METRICS.add("reference_ratio", reference_ratio_score)
METRICS.add("zlib", zlib_score)
METRICS.add("lowercase", lowercase_score)
METRICS.add("window", window_score)
METRICS.add("min_k", min_k_score)

# which optional MetricInputs field each metric reads (the passes a caller must run)
NEEDS: dict[str, str] = {"reference_ratio": "reference", "zlib": "texts", "lowercase": "lowercase"}


def compute_metrics(names: Sequence[str], inputs: MetricInputs) -> dict[str, np.ndarray]:
    """Score of every sequence under each named metric (higher = more likely memorized)."""
    functions = {name: METRICS.get(name) for name in names}  # unknown names fail before any work
    for label, arrays in (("target", inputs.target), ("reference", inputs.reference), ("lowercase", inputs.lowercase)):
        for i, array in enumerate(arrays or ()):
            if len(array) == 0:
                raise ValueError(f"sequence {i} has no predicted token in the {label} log-probs (needs >= 2 tokens)")
    return {name: fn(inputs) for name, fn in functions.items()}


# ---------------------------------------------------------------- per-token log-probs from a model


def window_rows(length: int, limit: int | None) -> list[tuple[int, int, int]]:
    """The forward passes that score a ``length``-token sequence: (start, stop, first) each.

    Input tokens [start, stop); the logits at index j predict token start + j + 1
    and those at j >= first are read. Every token 1..length-1 is read exactly
    once, from the window of :func:`~canaryaudit.extraction.sampling.context_start`.
    """
    last = length - 1  # the last token with a prediction
    if last < 1:
        return []
    if limit is None or last <= limit:
        return [(0, last, 0)]
    shift = window_shift(limit)
    rows, start = [], 0
    while True:
        stop = min(start + limit, last)
        rows.append((start, stop, 0 if start == 0 else limit - shift))
        if stop >= last:
            return rows
        start += shift


def _picked_log2probs(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log2 Pr(target | inputs so far) at every position ([B, T]), without a [B, T, V] log-softmax copy."""
    logits = model(inputs).float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (picked - torch.logsumexp(logits, dim=-1)) / LN2


@torch.no_grad()
def token_log2probs(model: nn.Module, sequences: Sequence[Sequence[int]], batch_size: int = 128,
                    device: str | torch.device = "cpu", progress: bool = False) -> list[np.ndarray]:
    """For each sequence, log2 Pr(token_i | context) for i >= 1 (bits), in batched forward passes.

    Every context window of every sequence is one row; ``batch_size`` rows
    (right-padded: causal attention keeps padding from changing real positions)
    go through the model together.
    """
    device = torch.device(device)
    model = model.eval()
    limit = max_positions(model)
    out = [np.zeros(max(len(s) - 1, 0), dtype=np.float64) for s in sequences]
    rows = [(i, *row) for i, s in enumerate(sequences) for row in window_rows(len(s), limit)]
    with tqdm(total=len(rows), desc="score", unit="window", disable=not progress, leave=False) as bar:
        for first_row in range(0, len(rows), batch_size):
            chunk = rows[first_row : first_row + batch_size]
            width = max(stop - start for _, start, stop, _ in chunk)
            inputs = np.zeros((len(chunk), width), dtype=np.int64)
            targets = np.zeros((len(chunk), width), dtype=np.int64)
            for r, (i, start, stop, _) in enumerate(chunk):
                inputs[r, : stop - start] = sequences[i][start:stop]
                targets[r, : stop - start] = sequences[i][start + 1 : stop + 1]
            log2p = _picked_log2probs(model, torch.as_tensor(inputs, device=device),
                                      torch.as_tensor(targets, device=device)).cpu().numpy()
            for r, (i, start, stop, read) in enumerate(chunk):
                out[i][start + read : stop] = log2p[r, read : stop - start]  # out[i][k] is token k + 1
            bar.update(len(chunk))
    return out


def lowercased_ids(token_ids: Sequence[int], tokenizer: Tokenizer) -> list[int]:
    """The sequence with its text lowercased and re-encoded; <eos> tokens kept where they were."""
    pieces: list[list[int]] = [[]]
    for token in token_ids:
        if token == tokenizer.eos_id:
            pieces.append([])
        else:
            pieces[-1].append(token)
    ids: list[int] = []
    for n, piece in enumerate(pieces):
        if n:
            ids.append(tokenizer.eos_id)
        if piece:
            ids.extend(tokenizer.encode(tokenizer.decode(piece).lower()))
    return ids


def metric_inputs(names: Sequence[str], model: nn.Module, tokenizer: Tokenizer, sequences: Sequence[Sequence[int]],
                  texts: Sequence[str] | None = None, *, target: Sequence[np.ndarray] | None = None,
                  reference_model: nn.Module | None = None,
                  reference_sequences: Sequence[Sequence[int]] | None = None, batch_size: int = 128,
                  device: str | torch.device = "cpu", window_tokens: int = 50, min_k_fraction: float = 0.2,
                  progress: bool = False) -> MetricInputs:
    """Run only the batched passes the named metrics need: target, reference and lowercase.

    ``target``: the sequences' log-probs if already known (``Sample.log2probs``
    from generation): the target pass is then skipped.
    ``reference_sequences``: the same samples in the reference model's token ids
    (default: ``sequences``, right when both models share the tokenizer).
    """
    for name in names:
        METRICS.get(name)
    wanted = {NEEDS[n] for n in names if n in NEEDS}
    if "texts" in wanted and texts is None:
        raise ValueError("membership metric 'zlib' needs the sample texts")
    if "reference" in wanted and reference_model is None:
        raise ValueError("membership metric 'reference_ratio' needs a reference model (extract.reference_variant)")
    reference = lowercase = None
    if "reference" in wanted:
        ref_ids = sequences if reference_sequences is None else reference_sequences
        reference = token_log2probs(reference_model, ref_ids, batch_size, device, progress)
    if "lowercase" in wanted:
        # Inherent to the metric: the lowercased text is a different token sequence, so one more pass.
        lowered = [lowercased_ids(s, tokenizer) for s in sequences]
        lowercase = token_log2probs(model, lowered, batch_size, device, progress)
    if target is None:
        target = token_log2probs(model, sequences, batch_size, device, progress)
    elif len(target) != len(sequences):
        raise ValueError(f"{len(target)} target log-prob arrays for {len(sequences)} sequences")
    return MetricInputs(target=[np.asarray(a, dtype=np.float64) for a in target],
                        texts=texts, reference=reference, lowercase=lowercase,
                        window_tokens=window_tokens, min_k_fraction=min_k_fraction)


# lowercase is uninformative when lowercasing leaves (nearly) every scored text as it was:
# lp_lowercased / lp_target is then identically 1 and ranks by float noise.
LOWERCASE_UNCHANGED_SHARE = 0.95


def degenerate_metrics(scores: Mapping[str, np.ndarray], texts: Sequence[str]) -> dict[str, str]:
    """Metric name -> why its scores cannot separate anything (metrics not listed are informative).

    - every text scores the same (a constant score gives AUC 0.5 whatever the data);
    - ``lowercase``: at least 95 % of the texts are unchanged by lowercasing (an already-lowercase
      corpus), so the ratio compares a text with itself.
    """
    out: dict[str, str] = {}
    for name, values in scores.items():
        values = np.asarray(values, dtype=np.float64)
        if values.size and float(values.max() - values.min()) == 0.0:
            out[name] = "every scored text gets the same score"
    if "lowercase" in scores and texts:
        unchanged = sum(t.lower() == t for t in texts) / len(texts)
        if unchanged >= LOWERCASE_UNCHANGED_SHARE:
            out["lowercase"] = (f"{unchanged:.0%} of the scored texts are unchanged by lowercasing, so the "
                                "lowercase ratio compares a text with itself")
    return out
