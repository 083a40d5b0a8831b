"""Data-parallel step time: 2 torchrun processes against 1 on the same global batch, plain and DP-SGD.

Each configuration trains the same GPT-2 (2 layers, width 128, context 64) with the pipeline's
Trainer for a fixed number of optimizer steps on builtin emails, launched by torchrun with
--nproc-per-node 1 and 2 (gloo on the CPU, nccl on GPUs), so both pay the same launcher and
process-group costs; the time per step is read inside rank 0 (training only, after the first
step). Writes benchmarks/results/ddp_step.json with the ratios 2-process / 1-process.

    python benchmarks/ddp_step.py                 # CPU: 2 processes x 1 thread vs 1 x 1 thread
    python benchmarks/ddp_step.py --device cuda   # one process per GPU

On a machine with C cores, 1 process gets the same threads per process as each of the 2 (torchrun
sets OMP_NUM_THREADS=1 by default), so the ratio shows what sharding the batch gains, not what
threads would.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def settings_dict(device: str, dp: bool, steps: int, batch: int) -> dict:
    train = {"device": device, "epochs": 1, "max_steps": steps, "batch_size": batch, "physical_batch_size": batch,
             "eval_batch_size": 64, "model": {"arch": "gpt2", "layers": 2, "width": 128, "heads": 4, "context": 64},
             "optimizer": {"lr": 0.001, "warmup_steps": 0}, "variants": {"v": {}}}
    if dp:
        train["dp"] = {"enabled": True, "noise_multiplier": 1.0, "max_grad_norm": 1.0}
    return train


def worker(args) -> None:
    """One torchrun process: train, and rank 0 writes seconds per step."""
    from canaryaudit.config import parse_params
    from canaryaudit.corpus.emails import generate_emails
    from canaryaudit.training.distributed import close_world, init_world
    from canaryaudit.training.loop import Trainer, resolve_device
    from canaryaudit.training.pipeline import build_variant_model, prepare_data

    settings = parse_params({"train": settings_dict(args.device, args.dp, args.steps, args.batch)}).train.variant("v")
    texts = [d.text for d in generate_emails(3, 600_000)]
    data = prepare_data(settings, texts[:-10], texts[-10:-5], texts[-5:])
    world, _ = init_world(resolve_device(settings.device))
    try:
        model, _ = build_variant_model(settings, data.tokenizer)
        result = Trainer(settings, model, data.train, data.valid, data.test, progress=False, world=world).run()
    finally:
        close_world(world)
    if world.is_main:
        Path(args.out).write_text(json.dumps({"seconds_per_step": result.train_seconds / result.steps,
                                              "steps": result.steps, "processes": world.size}))


def launch(nproc: int, dp: bool, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", __file__,
               "--worker", "--out", str(out), "--device", args.device, "--steps", str(args.steps),
               "--batch", str(args.batch), *(["--dp"] if dp else [])]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64, help="global batch (sequences per step)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--dp", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    results = {}
    for name, dp in (("plain", False), ("dp", True)):
        one, two = launch(1, dp, args), launch(2, dp, args)
        results[name] = {"one_process": one, "two_processes": two,
                         "step_time_ratio": two["seconds_per_step"] / one["seconds_per_step"]}
        print(f"{name}: 1 process {one['seconds_per_step'] * 1000:.0f} ms/step, 2 processes "
              f"{two['seconds_per_step'] * 1000:.0f} ms/step, ratio {results[name]['step_time_ratio']:.2f}")
    RESULTS.mkdir(exist_ok=True)
    payload = {"global_batch": args.batch, "steps": args.steps, "device": args.device, "threads_per_process": args.threads,
               "results": results, "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                               "time": time.strftime("%Y-%m-%d %H:%M")}}
    (RESULTS / "ddp_step.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
