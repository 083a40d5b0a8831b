"""Model replicas on several devices: which devices, and running batches round-robin over them.

Used by exposure scoring (``scoring.NextTokenScorer``) and sample generation
(``extraction.sampling``). Batch b always goes to replica b mod N and each replica takes its
batches in order, so the work done per batch is the work a single device does: on identical
devices the results are identical, bit for bit. Replicas run in threads: a GPU's kernels release
the GIL; on the CPU the replicas share the cores (torch already uses them all for one).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")


def shard_devices(device: str | torch.device, shards: int) -> list[torch.device]:
    """The devices of ``shards`` model replicas: cuda:0..shards-1 for CUDA, else ``shards`` times the CPU."""
    device = torch.device(device)
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if device.type == "cuda" and shards > 1:
        if shards > torch.cuda.device_count():
            raise ValueError(f"{shards} shards but {torch.cuda.device_count()} CUDA devices")
        return [torch.device("cuda", i) for i in range(shards)]
    return [device] * shards


def round_robin(batches: int, replicas: int, run_batch: Callable[[int, int], T]) -> list[T]:
    """``run_batch(b, r)`` for every batch b on replica r = b mod ``replicas``; results in batch order."""
    results: list = [None] * batches
    if replicas == 1 or batches <= 1:
        return [run_batch(b, 0) for b in range(batches)]

    def run(r: int) -> None:
        with torch.no_grad():  # per thread: the caller's no_grad does not reach this one
            for b in range(r, batches, replicas):
                results[b] = run_batch(b, r)

    with ThreadPoolExecutor(max_workers=replicas) as pool:
        for future in [pool.submit(run, r) for r in range(replicas)]:
            future.result()
    return results
