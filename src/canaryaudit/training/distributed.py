"""Data-parallel training over processes with ``torch.distributed`` (one process per GPU, or gloo on CPU).

Processes are started by ``torchrun`` (``torch.distributed.run``), which sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT; :func:`init_world` joins the process group they name.
A single process (no torchrun) is the world of size 1, and every helper here then reduces to
the single-process behaviour exactly (same draws from the same generators, no collective calls).

Sharding keeps the *global* batch of the single-process run: every rank draws the same global
batch from an identically seeded generator and keeps the slice ``batch[rank::world]``. So
2 processes train on the same sequences per step as 1 process, and DP-SGD's Poisson sampling is
the global one the accountant assumes (sample rate q = expected global batch / N). Opacus' own
distributed sampler draws each rank's batch independently and skips a rank's empty batch, which
desynchronises the ranks' steps; the samplers below never skip a step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import BatchSampler, RandomSampler, Sampler

#: Environment variables torchrun sets in every worker.
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (size 1: no process group)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None  # gloo or nccl once the process group is joined

    @property
    def is_main(self) -> bool:
        """Rank 0 writes outputs, logs to MLflow and shows progress; the others only train."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_ENV)


def choose_backend(backend: str, device: torch.device) -> str:
    """``auto``: nccl for CUDA devices, gloo on CPU."""
    if backend != "auto":
        return backend
    return "nccl" if device.type == "cuda" else "gloo"


def init_world(device: torch.device, backend: str = "auto") -> tuple[World, torch.device]:
    """Join the process group torchrun set up, and pick this rank's device (cuda:LOCAL_RANK on GPUs).

    Outside torchrun: the single-process world and ``device``.
    """
    if not launched_by_torchrun():
        return SINGLE, device
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            from canaryaudit.errors import ParamsError

            raise ParamsError(f"train.distributed.nproc: process {local_rank} has no GPU "
                              f"({torch.cuda.device_count()} visible); use at most one process per GPU")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    chosen = choose_backend(backend, device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=chosen, rank=rank, world_size=size)
    return World(rank, size, local_rank, chosen), device


def quiet_workers(world: World) -> None:
    """Ranks other than 0 log warnings and errors only: one process speaks for the run."""
    if not world.is_main:
        import logging

        logging.getLogger("canaryaudit").setLevel(logging.WARNING)


def close_world(world: World) -> None:
    if world.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        torch.distributed.barrier()


def all_reduce_sum(values: Sequence[float], world: World) -> list[float]:
    """Element-wise sum of ``values`` over the ranks (float64); the values themselves in a single process."""
    if not world.distributed:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64)
    if world.backend == "nccl":
        tensor = tensor.cuda()
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return [float(v) for v in tensor.cpu()]


def gather_objects(value: object, world: World) -> list[object]:
    """``value`` of every rank, in rank order (a list of one in a single process)."""
    if not world.distributed:
        return [value]
    out: list[object] = [None] * world.size
    torch.distributed.all_gather_object(out, value)
    return out


def shard(indices: Sequence[int], world: World) -> list[int]:
    """This rank's share of a global batch: every world.size-th index from position rank."""
    return list(indices[world.rank :: world.size])


class ShardedBatchSampler(Sampler[list[int]]):
    """Shuffled global batches of ``batch_size`` (as ``DataLoader(shuffle=True)`` draws them), sharded.

    In a single process it yields exactly what ``DataLoader(dataset, batch_size, shuffle=True,
    generator=generator)`` yields, from the same generator draws.
    """

    def __init__(self, num_samples: int, batch_size: int, generator: torch.Generator, world: World = SINGLE):
        self.batches = BatchSampler(RandomSampler(range(num_samples), generator=generator), batch_size, drop_last=False)
        self.world = world

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            yield shard(batch, self.world)


class ShardedPoissonSampler(Sampler[list[int]]):
    """Poisson sampling for DP-SGD: each of ``num_samples`` sequences joins a step's global batch with
    probability ``sample_rate``, independently; this rank keeps its shard of it. ``steps`` batches
    per epoch, empty ones included (an empty batch is still a noisy, accounted step).

    The draw is Opacus' ``UniformWithReplacementSampler``'s (``torch.rand(N) < q`` on ``generator``),
    so a single process samples exactly as Opacus' Poisson data loader did.
    """

    def __init__(self, num_samples: int, sample_rate: float, steps: int, generator: torch.Generator,
                 world: World = SINGLE):
        if num_samples <= 0 or steps <= 0:
            raise ValueError(f"need samples and steps, got {num_samples} and {steps}")
        self.num_samples, self.sample_rate, self.steps = num_samples, sample_rate, steps
        self.generator, self.world = generator, world

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            mask = torch.rand(self.num_samples, generator=self.generator) < self.sample_rate
            yield shard(mask.nonzero(as_tuple=False).reshape(-1).tolist(), self.world)


def empty_safe_collate(dataset) -> Callable[[list], object]:
    """Collation that turns an empty batch into zero-length tensors shaped like the dataset's items
    (Opacus' ``wrap_collate_with_empty``): a Poisson batch can be empty, and so can a rank's shard."""
    from opacus.data_loader import wrap_collate_with_empty
    from torch.utils.data._utils.collate import default_collate

    first = dataset[0]
    return wrap_collate_with_empty(collate_fn=default_collate, sample_empty_shapes=[(0, *x.shape) for x in first],
                                   dtypes=[x.dtype for x in first])


def rank_device(device: torch.device, world: World) -> torch.device:
    """This rank's device: cuda:LOCAL_RANK when training on GPUs over several processes."""
    if world.distributed and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device
