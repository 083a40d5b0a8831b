"""Training speed: DP-SGD step time over plain step time, throughput and peak memory.

Same model, batch and data in one process; plain and DP steps are measured in
alternating rounds and the median step time of each is kept, so machine noise
hits both alike. Peak memory is measured per variant in a fresh child process
(peak above the memory held before the first step). Writes JSON.

    python benchmarks/train_speed.py                    # gpt2 and lstm, defaults of params.yaml
    python benchmarks/train_speed.py --archs gpt2 --device cuda
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from canaryaudit.config import parse_params
from canaryaudit.corpus.emails import generate_emails
from canaryaudit.io import atomic_open
from canaryaudit.training.loop import make_optimizer, resolve_device
from _memory import peak_memory_during  # benchmarks/_memory.py
from canaryaudit.training.pipeline import build_variant_model, prepare_data

warnings.filterwarnings("ignore")


def _setup(arch: str, dp: bool, device: str, batch: int, context: int, mode: str = "ew"):
    variant = {"model": {"arch": arch, "context": context}, "batch_size": batch, "physical_batch_size": batch,
               "device": device}
    if dp:
        variant["dp"] = {"enabled": True, "noise_multiplier": 1.0}
    settings = parse_params({"train": {"variants": {"v": variant}}}).train.variant("v")
    texts = [d.text for d in generate_emails(0, 200_000)]
    data = prepare_data(settings, texts[:-20], texts[-20:-10], texts[-10:])
    model, _ = build_variant_model(settings, data.tokenizer)
    dev = resolve_device(device)
    model.to(dev)
    optimizer = make_optimizer(settings, model.parameters())
    loader = torch.utils.data.DataLoader(data.train, batch_size=batch, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    if dp:
        from opacus import PrivacyEngine

        # Fixed-size batches (no Poisson sampling) so both variants process the same tokens per step.
        model, optimizer, loader = PrivacyEngine(accountant="prv").make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=1.0, max_grad_norm=1.0,
            poisson_sampling=False, grad_sample_mode=mode)
    return model, optimizer, loader, dev


def _step_times(state, steps: int) -> list[float]:
    model, optimizer, loader, dev = state
    times = []
    batches = iter(loader)
    for _ in range(steps):
        try:
            inputs, targets = next(batches)
        except StopIteration:
            batches = iter(loader)
            inputs, targets = next(batches)
        inputs, targets = inputs.to(dev), targets.to(dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        logits = model(inputs)
        nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).backward()
        optimizer.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def _peak_child(arch: str, dp: bool, device: str, batch: int, context: int, steps: int, mode: str, queue) -> None:
    """Peak memory of training steps above the process's memory before them (bytes).

    CPU: RSS sampled every 2 ms by a thread (ru_maxrss would include import and
    data-preparation peaks); CUDA: the allocator's peak above its level before.
    """
    state = _setup(arch, dp, device, batch, context, mode)
    queue.put(peak_memory_during(lambda: _step_times(state, steps), state[3]))


def peak_memory(arch: str, dp: bool, device: str, batch: int, context: int, steps: int, mode: str) -> int:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_child, args=(arch, dp, device, batch, context, steps, mode, queue))
    proc.start()
    value = queue.get()
    proc.join()
    return int(value)


def measure(arch: str, device: str, batch: int, context: int, rounds: int, steps: int, modes: list[str]) -> dict:
    plain = _setup(arch, False, device, batch, context)
    private = {mode: _setup(arch, True, device, batch, context, mode) for mode in modes}
    _step_times(plain, 2)  # warm-up: allocator, kernels, hooks
    for state in private.values():
        _step_times(state, 2)
    plain_times: list[float] = []
    dp_times: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(rounds):  # alternate, so drift in machine load affects every variant alike
        plain_times += _step_times(plain, steps)
        for mode, state in private.items():
            dp_times[mode] += _step_times(state, steps)
    plain_s = statistics.median(plain_times)
    tokens = batch * context
    out = {
        "plain_step_ms": plain_s * 1e3,
        "plain_tokens_per_s": tokens / plain_s,
        "plain_train_memory_mb": peak_memory(arch, False, device, batch, context, steps, "ew") / 2**20,
        "steps_measured_per_variant": len(plain_times),
    }
    for mode in modes:
        dp_s = statistics.median(dp_times[mode])
        out[f"dp_{mode}"] = {
            "step_ms": dp_s * 1e3,
            "dp_overhead": dp_s / plain_s,
            "tokens_per_s": tokens / dp_s,
            "train_memory_mb": peak_memory(arch, True, device, batch, context, steps, mode) / 2**20,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["gpt2", "lstm"])
    parser.add_argument("--device", default="cpu")
    defaults = parse_params({}).train
    parser.add_argument("--batch", type=int, default=defaults.batch_size)
    parser.add_argument("--context", type=int, default=defaults.model.context)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6, help="steps per round per variant")
    parser.add_argument("--modes", nargs="+", default=["ew", "hooks"],
                        help="Opacus grad_sample_modes to compare (train.dp.grad_sample_mode: auto = ew, hooks for lstm)")
    parser.add_argument("--out", default="benchmarks/results/train_speed.json")
    args = parser.parse_args()
    results = {}
    for arch in args.archs:
        steps = args.steps if arch != "lstm" else max(2, args.steps // 3)  # DPLSTM is ~25x slower
        results[arch] = measure(arch, args.device, args.batch, args.context, args.rounds, steps, args.modes)
        print(arch, json.dumps(results[arch], indent=2), flush=True)
    payload = {
        "batch": args.batch, "context": args.context, "device": args.device, "results": results,
        "targets": {"gpt2_dp_overhead_max": 1.5, "auto_grad_sample_mode": {"gpt2": "ew", "lstm": "hooks"}},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
    }
    with atomic_open(Path(args.out)) as handle:
        json.dump(payload, handle, indent=2)


if __name__ == "__main__":
    main()
