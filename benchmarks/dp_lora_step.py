"""DP-SGD step cost with and without LoRA on a tiny Llama config: time and peak memory, as ratios.

Four variants of one model, batch and data in one process: plain-full, DP-full, plain-LoRA,
DP-LoRA (LoRA r 8 on q_proj and v_proj, the default). The model is a Llama-family config
(hidden 256, 4 layers, 4 heads, MLP 688) saved as a local pretrained folder with a
SentencePiece-style tokenizer and fine-tuned through ``hf:PATH`` as the pipeline does
(``build_variant_model``, ``make_optimizer`` over the trainable parameters, the auto
grad_sample_mode); DP batches are fixed-size (no Poisson sampling) so every variant processes
the same tokens per step. Variants are measured in alternating rounds and the median step time
kept, so machine noise hits all alike; peak memory is measured per variant in a fresh child
process (RSS above the level before the first step; on CUDA the allocator's peak). Writes JSON.

Targets: DP-LoRA / plain-LoRA step time <= 1.3. DP-full / plain-full is reported beside it.

    python benchmarks/dp_lora_step.py
    python benchmarks/dp_lora_step.py --device cuda --batch 64
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from canaryaudit.config import TrainSettings, parse_params
from canaryaudit.corpus.emails import generate_emails
from canaryaudit.io import atomic_open
from canaryaudit.training.loop import grad_sample_mode, make_optimizer, resolve_device, trainable
from _memory import peak_memory_during  # benchmarks/_memory.py
from canaryaudit.training.pipeline import build_variant_model, prepare_data

warnings.filterwarnings("ignore")

MODEL = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4,
         "intermediate_size": 688}
VARIANTS = ("plain_full", "dp_full", "plain_lora", "dp_lora")


def _texts() -> list[str]:
    return [d.text for d in generate_emails(0, 150_000)]


def make_pretrained(folder: Path, vocab: int, context: int) -> Path:
    """A tiny Llama with a SentencePiece-style tokenizer (Metaspace, digits split), saved as safetensors."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"),
                                                     pre_tokenizers.Digits(individual_digits=True)])
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    backend.train_from_iterator(_texts(), trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<unk>", "<s>", "</s>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=max(context, 128),
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **MODEL)
    LlamaForCausalLM(config).save_pretrained(str(folder), safe_serialization=True)
    return folder


def _settings(folder: Path, variant: str, device: str, batch: int, context: int, mode: str) -> TrainSettings:
    dp, lora = variant.startswith("dp"), variant.endswith("lora")
    train = {"model": {"arch": f"hf:{folder}", "context": context}, "tokenizer": {"kind": "pretrained"},
             "batch_size": batch, "physical_batch_size": batch, "device": device,
             "lora": {"enabled": lora}, "dp": {"enabled": dp, "noise_multiplier": 1.0 if dp else None,
                                               "grad_sample_mode": mode}}
    return parse_params({"train": {**train, "variants": {"v": {}}}}).train.variant("v")


def _setup(folder: Path, variant: str, device: str, batch: int, context: int, mode: str = "auto"):
    settings = _settings(folder, variant, device, batch, context, mode)
    texts = _texts()
    data = prepare_data(settings, texts[:-20], texts[-20:-10], texts[-10:])
    model, _ = build_variant_model(settings, data.tokenizer)
    dev = resolve_device(device)
    model.to(dev).train()
    optimizer = make_optimizer(settings, trainable(model))
    loader = torch.utils.data.DataLoader(data.train, batch_size=batch, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    chosen = None
    if settings.dp.enabled:
        from opacus import PrivacyEngine

        chosen = grad_sample_mode(settings, model)  # what the Trainer would use
        model, optimizer, loader = PrivacyEngine(accountant="prv").make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=1.0, max_grad_norm=1.0,
            poisson_sampling=False, grad_sample_mode=chosen)
    n_trainable = sum(p.numel() for p in trainable(model))
    return (model, optimizer, loader, dev), chosen, n_trainable


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


def _peak_child(folder, variant, device, batch, context, steps, mode, queue) -> None:
    """Peak memory of training steps above the process's memory before them (bytes; benchmarks/_memory.py)."""
    state, _, _ = _setup(Path(folder), variant, device, batch, context, mode)
    queue.put(peak_memory_during(lambda: _step_times(state, steps), state[3]))


def peak_memory(folder: Path, variant: str, device: str, batch: int, context: int, steps: int, mode: str) -> int:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_child, args=(str(folder), variant, device, batch, context, steps, mode, queue))
    proc.start()
    value = queue.get()
    proc.join()
    return int(value)


def measure(folder: Path, device: str, batch: int, context: int, rounds: int, steps: int,
            extra_modes: dict[str, list[str]]) -> dict:
    """Step time (median) and peak memory of the four variants with the auto mode, plus other DP modes."""
    runs: dict[str, tuple[str, str]] = {v: (v, "auto") for v in VARIANTS}  # label -> (variant, mode)
    for variant, modes in extra_modes.items():
        for mode in modes:
            runs[f"{variant}_{mode}"] = (variant, mode)
    states, chosen, counts = {}, {}, {}
    for label, (variant, mode) in runs.items():
        states[label], chosen[label], counts[label] = _setup(folder, variant, device, batch, context, mode)
        _step_times(states[label], 2)  # warm-up: allocator, kernels, hooks
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(rounds):  # alternate, so drift in machine load affects every variant alike
        for label, state in states.items():
            times[label] += _step_times(state, steps)
    out: dict = {}
    for label, (variant, mode) in runs.items():
        step_s = statistics.median(times[label])
        out[label] = {
            "step_ms": step_s * 1e3, "tokens_per_s": batch * context / step_s,
            "grad_sample_mode": chosen[label], "trainable_parameters": counts[label],
            "train_memory_mb": peak_memory(folder, variant, device, batch, context, steps, mode) / 2**20,
            "steps_measured": len(times[label]),
        }
    for num, den in (("dp_lora", "plain_lora"), ("dp_full", "plain_full"), ("plain_lora", "plain_full"),
                     ("dp_lora", "dp_full")):
        out[f"{num}/{den}"] = {"step_time": out[num]["step_ms"] / out[den]["step_ms"],
                               "memory": out[num]["train_memory_mb"] / max(out[den]["train_memory_mb"], 1e-9)}
    for label, (variant, mode) in runs.items():
        if mode != "auto":
            base = "plain_lora" if variant.endswith("lora") else "plain_full"
            out[f"{label}/{base}"] = {"step_time": out[label]["step_ms"] / out[base]["step_ms"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="steps per round per variant")
    parser.add_argument("--compare-modes", action="store_true",
                        help="also time the other grad_sample_modes (dp_lora: hooks; dp_full: functorch)")
    parser.add_argument("--out", default="benchmarks/results/dp_lora_step.json")
    args = parser.parse_args()
    extra = {"dp_lora": ["hooks"], "dp_full": ["functorch"]} if args.compare_modes else {}
    with tempfile.TemporaryDirectory(prefix="tiny-llama-") as tmp:
        folder = make_pretrained(Path(tmp), args.vocab, args.context)
        results = measure(folder, args.device, args.batch, args.context, args.rounds, args.steps, extra)
    print(json.dumps(results, indent=2), flush=True)
    ratio = results["dp_lora/plain_lora"]["step_time"]
    payload = {
        "model": {"family": "llama", **MODEL, "vocab": args.vocab, "lora": {"r": 8, "alpha": 16, "targets": ["q_proj", "v_proj"]}},
        "batch": args.batch, "context": args.context, "device": args.device, "results": results,
        "targets": {"dp_lora_over_plain_lora_step_time_max": 1.3, "met": ratio <= 1.3},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
    }
    with atomic_open(Path(args.out)) as handle:
        json.dump(payload, handle, indent=2)


if __name__ == "__main__":
    main()
