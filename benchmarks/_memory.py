"""Peak memory of a piece of work above the level before it (shared by the training benchmarks).

CPU: RSS sampled every 2 ms by a thread (ru_maxrss would include import and data-preparation
peaks); CUDA: the allocator's peak above its level before. Bytes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch


def peak_memory_during(work: Callable[[], object], device: torch.device) -> int:
    """Bytes above the starting level at the peak of ``work()`` on ``device``."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        work()
        return int(torch.cuda.max_memory_allocated(device) - before)
    import psutil

    process = psutil.Process()
    before = process.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            done.wait(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    return int(peak[0] - before)
