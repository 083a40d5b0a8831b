"""DVC stage `external@NAME`: check a model trained elsewhere, fingerprint it and copy it to models/NAME.

Nothing is trained: the folder named by train.external.NAME.path (a DVC dependency, so new weights
rerun the audit) is loaded (safetensors only), its test perplexity measured, and a standard HF
folder written with card.json (sha256 of every file, the declared DP claim) and README.md.
"""

from __future__ import annotations

from canaryaudit.config import load_params
from canaryaudit.errors import ParamsError
from canaryaudit.io import atomic_folder, write_json
from canaryaudit.schemas import DOCUMENTS, read_checked_jsonl
from canaryaudit.stagekit import log, run_stage, stage_parser
from canaryaudit.training.data import file_sha256
from canaryaudit.training.external import external_card, external_report, load_external
from canaryaudit.training.hf_card import write_model_card
from canaryaudit.training.loop import resolve_device
from canaryaudit.training.models import save_model_folder


def main(args) -> None:
    params = load_params(args.params)
    if args.name not in params.train.external:
        known = ", ".join(params.train.external) or "(none)"
        raise ParamsError(f"train.external: no model {args.name!r}; defined: {known}")
    external, key = params.train.external[args.name], f"train.external.{args.name}"
    device = resolve_device(params.train.device)
    test_texts = [r["text"] for r in read_checked_jsonl(DOCUMENTS, args.test)]
    imported = load_external(external, key, params.train.model.context, test_texts,
                             params.train.eval_batch_size, device)
    card = external_card(args.name, external, imported, file_sha256(args.train))
    with atomic_folder(args.out) as out:
        save_model_folder(imported.model, imported.spec, out)
        imported.tokenizer.save(out)
        write_json(out / "card.json", card)
        write_model_card(out, card)
    write_json(args.report, external_report(args.name, external, imported))
    claim = f"declared epsilon {external.epsilon} at delta {external.delta}" if external.epsilon else "no DP claim"
    log.info("%s: external %s model, %d files fingerprinted, test perplexity %.2f, %s -> %s", args.name,
             card["model_type"], len(imported.files), card["test_perplexity"], claim, args.out)


if __name__ == "__main__":
    parser = stage_parser("external", __doc__)
    parser.add_argument("--name", required=True, help="a name under train.external")
    parser.add_argument("--train", default="data/augmented/train.jsonl", help="the data it should have been trained on")
    parser.add_argument("--test", default="data/sanitized/test.jsonl")
    parser.add_argument("--out", required=True, help="model folder, e.g. models/NAME")
    parser.add_argument("--report", required=True, help="metrics JSON, e.g. reports/train/NAME.json")
    run_stage("external", main, parser)
