"""README.md of a model folder: a Hugging Face model card written from card.json.

The Hub and ``huggingface_hub.ModelCard`` read the YAML front matter; the body says what the model
is, its privacy guarantee (the accountant's, or the user's declared claim) and its test perplexity,
and warns that the training data holds planted canaries. Every figure comes from card.json: this
module formats, it computes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from canaryaudit.io import atomic_open

FRONT_MATTER = """---
library_name: transformers
pipeline_tag: text-generation
tags:
- canaryaudit
- differential-privacy
---
"""


def _privacy_lines(card: dict[str, Any]) -> list[str]:
    dp = card.get("dp")
    if not dp:
        return ["Trained **without** differential privacy: no formal guarantee. Its exposure and extraction "
                "results are in the canaryaudit report."]
    if "declared" in str(dp.get("source", "")):
        return [f"Declared guarantee: (epsilon {dp['epsilon']:g}, delta {dp['delta']:g})-DP, {dp['source']}."]
    return [f"DP-SGD (Opacus): (epsilon {dp['epsilon']:.3f}, delta {dp['delta']:.1e}) by the "
            f"{dp['accountant']} accountant, noise multiplier {dp['noise_multiplier']:g}, per-sample clip "
            f"{dp['max_grad_norm']:g}, sample rate {dp['sample_rate']:.4g}, {dp['steps']} steps.",
            f"Privacy unit: {dp['privacy_unit']}.", f"Noise: {dp['noise_secrecy']}"]


def _loading_lines(card: dict[str, Any]) -> list[str]:
    if card["arch"] == "lstm":
        return ["The character LSTM has no transformers class: load it with "
                "`canaryaudit.training.models.load_model_folder(folder)`."]
    return ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
            'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")',
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")', "```"]


def model_card_text(card: dict[str, Any]) -> str:
    """The README.md text for ``card`` (a card.json dict: train stage or external stage)."""
    origin = (f"Trained elsewhere and imported from `{card['external']['path']}` (sha256 of each file in "
              "card.json)." if card.get("external") else "Trained by the canaryaudit pipeline.")
    lines = [
        f"# {card['variant']}", "", origin, "",
        f"- architecture: `{card['arch']}`, {card['parameters']:,} parameters",
        f"- tokenizer: {card['tokenizer']}, {card['vocab_size']} tokens; context {card['context']} tokens",
        f"- test perplexity: {card['test_perplexity']:.3f} per token "
        f"({card['test_loss_nats_per_token']:.4f} nats/token)",
        f"- training data sha256: `{card['training_data_sha256']}`",
        "", "## Privacy", "", *_privacy_lines(card), "",
        "**Warning:** the training data holds random canaries planted by the audit; this model is an "
        "audit artefact, not for release.", "", "## Loading", "", *_loading_lines(card), "",
    ]
    return FRONT_MATTER + "\n".join(lines)


def write_model_card(folder: Path, card: dict[str, Any]) -> None:
    """Write ``folder/README.md`` atomically."""
    with atomic_open(folder / "README.md") as handle:
        handle.write(model_card_text(card))
