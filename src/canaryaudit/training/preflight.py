"""Training checks that need the training data's size, run by the earliest stage that knows it.

``params check`` cannot know N, the number of training sequences, so some rules wait for data:
DP's ``delta < 1/N``, an expected batch no larger than N, a target epsilon reachable within
``max_noise_multiplier``, an epsilon the accountant can compute. With the char tokenizer N follows
from the text alone (one token per character, one <eos> per document), so the canaries stage,
which writes the training split, checks every char-tokenizer variant before training starts.
Other tokenizers are checked by their train stage once the tokenizer exists (still before training).
Light: no torch import; Opacus only when a variant uses DP.
"""

from __future__ import annotations

from collections.abc import Sequence

from canaryaudit.config import TrainParams, TrainSettings
from canaryaudit.errors import ParamsError
from canaryaudit.training.dp import DpPlan, plan_dp, planned_steps


def char_sequence_count(texts: Sequence[str], context: int) -> int:
    """Training sequences the char tokenizer makes of ``texts`` (see training.data: chunks of context + 1)."""
    tokens = sum(len(t) for t in texts) + len(texts)  # one token per character, one <eos> per document
    return tokens // (context + 1)


def check_variant(settings: TrainSettings, n_sequences: int, key: str) -> DpPlan | None:
    """What the train stage would refuse, for a variant with ``n_sequences`` training sequences."""
    if n_sequences == 0:
        raise ParamsError(f"{key}.model.context: the training split makes no sequence of "
                          f"{settings.model.context + 1} tokens; lower train.model.context")
    if not settings.dp.enabled:
        return None
    steps = planned_steps(settings.epochs, settings.max_steps, n_sequences, settings.batch_size)
    return plan_dp(settings.dp, n_sequences, settings.batch_size, steps, key)


def check_char_variants(train: TrainParams, texts: Sequence[str]) -> dict[str, int]:
    """Check every char-tokenizer variant against the training texts; N per variant checked."""
    checked: dict[str, int] = {}
    for name in train.variants:
        settings = train.variant(name)
        if settings.tokenizer.kind != "char":
            continue
        n = char_sequence_count(texts, settings.model.context)
        check_variant(settings, n, f"train.variants.{name}")
        checked[name] = n
    return checked
