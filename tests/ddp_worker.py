"""One training process of tests/test_distributed.py, started by torchrun (or run alone for 1 process).

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_worker.py CASE OUT [--interrupt]

Builds the case's data and settings exactly as the test does (``case_setup``), trains with the
world torchrun set up, and rank 0 writes the trained weights (safetensors) and a JSON of the run to OUT.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from canaryaudit.config import TrainSettings, parse_params  # noqa: E402
from canaryaudit.corpus.emails import generate_emails  # noqa: E402
from canaryaudit.training.distributed import close_world, init_world  # noqa: E402
from canaryaudit.training.loop import Trainer, resolve_device  # noqa: E402
from canaryaudit.training.pipeline import build_variant_model, prepare_data  # noqa: E402

BASE = {
    "device": "cpu", "epochs": 2, "batch_size": 16, "physical_batch_size": 8, "eval_batch_size": 32,
    "model": {"arch": "gpt2", "layers": 1, "width": 32, "heads": 2, "context": 16},
    "optimizer": {"name": "sgd", "lr": 0.5, "warmup_steps": 0, "schedule": "constant"},
}
CASES = {
    "plain": {},
    "dp": {"dp": {"enabled": True, "noise_multiplier": 1.0, "max_grad_norm": 1.0}},
    "adam": {"optimizer": {"name": "adamw", "lr": 0.003, "warmup_steps": 2}},
}
#: Training sequences: 16 x 9 + 1, so each epoch ends with a global batch of one sequence and
#: the second process gets an empty shard (its zero-weight pass must still join DDP's all-reduce).
SEQUENCES = 16 * 9 + 1


def case_settings(case: str) -> TrainSettings:
    merged = json.loads(json.dumps(BASE))
    for key, value in CASES[case].items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and key in merged else value
    return parse_params({"train": {**merged, "variants": {"v": {}}}}).train.variant("v")


def case_setup(case: str):
    """(settings, data with SEQUENCES training sequences, fresh model) for ``case``; the same in every process."""
    settings = case_settings(case)
    texts = [d.text for d in generate_emails(11, 40_000)]
    data = prepare_data(settings, texts[:-6], texts[-6:-3], texts[-3:])
    data.train = torch.utils.data.TensorDataset(*(t[:SEQUENCES] for t in data.train.tensors))
    model, _spec = build_variant_model(settings, data.tokenizer)
    return settings, data, model


def run_case(case: str, checkpoints: Path | None = None, interrupt_after: int | None = None, world=None):
    settings, data, model = case_setup(case)

    def on_epoch(record) -> None:
        if interrupt_after is not None and record.epoch == interrupt_after:
            raise KeyboardInterrupt

    kwargs = {} if world is None else {"world": world}
    trainer = Trainer(settings, model, data.train, data.valid, data.test, progress=False,
                      checkpoint_dir=checkpoints, checkpoint_key="k", on_epoch=on_epoch, **kwargs)
    return trainer.run()


def summary(result) -> dict:
    return {"epsilon": result.epsilon, "steps": result.steps, "test_loss": result.test_loss,
            "history": [[h.train_loss, h.valid_loss, h.epsilon] for h in result.history],
            "resumed_from_epoch": result.resumed_from_epoch,
            "dp": None if result.dp is None else [result.dp.noise_multiplier, result.dp.sample_rate,
                                                  result.dp.delta, result.dp.steps]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("out")
    parser.add_argument("--checkpoints", default=None)
    parser.add_argument("--interrupt-after", type=int, default=None)
    args = parser.parse_args()
    world, _ = init_world(resolve_device("cpu"))
    try:
        result = run_case(args.case, Path(args.checkpoints) if args.checkpoints else None, args.interrupt_after, world)
    except KeyboardInterrupt:
        return 130
    finally:
        close_world(world)
    if world.is_main:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().clone().contiguous() for k, v in result.model.state_dict().items()}, str(out / "model.safetensors"))
        (out / "run.json").write_text(json.dumps({**summary(result), "world_size": world.size}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
