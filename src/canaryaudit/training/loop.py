"""The training loop: plain or DP-SGD, evaluation each epoch, checkpoints and exact resume.

Losses are in nats per token (lower = better); perplexity = exp(loss).
Randomness: the model is initialised from ``seed``; batch sampling and DP noise
use dedicated generators re-seeded from (seed, epoch) at each epoch start, so a
run resumed from an epoch checkpoint follows exactly the uninterrupted run.
With ``dp.secure_noise`` the noise generator is instead re-seeded each epoch from
the OS's cryptographic source (never stored), so the noise cannot be regenerated
from params.yaml; such a run is not reproducible.
Only trainable parameters are optimized (and, under DP, clipped and noised): with
LoRA (``training.lora``) the adapters; the returned model has them merged in.
"""

from __future__ import annotations

import logging
import math
import resource
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset
from tqdm import tqdm

from canaryaudit.config import TrainSettings
from canaryaudit.errors import CanaryAuditError, ParamsError
from canaryaudit.training.checkpoint import (
    Checkpoint,
    join_optimizer_state,
    load_checkpoint,
    save_checkpoint,
    split_optimizer_state,
)
from canaryaudit.training.dp import (
    DpPlan,
    accountant_epsilon,
    auto_grad_sample_mode,
    make_private,
    plan_dp,
    planned_steps,
    poisson_loader,
)
from canaryaudit.training.distributed import (
    SINGLE,
    ShardedBatchSampler,
    World,
    all_reduce_sum,
    barrier,
    empty_safe_collate,
    gather_objects,
    rank_device,
)
from canaryaudit.training.lora import LoraAdapter, is_lora, lora_adapter, lora_summary, merge_lora, trainable_parameters
from canaryaudit.training.models import hf_path

log = logging.getLogger("canaryaudit.train")


class TrainingDiverged(CanaryAuditError):
    """The loss became NaN or infinite."""


@dataclass
class EpochRecord:
    epoch: int
    step: int
    train_loss: float  # nats/token, mean over the epoch's batches
    valid_loss: float  # nats/token
    valid_perplexity: float
    epsilon: float | None  # accountant's epsilon so far (DP only)
    seconds: float


@dataclass
class TrainResult:
    model: nn.Module  # the trained model, unwrapped from Opacus
    history: list[EpochRecord]
    steps: int
    epochs_run: int
    stopped_early: bool
    test_loss: float
    test_perplexity: float
    dp: DpPlan | None
    epsilon: float | None
    train_seconds: float
    tokens_per_second: float
    peak_memory_bytes: int
    resumed_from_epoch: int = 0
    trainable_parameters: int = 0  # what the optimizer (and DP-SGD) updated: all, or the LoRA adapters
    lora: dict[str, Any] | None = None  # LoRA settings and counts (lora_summary); the model is merged
    adapter: LoraAdapter | None = None  # the LoRA adapter before the merge (save_adapter writes it)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamsError("train.device: 'cuda' requested but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_factor(step: int, total_steps: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total_steps <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def grad_sample_mode(settings: TrainSettings, model: nn.Module | None = None) -> str:
    """Opacus' per-sample gradient path for these settings and ``model`` (``auto``: dp.auto_grad_sample_mode).

    Without ``model``, ``auto`` is ew, or hooks for the lstm.
    """
    mode = settings.dp.grad_sample_mode
    if mode != "auto":
        return mode
    if model is None:
        return "hooks" if settings.model.arch == "lstm" else "ew"
    return auto_grad_sample_mode(model, settings.model.arch)


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimizer updates: those with ``requires_grad`` (LoRA freezes the rest)."""
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(settings: TrainSettings, params) -> torch.optim.Optimizer:
    o = settings.optimizer
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum)
    return torch.optim.SGD(params, lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum)


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorDataset, batch_size: int, device: torch.device,
             world: World = SINGLE) -> float:
    """Mean next-token loss over every target token of ``data``, in nats/token.

    Under several processes each rank scores its shard (every world.size-th sequence) and the
    sums are all-reduced, so every rank returns the same mean.
    """
    model.eval()
    total, count = 0.0, 0
    part = data if not world.distributed else Subset(data, range(world.rank, len(data), world.size))
    for inputs, targets in DataLoader(part, batch_size=batch_size):
        logits = model(inputs.to(device)).float()
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.to(device).reshape(-1), reduction="sum")
        total += float(loss)
        count += targets.numel()
    model.train()
    total, count = all_reduce_sum([total, count], world)
    return total / max(count, 1)


def empty_dp_step(optimizer) -> None:
    """Take the DP-SGD step of an empty Poisson batch: noise only, counted by the accountant.

    Why: DP-SGD (and the accountant's sampled-Gaussian analysis) requires every step,
    empty batch included, to add N(0, (sigma C)^2) noise to the (here zero) sum of
    clipped gradients, divide by the expected batch size and step on it. With no data
    there is no backward pass, so Opacus has no ``grad_sample`` and ``optimizer.step()``
    fails ("Per sample gradient is not initialized"). We give each trainable parameter
    a zero-length per-sample gradient of shape (0, *p.shape); Opacus 1.6's
    ``DPOptimizer.clip_and_accumulate`` handles it (its "Empty batch" branch) and sums
    to zeros, then ``add_noise``, ``scale_grad``, the accountant hook and the wrapped
    optimizer's step run as on any batch. Calling ``step()`` also consumes the
    BatchMemoryManager's step signal for this logical batch, keeping it in sync.
    Call after ``optimizer.zero_grad()``, with no backward pass in between.
    """
    for p in optimizer.params:
        if getattr(p, "grad_sample", None) is not None:
            raise RuntimeError("empty_dp_step: per-sample gradients are present; call zero_grad() first")
        p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
    optimizer.step()


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def _unwrap(model: nn.Module) -> nn.Module:
    """The trained model inside Opacus' GradSampleModule (``_module``) and DDP/DPDDP (``module``) wrappers."""
    from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP
    from torch.nn.parallel import DistributedDataParallel as DDP

    while True:
        if hasattr(model, "_module"):
            model = model._module
        elif isinstance(model, (DDP, DPDDP)):
            model = model.module
        else:
            return model


class Trainer:
    """Trains ``model`` on (train, valid, test) sequence datasets with ``settings``."""

    def __init__(
        self,
        settings: TrainSettings,
        model: nn.Module,
        train: TensorDataset,
        valid: TensorDataset,
        test: TensorDataset,
        *,
        key: str = "train",
        checkpoint_dir: Path | None = None,
        checkpoint_key: str = "",
        progress: bool = True,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        world: World = SINGLE,
    ) -> None:
        self.s = settings
        self.key = key  # dotted params prefix named in errors, e.g. train.variants.dp
        self.world = world  # this process's rank among the training processes (distributed.py)
        self.device = rank_device(resolve_device(settings.device), world)
        self.model = model.to(self.device)
        self.train_set, self.valid_set, self.test_set = train, valid, test
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_key = checkpoint_key
        self.progress = progress and world.is_main
        self.on_epoch = on_epoch
        self.sample_gen = torch.Generator().manual_seed(settings.seed)
        self.secure_noise = settings.dp.enabled and settings.dp.secure_noise
        self.noise_gen = torch.Generator(device=self.device).manual_seed(self._noise_seed(settings.seed + 1))
        self.autocast = self.device.type == "cuda" and not settings.dp.enabled  # bf16; DP stays fp32

    # ------------------------------------------------------------------ set-up

    def _steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_set) / self.s.batch_size)

    def _total_steps(self) -> int:
        return planned_steps(self.s.epochs, self.s.max_steps, len(self.train_set), self.s.batch_size)

    def _noise_seed(self, deterministic: int) -> int:
        """The DP noise seed: from params (reproducible), or a fresh 63-bit seed from os.urandom."""
        return secrets.randbits(63) if self.secure_noise else deterministic

    def _epsilon(self, engine, plan: DpPlan | None, step: int) -> float | None:
        if engine is None or plan is None or step == 0:
            return None
        value = accountant_epsilon(engine.accountant, plan.delta)
        if math.isinf(value):  # plan_dp checked the whole run, so this would be an accountant failure
            raise ParamsError(f"{self.key}.dp.noise_multiplier: the accountant cannot compute epsilon "
                              f"(sigma {plan.noise_multiplier:g}); raise noise_multiplier")
        return value

    def _build(self):
        params = trainable(self.model)
        if not params:
            raise ParamsError(f"{self.key}: the model has no trainable parameters")
        optimizer = make_optimizer(self.s, params)
        if not self.s.dp.enabled:
            sampler = ShardedBatchSampler(len(self.train_set), self.s.batch_size, self.sample_gen, self.world)
            loader = DataLoader(self.train_set, batch_sampler=sampler, collate_fn=empty_safe_collate(self.train_set),
                                generator=self.sample_gen)
            return self._data_parallel(self.model), optimizer, loader, None, None
        from opacus.validators import ModuleValidator

        errors = ModuleValidator.validate(self.model, strict=False)
        if errors:
            raise ParamsError(f"{self.key}.model.arch: DP-SGD cannot train this model: {errors[0]}")
        plan = plan_dp(self.s.dp, len(self.train_set), self.s.batch_size, self._total_steps(), self.key)
        mode = grad_sample_mode(self.s, self.model)
        log.info("DP-SGD: per-sample gradients of %d trainable parameters with grad_sample_mode %s",
                 sum(p.numel() for p in params), mode)
        loader = poisson_loader(self.train_set, plan, self._steps_per_epoch(), self.sample_gen, self.world)
        engine, model, optimizer, loader = make_private(self._data_parallel(self.model), optimizer, loader, plan,
                                                        noise_generator=self.noise_gen, grad_sample_mode=mode)
        return model, optimizer, loader, engine, plan

    def _data_parallel(self, model: nn.Module) -> nn.Module:
        """``model`` as is in one process; else wrapped for data parallelism: torch's DDP (gradients
        averaged over ranks in the backward pass) for plain training, Opacus' DPDDP under DP (it only
        syncs the initial weights; the DP optimizer all-reduces the clipped, noised sums)."""
        if not self.world.distributed:
            return model
        if self.s.dp.enabled:
            from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP

            return DPDDP(model)
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(model, device_ids=ids)

    # ------------------------------------------------------------------ checkpoints

    def _save(self, epoch: int, step: int, history: list[EpochRecord], optimizer, engine, best) -> None:
        if self.checkpoint_dir is None:
            return
        rng_states = gather_objects(torch.get_rng_state(), self.world)  # every rank's dropout stream
        if not self.world.is_main:
            barrier(self.world)  # rank 0 writes the one checkpoint
            return
        base = getattr(optimizer, "original_optimizer", optimizer)
        opt_tensors, opt_rest = split_optimizer_state(base.state_dict())
        tensors = {f"model.{k}": v.detach().cpu().clone() for k, v in _unwrap(self.model).state_dict().items()}
        tensors.update(opt_tensors)
        tensors["rng.torch"] = rng_states[0]
        tensors.update({f"rng.torch.{rank}": state for rank, state in enumerate(rng_states) if rank})
        meta = {
            "key": self.checkpoint_key, "step": step, "history": [asdict(h) for h in history],
            "optimizer": opt_rest, "accountant": [list(h) for h in engine.accountant.history] if engine else [],
            "best": best[:2] if best else None,
        }
        if best is not None:
            tensors.update({f"best.{k}": v for k, v in best[2].items()})
        save_checkpoint(self.checkpoint_dir, Checkpoint(epoch, tensors, meta))
        barrier(self.world)

    def _restore(self, optimizer, engine):
        if self.checkpoint_dir is None:
            return 0, 0, [], None
        ckpt = load_checkpoint(self.checkpoint_dir, self.checkpoint_key)
        if ckpt is None:
            return 0, 0, [], None
        weights = {k[6:]: v for k, v in ckpt.tensors.items() if k.startswith("model.")}
        _unwrap(self.model).load_state_dict(weights)
        base = getattr(optimizer, "original_optimizer", optimizer)
        base.load_state_dict(join_optimizer_state(ckpt.tensors, ckpt.meta["optimizer"]))
        rank_rng = f"rng.torch.{self.world.rank}" if self.world.rank else "rng.torch"
        torch.set_rng_state(ckpt.tensors[rank_rng])
        if engine is not None:
            engine.accountant.history = [tuple(h) for h in ckpt.meta["accountant"]]
        best = None
        if ckpt.meta.get("best"):
            best_weights = {k[5:]: v for k, v in ckpt.tensors.items() if k.startswith("best.")}
            best = (*ckpt.meta["best"], best_weights)
        history = [EpochRecord(**h) for h in ckpt.meta["history"]]
        log.info("resuming after epoch %d (step %d) from %s", ckpt.epoch, ckpt.meta["step"], self.checkpoint_dir)
        return ckpt.epoch, int(ckpt.meta["step"]), history, best

    # ------------------------------------------------------------------ loop

    def _diverged_message(self, loss: float, epoch: int, step: int) -> str:
        if self.checkpoint_dir is None:
            kept = "no checkpoints are kept (no checkpoint folder)"
        elif epoch > 1:
            kept = f"the last good checkpoint (epoch {epoch - 1}) is kept in {self.checkpoint_dir}"
        else:
            kept = "no checkpoint was saved (it diverged in the first epoch)"
        if self.s.dp.enabled:
            hint = (f"lower {self.key}.optimizer.lr, or check {self.key}.dp.max_grad_norm "
                    f"({self.s.dp.max_grad_norm:g}) and the noise multiplier: the noise std is their product")
        else:
            hint = f"lower {self.key}.optimizer.lr"
        return f"{self.key}: loss became {loss} at epoch {epoch}, step {step}; {kept}; {hint}"

    def _batches(self, loader, optimizer):
        """Logical batches as lists of physical micro-batches (BatchMemoryManager splits under DP)."""
        physical = self.s.physical_batch_size
        if self.s.dp.enabled:
            if physical < self.s.batch_size:
                from opacus.utils.batch_memory_manager import BatchMemoryManager

                with BatchMemoryManager(data_loader=loader, max_physical_batch_size=physical, optimizer=optimizer) as mem:
                    for batch in mem:
                        yield [batch]  # Opacus skips the step until the logical batch is complete
                return
            for batch in loader:
                yield [batch]
            return
        for inputs, targets in loader:
            yield [(inputs[i : i + physical], targets[i : i + physical]) for i in range(0, len(inputs), physical)]

    def _backward(self, model, micro_batches, epoch: int, step: int) -> tuple[float, int]:
        """Backward pass over this rank's micro-batches: (sum of their mean losses x sequences, sequences).

        Plain training weighs each micro-batch by its share of the global batch (times the number of
        ranks, since DDP averages over them), so the gradient is the global batch's mean; DDP syncs
        only on the last micro-batch. Under DP, Opacus' optimizer sums clipped per-sample gradients
        and divides by the expected batch size itself.
        """
        local = sum(len(x) for x, _ in micro_batches)
        nonempty = [(x, y) for x, y in micro_batches if len(x)]  # only Poisson sampling under DP draws empties
        global_size = local if self.s.dp.enabled else int(all_reduce_sum([local], self.world)[0])
        loss_sum = 0.0
        for i, (inputs, targets) in enumerate(nonempty):
            with self._gradient_sync(model, last=i == len(nonempty) - 1):
                loss = self._loss(model, inputs, targets)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(self._diverged_message(float(loss), epoch, step))
                weight = 1.0 if self.s.dp.enabled else len(inputs) / global_size * self.world.size
                (loss * weight).backward()
            loss_sum += loss.item() * len(inputs)
        if not nonempty and not self.s.dp.enabled and self.world.distributed:
            self._idle_backward(model)
        return loss_sum, local

    def _gradient_sync(self, model, last: bool):
        """DDP all-reduces in every backward pass unless told not to: only the last micro-batch syncs."""
        from contextlib import nullcontext

        from torch.nn.parallel import DistributedDataParallel as DDP

        return model.no_sync() if isinstance(model, DDP) and not last else nullcontext()

    def _idle_backward(self, model) -> None:
        """A rank whose shard of the global batch is empty (a last batch smaller than the number of ranks)
        still joins DDP's gradient all-reduce, with a zero-weighted pass: it contributes nothing."""
        inputs, targets = self.train_set[0:1]
        (self._loss(model, inputs, targets) * 0.0).backward()

    def _loss(self, model, inputs, targets) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            logits = model(inputs.to(self.device))
        return nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.to(self.device).reshape(-1))

    def run(self) -> TrainResult:
        torch.manual_seed(self.s.seed + self.world.rank)  # dropout: one stream per rank
        model, optimizer, loader, engine, plan = self._build()
        start_epoch, step, history, best = self._restore(optimizer, engine)
        resumed_from = start_epoch
        total_steps = self._total_steps()
        tokens_per_step = self.s.batch_size * self.train_set.tensors[0].shape[1]
        started = time.perf_counter()
        trained_steps = 0
        stale_epochs = 0 if best is None else sum(1 for h in history if h.epoch > best[0])
        stopped_early = False
        model.train()
        for epoch in range(start_epoch + 1, self.s.epochs + 1):
            if step >= total_steps:
                break
            epoch_start = time.perf_counter()
            self.sample_gen.manual_seed(self.s.seed * 100_003 + epoch)
            self.noise_gen.manual_seed(self._noise_seed(self.s.seed * 100_019 + epoch))
            losses, step, trained = self._train_epoch(model, optimizer, loader, epoch, step, total_steps)
            trained_steps += trained
            valid_loss = evaluate(_unwrap(model), self.valid_set, self.s.eval_batch_size, self.device, self.world)
            epsilon = self._epsilon(engine, plan, step)
            record = EpochRecord(epoch, step, sum(losses) / max(len(losses), 1), valid_loss, math.exp(min(valid_loss, 50.0)),
                                 epsilon, time.perf_counter() - epoch_start)
            history.append(record)
            elapsed = time.perf_counter() - started
            eta = elapsed / max(trained_steps, 1) * (total_steps - step)
            log.info("epoch %d/%d: train %.4f, valid %.4f nats/token (ppl %.2f)%s, %.0f tokens/s, ETA %.0f s",
                     epoch, self.s.epochs, record.train_loss, valid_loss, record.valid_perplexity,
                     f", epsilon {epsilon:.3f}" if epsilon is not None else "",
                     trained_steps * tokens_per_step / max(elapsed, 1e-9), eta)
            if best is None or valid_loss < best[1]:
                best = (epoch, valid_loss, {k: v.detach().cpu().clone() for k, v in _unwrap(model).state_dict().items()})
                stale_epochs = 0
            else:
                stale_epochs += 1
            self._save(epoch, step, history, optimizer, engine, best if self.s.early_stopping_patience else None)
            if self.on_epoch:
                self.on_epoch(record)  # after the checkpoint: an interruption here loses nothing
            if self.s.early_stopping_patience and stale_epochs >= self.s.early_stopping_patience:
                stopped_early = True
                log.info("early stopping: no validation improvement for %d epochs", stale_epochs)
                break
        train_seconds = time.perf_counter() - started
        return self._result(model, engine, plan, step, best, history, stopped_early, resumed_from,
                            train_seconds, trained_steps * tokens_per_step)

    def _train_epoch(self, model: nn.Module, optimizer: Any, loader: Any, epoch: int, step: int,
                     total_steps: int) -> tuple[list[float], int, int]:
        """One epoch's optimizer steps (until ``total_steps``): the logical batches' mean losses
        (nats/token; an empty Poisson batch has none), the global step after it, the steps taken."""
        losses: list[float] = []
        trained = 0
        bar = tqdm(total=min(self._steps_per_epoch(), total_steps - step), desc=f"epoch {epoch}/{self.s.epochs}",
                   unit="step", disable=not self.progress, mininterval=2.0, leave=False)
        pending_sum, pending_n = 0.0, 0  # losses of the logical batch's physical batches so far
        for micro_batches in self._batches(loader, optimizer):
            lr = self.s.optimizer.lr * lr_factor(step, total_steps, self.s.optimizer.warmup_steps, self.s.optimizer.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss_sum, batch_size = self._backward(model, micro_batches, epoch, step)
            if self.s.dp.enabled and batch_size == 0:
                empty_dp_step(optimizer)  # an empty Poisson batch still takes a noisy, accounted step
            else:
                optimizer.step()
            pending_sum, pending_n = pending_sum + loss_sum, pending_n + batch_size
            if self.s.dp.enabled and getattr(optimizer, "_is_last_step_skipped", False):
                continue  # BatchMemoryManager: a physical batch inside a logical one
            loss_total, sequences = all_reduce_sum([pending_sum, pending_n], self.world)
            pending_sum, pending_n = 0.0, 0
            batch_loss = loss_total / max(sequences, 1)  # nats/token, mean over the logical batch
            if sequences:
                losses.append(batch_loss)  # an empty batch has no loss to average in
            step += 1
            trained += 1
            bar.update(1)
            bar.set_postfix(loss=f"{batch_loss:.3f}", refresh=False)
            if step >= total_steps:
                break
        bar.close()
        return losses, step, trained

    def _result(self, model: nn.Module, engine: Any, plan: Any, step: int, best: Any, history: list[EpochRecord],
                stopped_early: bool, resumed_from: int, train_seconds: float, tokens: int) -> TrainResult:
        """The trained model (best-validation weights under early stopping, LoRA merged) and its figures."""
        final = _unwrap(model)
        if self.s.early_stopping_patience and best is not None:
            final.load_state_dict(best[2])  # keep the best-validation weights
        n_trainable = trainable_parameters(final)
        lora, adapter = None, None
        if is_lora(final):  # fold the adapters in: every later stage gets a plain causal LM
            adapter = lora_adapter(final, hf_path(self.s.model.arch))
            final = merge_lora(final)
            lora = lora_summary(self.s.lora, adapter, n_trainable, sum(p.numel() for p in final.parameters()))
        test_loss = evaluate(final, self.test_set, self.s.eval_batch_size, self.device, self.world)
        epsilon = self._epsilon(engine, plan, step)
        return TrainResult(
            model=final.eval(), history=history, steps=step, epochs_run=len(history), stopped_early=stopped_early,
            test_loss=test_loss, test_perplexity=math.exp(min(test_loss, 50.0)), dp=plan, epsilon=epsilon,
            train_seconds=train_seconds, tokens_per_second=tokens / max(train_seconds, 1e-9),
            peak_memory_bytes=_peak_memory(self.device), resumed_from_epoch=resumed_from,
            trainable_parameters=n_trainable, lora=lora, adapter=adapter,
        )
