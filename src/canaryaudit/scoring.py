"""Log-perplexity of continuations given a shared prefix, in bits (lower = more likely).

Px(x) = sum_i -log2 Pr(x_i | x_<i) over the continuation's tokens only.
This is the batched, gradient-free baseline; the exposure stage reuses the
prefix computation across candidates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

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
        logprobs = torch.log_softmax(model(ids[:, :-1]).float(), dim=-1)
        targets = ids[:, n_prefix:]
        picked = logprobs[:, n_prefix - 1 :, :].gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        out[start : start + len(chunk)] = (-picked.sum(dim=1) / LN2).cpu().numpy()
    return out
