"""DVC stage `train@VARIANT`: train one variant (plain or DP-SGD) and save model, card and metrics."""

from __future__ import annotations

from pathlib import Path

from canaryaudit import tracking
from canaryaudit.config import load_params
from canaryaudit.io import write_csv, write_json
from canaryaudit.report.summary import stage_metrics
from canaryaudit.schemas import DOCUMENTS, read_checked_jsonl
from canaryaudit.stagekit import log, run_in_processes, run_stage, stage_parser
from canaryaudit.training.base import fine_tune_settings
from canaryaudit.training.checkpoint import clear_checkpoints
from canaryaudit.training.data import file_sha256
from canaryaudit.training.distributed import World, close_world, init_world, launched_by_torchrun, quiet_workers
from canaryaudit.training.loop import Trainer, resolve_device
from canaryaudit.training.models import count_parameters
from canaryaudit.training.pipeline import (
    build_variant_model,
    check_searchable,
    loss_series,
    model_card,
    prepare_data,
    save_trained,
    settings_hash,
    train_report,
)


def _texts(path: str) -> list[str]:
    return [r["text"] for r in read_checked_jsonl(DOCUMENTS, path)]


def main(args) -> None:
    params = load_params(args.params)
    key = f"train.variants.{args.variant}"
    base = Path(args.base) if args.base else None
    settings = fine_tune_settings(params.train.variant(args.variant), base, key)
    if settings.distributed.nproc > 1 and not launched_by_torchrun():
        run_in_processes(settings.distributed.nproc)  # each process runs this script under torchrun
        return
    world, _ = init_world(resolve_device(settings.device), settings.distributed.backend)
    try:
        train_variant(args, settings, key, base, params, world)
    finally:
        close_world(world)


def train_variant(args, settings, key: str, base: Path | None, params, world: World) -> None:
    """Train in this process (one of world.size); rank 0 alone logs to MLflow and writes the outputs."""
    quiet_workers(world)
    train_texts = _texts(args.train)
    data_sha = file_sha256(args.train)
    base_sha = None
    if base is not None and settings.model.arch == f"hf:{base.as_posix()}":
        log.info("%s: fine-tunes the public base model in %s (train.init: pretrain)", args.variant, base)
        base_sha = file_sha256(str(base / "model.safetensors"))
    data = prepare_data(settings, train_texts, _texts(args.valid), _texts(args.test))
    # Before any training: what the exposure stage will need of this tokenizer (BPE may merge symbols).
    check_searchable(params.canaries.parsed_formats(), data.tokenizer, key)
    model, spec = build_variant_model(settings, data.tokenizer, key)
    log.info("%s: %s with %d parameters, %d training sequences of %d tokens, DP %s", args.variant, spec.arch,
             count_parameters(model), len(data.train), spec.context, "on" if settings.dp.enabled else "off")

    tracker = tracking.Tracker() if tracking.tracking_enabled() and world.is_main else None
    # section-prefixed like every other stage's params (train.dp.noise_multiplier, not dp.noise_multiplier)
    run_id = tracker.start_variant_run("train", args.variant, {"train": settings.model_dump(mode="json")}) if tracker else None

    def on_epoch(record) -> None:
        if tracker and run_id:
            metrics = {"train_loss": record.train_loss, "valid_loss": record.valid_loss,
                       "valid_perplexity": record.valid_perplexity}
            if record.epsilon is not None:
                metrics["epsilon"] = record.epsilon
            tracker.log_metrics(run_id, metrics, step=record.epoch)

    try:
        result = _train_and_save(args, settings, key, model, spec, data, (data_sha, base_sha), tracker, run_id,
                                 on_epoch, world)
    except BaseException as exc:
        if tracker and run_id:  # never leave the run RUNNING (a SIGKILL is reaped by the next run)
            tracker.finish_quietly(run_id, "FAILED" if isinstance(exc, Exception) else "KILLED")
        raise
    if not world.is_main:
        return
    clear_checkpoints(Path(args.checkpoints) / args.variant)  # the run completed: nothing to resume
    eps = f", epsilon {result.epsilon:.3f} at delta {result.dp.delta:.2e}" if result.dp else ""
    log.info("%s: test loss %.4f nats/token (perplexity %.2f)%s -> %s", args.variant, result.test_loss,
             result.test_perplexity, eps, args.out)


def _train_and_save(args, settings, key, model, spec, data, shas, tracker, run_id, on_epoch, world):
    data_sha, base_sha = shas  # a checkpoint resumes only on the same data and the same base model
    trainer = Trainer(settings, model, data.train, data.valid, data.test, key=key,
                      checkpoint_dir=Path(args.checkpoints) / args.variant,
                      checkpoint_key=settings_hash(settings, data_sha + (base_sha or "")), on_epoch=on_epoch,
                      world=world)
    result = trainer.run()
    if not world.is_main:
        return result
    card = model_card(args.variant, settings, spec, result.model, result, data_sha)
    if base_sha is not None:
        card["base_model"] = {"path": str(args.base), "sha256": base_sha, "trained_on": "the public corpus (pretrain)"}
    save_trained(args.out, result, spec, data.tokenizer, card)
    report = train_report(args.variant, result, count_parameters(result.model), settings)
    write_json(args.report, report)
    write_csv(args.plot, loss_series(result))
    if result.dp is not None and not settings.dp.secure_noise:
        log.info("%s: %s", args.variant, report["noise_secrecy"])
    if tracker and run_id:
        final = {k: float(v) for k, v in report.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "valid_loss"}  # per epoch above
        tracker.log_metrics(run_id, final, step=result.epochs_run)  # details; headline numbers as in summary.json:
        tracker.log_metrics(run_id, stage_metrics("train", args.variant, report))
        tracker.log_json_artifact(run_id, card, "model_card.json")
        tracker.log_artifacts(run_id, args.out, artifact_path="model")  # the trained model, as audited
        tracker.finish(run_id)
    return result


if __name__ == "__main__":
    parser = stage_parser("train", __doc__)
    parser.add_argument("--variant", required=True, help="a name under train.variants")
    parser.add_argument("--train", default="data/augmented/train.jsonl")
    parser.add_argument("--valid", default="data/sanitized/valid.jsonl")
    parser.add_argument("--test", default="data/sanitized/test.jsonl")
    parser.add_argument("--out", required=True, help="model folder, e.g. models/VARIANT")
    parser.add_argument("--report", required=True, help="metrics JSON, e.g. reports/train/VARIANT.json")
    parser.add_argument("--plot", required=True, help="per-epoch loss CSV, e.g. reports/train/VARIANT_loss.csv")
    parser.add_argument("--base", default=None,
                        help="the pretrain stage's base model folder, e.g. models/pretrain (train.init: pretrain)")
    parser.add_argument("--checkpoints", default=".canaryaudit/checkpoints", help="resume state (outside DVC outputs)")
    run_stage("train", main, parser)
