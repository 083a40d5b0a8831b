"""The public base model: its training settings, and fine-tuning every variant from it.

The pretrain stage trains the base model (models/pretrain) on the public corpus with the
base train settings (no DP: the public text needs none; no LoRA); a variant with
``train.init: pretrain`` then starts from its weights and tokenizer instead of a fresh
initialisation. The base folder is in the Hugging Face layout, so fine-tuning from it is
the ``hf:PATH`` path of every other pretrained model.
"""

from __future__ import annotations

import json
from pathlib import Path

from canaryaudit.config import BASE_MODEL_FIELDS, PretrainParams, TrainParams, TrainSettings
from canaryaudit.errors import DataError, ParamsError



def has_base_model(folder: Path) -> bool:
    """Whether the pretrain stage left a model there (it writes none when pretrain.source is none)."""
    return (folder / "config.json").is_file()


def pretrain_settings(train: TrainParams, pretrain: PretrainParams) -> TrainSettings:
    """The base train settings (no variant overrides), with pretrain's seed and epochs, no DP, no LoRA."""
    base = train.model_dump(mode="json", exclude={"variants", "external"})
    base.update(seed=pretrain.seed, epochs=pretrain.epochs, init="scratch", max_steps=None)
    base["dp"] = {**base["dp"], "enabled": False, "noise_multiplier": None, "target_epsilon": None}
    base["lora"] = {**base["lora"], "enabled": False}
    settings = TrainSettings.model_validate_json(json.dumps(base))
    if settings.model.arch not in ("gpt2", "lstm"):
        raise ParamsError(f"pretrain.source: train.model.arch {settings.model.arch} is already pretrained; set "
                          "pretrain.source: none to fine-tune it directly")
    return settings


def _base_model_settings(folder: Path) -> dict[str, object]:
    card_path = folder / "card.json"
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
        return dict(card["settings"]["model"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(card_path, f"not a pretrain base model card ({exc})") from None


def fine_tune_settings(settings: TrainSettings, base: Path | None, key: str) -> TrainSettings:
    """``settings`` starting from the base model in ``base`` when the variant asks for it and one is there.

    Unchanged for ``init: scratch``, for hf:PATH models (they start from their own weights) and when
    there is no base (pretrain.source: none). A variant whose model settings differ from the base's
    cannot start from its weights: refused, naming the field.
    """
    if settings.init != "pretrain" or base is None or settings.model.arch.startswith("hf:"):
        return settings
    if not has_base_model(base):
        return settings
    theirs = _base_model_settings(base)
    mine = settings.model.model_dump(mode="json")
    for field in BASE_MODEL_FIELDS:
        if mine[field] != theirs.get(field):
            raise ParamsError(f"{key}.model.{field}: {mine[field]!r} differs from the pretrain base model's "
                              f"{theirs.get(field)!r} ({base}); use the base's, or set {key}.init: scratch")
    model = settings.model.model_copy(update={"arch": f"hf:{base.as_posix()}"})
    tokenizer = settings.tokenizer.model_copy(update={"kind": "pretrained"})
    return settings.model_copy(update={"model": model, "tokenizer": tokenizer})
