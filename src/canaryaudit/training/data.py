"""Token streams and fixed-length training sequences.

Documents are tokenized and joined with <eos> into one stream, which is cut
into non-overlapping chunks of ``context + 1`` tokens (inputs are the first
``context``, targets the last ``context``). One chunk is the DP privacy unit:
a canary inserted k times sits in (up to) k chunks and is covered only by
group privacy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from canaryaudit.training.tokenizers import Tokenizer


def token_stream(texts: Sequence[str], tokenizer: Tokenizer) -> list[int]:
    stream: list[int] = []
    for text in texts:
        stream.extend(tokenizer.encode(text))
        stream.append(tokenizer.eos_id)
    return stream


def chunk_stream(stream: Sequence[int], context: int) -> torch.Tensor:
    """[N, context + 1] int64 chunks; the tail shorter than a chunk is dropped."""
    size = context + 1
    n = len(stream) // size
    if n == 0:
        raise ValueError(f"{len(stream)} tokens make no sequence of {size} tokens; lower train.model.context")
    return torch.tensor(stream[: n * size], dtype=torch.long).view(n, size)


def sequence_dataset(chunks: torch.Tensor) -> TensorDataset:
    """(inputs, targets) pairs, contiguous (Opacus and .view need that)."""
    return TensorDataset(chunks[:, :-1].contiguous(), chunks[:, 1:].contiguous())


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
