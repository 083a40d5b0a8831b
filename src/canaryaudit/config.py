"""params.yaml: frozen, validated settings, one section per stage.

Every error names the dotted key at fault and what is allowed, e.g.
``canaries.insertions[2]: Input should be greater than 0 (got -4)``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from canaryaudit.canaries import CanaryFormat, CanaryPlan, check_space, parse_format
from canaryaudit.errors import ParamsError
from canaryaudit.pii.detectors import DETECTORS
from canaryaudit.pii.spans import PII_TYPES


class Section(BaseModel):
    """Base of every params section: immutable, no unknown keys, no silent type coercion."""

    # allow_inf_nan=False: `.inf` / `.nan` in YAML are refused for every float ("Input should be a
    # finite number"); an infinite clipping bound, gate maximum or noise cap breaks a stage later.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


# ---------------------------------------------------------------- data (prepare stage)

_SOURCE_RE = re.compile(r"^(builtin:emails|file:.+|hf:[^:\s]+(:[^:\s]+)?)$")


def derive_file_dependency(raw: Any) -> Any:
    """Before validation: a section with a ``file:PATH`` source and no ``dependency`` key gets PATH.

    ``params.yaml`` (what DVC reads) always names ``dependency``, and :func:`check_file_dependency`
    holds it to the source; a mapping built in code may leave it out.
    """
    if isinstance(raw, dict) and "dependency" not in raw and str(raw.get("source", "")).startswith("file:"):
        return {**raw, "dependency": str(raw["source"]).partition(":")[2]}
    return raw


def check_file_dependency(source: str, dependency: str, section: str) -> None:
    """A ``file:PATH`` source must be named again as the section's ``dependency``, the path DVC hashes.

    DVC cannot read a path out of ``file:PATH``; ``dvc.yaml`` lists ``${SECTION.dependency}`` among the
    stage's dependencies, so editing the file reruns the stage (and ``dvc status`` says so). Other
    sources keep the default, a path the stage depends on anyway.
    """
    if not source.startswith("file:"):
        return
    path = source.partition(":")[2]
    if os.path.normpath(path) != os.path.normpath(dependency):
        raise ValueError(
            f"{section}.dependency must name the file or folder of {section}.source ({path}), so that DVC reruns "
            f"the stage when it changes: set {section}.dependency: {path} (got {dependency})"
        )


class BuiltinCorpusParams(Section):
    target_bytes: int = Field(500_000, ge=10_000, le=200_000_000)  # UTF-8 bytes of generated email
    emails_per_person_min: int = Field(3, ge=1, le=100)
    emails_per_person_max: int = Field(8, ge=1, le=100)
    reply_probability: float = Field(0.3, ge=0.0, le=1.0)  # chance a message quotes the one it answers

    @model_validator(mode="after")
    def _min_le_max(self) -> BuiltinCorpusParams:
        if self.emails_per_person_min > self.emails_per_person_max:
            raise ValueError("emails_per_person_min must be <= emails_per_person_max")
        return self


class FileSourceParams(Section):
    text_field: str = Field("text", min_length=1)  # JSONL key or CSV column holding the text
    id_field: str | None = None  # optional JSONL key / CSV column with a document id
    author_field: str | None = None  # optional key / column with the author
    # .txt: one document per blank-line block, per line (one document a line, as public corpora are
    # often laid out), or per file
    txt_unit: Literal["block", "line", "file"] = "block"


class HfSourceParams(Section):
    split: str = Field("train", min_length=1)
    text_field: str = Field("text", min_length=1)


class SplitParams(Section):
    # Both > 0: validation loss needs valid documents, membership inference needs test ones.
    valid_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _leaves_training_data(self) -> SplitParams:
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ValueError("valid_fraction + test_fraction must be < 1 so training data remains")
        return self


#: ``dependency`` defaults: paths the stage depends on anyway (the builtin generator, the test split).
CORPUS_CODE = "src/canaryaudit/corpus"


class DataParams(Section):
    source: str = "builtin:emails"
    dependency: str = Field(CORPUS_CODE, min_length=1)  # the path DVC hashes: file:PATH's PATH (checked)
    seed: int = Field(1234, ge=0)
    max_documents: int | None = Field(None, ge=1)  # cap after loading (None = all)
    min_chars: int = Field(1, ge=1)  # documents shorter than this (stripped) are skipped
    # file: paths must resolve inside the workspace (the folder holding params.yaml / the stage's cwd):
    # `file:../../etc` would read system files into the training data. true allows any path.
    allow_outside_workspace: bool = False
    # Refuse a corpus in which fewer than this share of whitespace-separated tokens look like words
    # (random bytes or binary read as text); 0 turns the check off.
    min_word_fraction: float = Field(0.3, ge=0.0, le=1.0)
    builtin: BuiltinCorpusParams = BuiltinCorpusParams()
    file: FileSourceParams = FileSourceParams()
    hf: HfSourceParams = HfSourceParams()
    split: SplitParams = SplitParams()

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if not _SOURCE_RE.match(value):
            raise ValueError("must be 'builtin:emails', 'file:PATH' or 'hf:NAME[:CONFIG]'")
        return value

    @model_validator(mode="before")
    @classmethod
    def _derive_dependency(cls, raw: Any) -> Any:
        return derive_file_dependency(raw)

    @model_validator(mode="after")
    def _dependency_names_the_file(self) -> DataParams:
        check_file_dependency(self.source, self.dependency, "data")
        return self


# ---------------------------------------------------------------- pretrain (public base model)

PRETRAIN_NONE = "none"
PRETRAIN_MODEL = "pretrain"  # its model folder, models/pretrain: extract.reference_variant may name it
#: The base's model settings a fine-tuned variant must share (the weights have these shapes).
BASE_MODEL_FIELDS = ("arch", "layers", "width", "heads", "context")


class PretrainParams(Section):
    """Public pretraining: a base model trained on text disjoint from the private corpus.

    Every variant with ``train.init: pretrain`` (the default) fine-tunes from it, as teams
    fine-tune a public pretrained model; it is also the reference model of extraction's
    reference_ratio. ``builtin:emails`` is the generator with ``seed`` and none of the private
    corpus's people; ``file:``/``hf:`` read the user's public text (exact copies of private
    documents are dropped); ``none`` trains every variant from scratch.
    """

    source: str = "builtin:emails"
    dependency: str = Field(CORPUS_CODE, min_length=1)  # the path DVC hashes: file:PATH's PATH (checked)
    seed: int = Field(4321, ge=0)  # public corpus generation (builtin) and the base model's training
    target_bytes: int = Field(1_500_000, ge=10_000, le=200_000_000)  # builtin only: UTF-8 bytes generated
    max_documents: int | None = Field(None, ge=1)  # cap after loading (None = all)
    epochs: int = Field(1, ge=1, le=10_000)
    # Pass the public text through the sanitize stage's detectors and actions, so that it spells PII
    # the way the private training text does (<EMAIL>, <PHONE>...): the base model then fits it.
    sanitize: bool = True
    valid_fraction: float = Field(0.05, gt=0.0, lt=0.5)  # of public documents, for the base model's valid loss

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value != PRETRAIN_NONE and not _SOURCE_RE.match(value):
            raise ValueError("must be 'builtin:emails', 'file:PATH', 'hf:NAME[:CONFIG]' or 'none'")
        return value

    @model_validator(mode="before")
    @classmethod
    def _derive_dependency(cls, raw: Any) -> Any:
        return derive_file_dependency(raw)

    @model_validator(mode="after")
    def _dependency_names_the_file(self) -> PretrainParams:
        check_file_dependency(self.source, self.dependency, "pretrain")
        return self

    @property
    def enabled(self) -> bool:
        return self.source != PRETRAIN_NONE


# ---------------------------------------------------------------- sanitize

Action = Literal["mask", "drop", "keep"]


class EntropyParams(Section):
    min_length: int = Field(20, ge=8, le=4096)  # characters in a generic secret token
    min_bits_per_char: float = Field(3.5, gt=0.0, le=8.0)  # Shannon entropy threshold, bits/char


class AdversarialCorpusParams(Section):
    """The adversarial PII corpus the detectors are also scored on (reports/sanitize.json: adversarial)."""

    documents: int = Field(400, ge=0, le=1_000_000)  # 0: not scored
    seed: int = Field(5, ge=0)


class SanitizeParams(Section):
    # No seed: sanitization is deterministic (the adversarial corpus has its own).
    enabled: bool = True
    detectors: tuple[str, ...] = tuple(t for t in PII_TYPES if t in DETECTORS)
    default_action: Action = "mask"
    actions: dict[str, Action] = Field(default_factory=dict)  # per PII type, overrides default_action
    entropy: EntropyParams = EntropyParams()
    adversarial: AdversarialCorpusParams = AdversarialCorpusParams()

    @field_validator("detectors")
    @classmethod
    def _known_detectors(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in DETECTORS]
        if unknown:
            raise ValueError(f"unknown detector {unknown[0]!r}; known: {', '.join(DETECTORS.names())}")
        if len(set(value)) != len(value):
            raise ValueError("lists a detector twice")
        return value

    @field_validator("actions")
    @classmethod
    def _known_types(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name not in DETECTORS:
                raise ValueError(f"unknown PII type {name!r}; known: {', '.join(DETECTORS.names())}")
        return value

    @model_validator(mode="after")
    def _actions_have_detectors(self) -> SanitizeParams:
        if self.enabled and not self.detectors:
            raise ValueError("detectors: empty while enabled: true; list detectors or set enabled: false")
        for name in self.actions:
            if name not in self.detectors:
                raise ValueError(f"actions.{name}: no {name!r} in detectors, so this action would never apply")
        return self

    def action_for(self, pii_type: str) -> Action:
        return self.actions.get(pii_type, self.default_action)


# ---------------------------------------------------------------- canaries


class CanaryFormatParams(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_]+$")
    # Literal text with holes: {ALPHABET} is one draw from that alphabet, {ALPHABET}xN is N draws.
    template: str = Field(min_length=1)


class AuditCanaryParams(Section):
    count: int = Field(64, ge=0, le=100_000)  # audit canaries; each included with probability 1/2
    insertions: int = Field(1, ge=1, le=10_000)  # copies of an included audit canary
    format: str = Field("number", min_length=1)  # a name from canaries.formats


class CanaryParams(Section):
    seed: int = Field(42, ge=0)
    alphabets: dict[str, str | tuple[str, ...]] = Field(
        default_factory=lambda: {"d": "0123456789"}
    )  # a string: one character per draw; a list: one word per draw
    formats: tuple[CanaryFormatParams, ...] = Field(
        default_factory=lambda: (
            CanaryFormatParams(name="ssn", template="my social security number is {d}x3-{d}x2-{d}x4"),
            CanaryFormatParams(name="number", template="the random number is {d}x9"),
        ),
        min_length=1,
    )
    insertions: tuple[int, ...] = Field((1, 4, 16, 64), min_length=1)  # copies per canary (each <= 100000)
    per_count: int = Field(2, ge=1, le=10_000)  # canaries per insertion count and format
    audit: AuditCanaryParams = AuditCanaryParams()
    # Characters of inserted canary copies as a fraction of the training split's characters:
    # a warning above warn_fraction, an error above max_fraction (the canaries stage checks both).
    warn_fraction: float = Field(0.2, ge=0.0, le=1000.0)
    max_fraction: float = Field(1.0, gt=0.0, le=1000.0)

    @field_validator("alphabets")
    @classmethod
    def _alphabets_usable(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, symbols in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"alphabet name {name!r} must be an identifier")
            items = list(symbols)
            if len(items) < 2:
                raise ValueError(f"alphabet {name!r} needs at least 2 symbols")
            if len(set(items)) != len(items):
                raise ValueError(f"alphabet {name!r} repeats a symbol")
            if any(not s or "\n" in s for s in items):
                raise ValueError(f"alphabet {name!r} has an empty or multi-line symbol")
        return value

    @field_validator("insertions")
    @classmethod
    def _positive_unique(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= v <= 100_000 for v in value):
            raise ValueError("every insertion count must be between 1 and 100000")
        if len(set(value)) != len(value):
            raise ValueError("insertion counts must be distinct")
        return value

    @model_validator(mode="after")
    def _formats_consistent(self) -> CanaryParams:
        if self.warn_fraction > self.max_fraction:
            raise ValueError(f"warn_fraction ({self.warn_fraction}) must be <= max_fraction ({self.max_fraction})")
        names = [f.name for f in self.formats]
        if len(set(names)) != len(names):
            raise ValueError("formats: two formats share a name")
        if self.audit.count and self.audit.format not in names:
            raise ValueError(f"audit.format {self.audit.format!r} is not among formats ({', '.join(names)})")
        for i, spec in enumerate(self.formats):
            try:
                check_space(parse_format(spec.name, spec.template, self.alphabets), self.plan_for(spec.name))
            except ValueError as exc:
                raise ValueError(f"formats[{i}].template: {exc}") from None
        return self

    def parsed_formats(self) -> list[CanaryFormat]:
        return [parse_format(f.name, f.template, self.alphabets) for f in self.formats]

    def plan_for(self, format_name: str) -> CanaryPlan:
        audit = self.audit.count if format_name == self.audit.format else 0
        return CanaryPlan(self.insertions, self.per_count, audit, self.audit.insertions)


# ---------------------------------------------------------------- train


class TokenizerParams(Section):
    kind: Literal["char", "bpe", "pretrained"] = "char"  # char: one token per character (exact exposure is tractable)
    bpe_vocab_size: int = Field(512, ge=64, le=262_144)  # bpe only


class ModelParams(Section):
    arch: str = "gpt2"  # gpt2 | lstm | hf:PATH (a local folder of a pretrained causal LM)
    layers: int = Field(2, ge=1, le=96)
    width: int = Field(128, ge=8, le=16_384)  # gpt2: embedding width; lstm: units per layer
    heads: int = Field(4, ge=1, le=128)  # gpt2 only
    context: int = Field(64, ge=4, le=8192)  # tokens per training sequence: the DP privacy unit
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        if value not in ("gpt2", "lstm") and not (value.startswith("hf:") and len(value) > 3):
            raise ValueError("unknown arch; known: gpt2, lstm, hf:PATH")
        return value

    @field_validator("heads")
    @classmethod
    def _heads_divide_width(cls, value: int, info: Any) -> int:
        width, arch = info.data.get("width"), info.data.get("arch")
        if arch == "gpt2" and isinstance(width, int) and width % value:
            raise ValueError(f"gpt2 needs width ({width}) to be a multiple of heads")
        return value


class OptimizerParams(Section):
    name: Literal["adamw", "rmsprop", "sgd"] = "adamw"
    lr: float = Field(3e-3, gt=0.0, le=10.0)  # peak learning rate
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)  # sgd and rmsprop
    schedule: Literal["constant", "linear", "cosine"] = "cosine"  # decay after warmup, to 0 at the last step
    warmup_steps: int = Field(20, ge=0)  # optimizer steps of linear warmup


class DpParams(Section):
    enabled: bool = False
    noise_multiplier: float | None = Field(None, ge=0.0, le=1000.0)  # sigma; or give target_epsilon
    target_epsilon: float | None = Field(None, gt=0.0, le=1000.0)  # solve sigma for this epsilon at delta
    delta: float | None = Field(None, gt=0.0, lt=1.0)  # default 1 / (10 N), N = training sequences
    max_grad_norm: float = Field(1.0, gt=0.0, le=1e6)  # per-sample clipping bound C
    accountant: Literal["prv", "rdp"] = "prv"
    # How Opacus computes per-sample gradients. auto: ew (torch ExpandedWeights) when every trainable
    # weight sits in a layer ew knows (gpt2, gpt_neox, any LoRA model), else hooks with Opacus' functorch
    # fallback (full Llama/Qwen fine-tuning: their RMSNorm), hooks for the lstm (DPLSTM); see
    # training.dp.auto_grad_sample_mode. Measured on 2 CPU cores (benchmarks/train_speed.py):
    # gpt2 DP/plain step time 1.47 with ew vs 1.71 with hooks; DPLSTM 14 with hooks vs 26 with ew.
    grad_sample_mode: Literal["auto", "ew", "hooks", "functorch"] = "auto"
    max_noise_multiplier: float = Field(50.0, gt=0.0, le=1000.0)  # refuse a target epsilon that needs more noise
    # false (default): the noise generator is seeded from train.seed, so a run is reproducible but anyone
    # holding params.yaml can regenerate the noise: epsilon then assumes the seed is secret.
    # true: the noise comes from a generator seeded by the OS's cryptographic source (os.urandom), re-drawn
    # each epoch and never stored; runs are not bit-for-bit reproducible.
    secure_noise: bool = False

    @model_validator(mode="after")
    def _noise_or_target(self) -> DpParams:
        if self.enabled and (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("with enabled: true set exactly one of noise_multiplier and target_epsilon")
        return self

    @field_validator("noise_multiplier")
    @classmethod
    def _some_noise(cls, value: float | None, info: Any) -> float | None:
        if value == 0 and info.data.get("enabled"):
            raise ValueError("0 adds no noise, so epsilon is infinite; give a positive sigma, "
                             "or set enabled: false to train without DP")
        return value


class LoraParams(Section):
    """LoRA fine-tuning (peft): train low-rank adapters on a frozen model, then merge them into it.

    Off by default. With DP-SGD only the adapters get per-sample gradients, clipping and noise; epsilon
    means the same. The saved model is always the merged one (every later stage sees a plain causal
    LM); the adapter alone is also written to models/V/adapter/ (peft format) for hf:PATH models.
    """

    enabled: bool = False
    r: int = Field(8, ge=1, le=4096)  # adapter rank
    alpha: float = Field(16.0, gt=0.0, le=1e6)  # the update is scaled by alpha / r
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # dropout on the adapters' input
    # Names of the linear layers to adapt (a layer matches by its full dotted name or its last parts);
    # None: the architecture's attention projections (gpt2: c_attn; gpt_neox: query_key_value; llama,
    # mistral, qwen2: q_proj, v_proj). A name the model lacks is refused when the model is built.
    target_modules: tuple[str, ...] | None = Field(None, min_length=1)

    @field_validator("target_modules")
    @classmethod
    def _names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return value
        for name in value:
            if not name.strip() or name != name.strip():
                raise ValueError(f"layer names must be non-empty, without surrounding spaces (got {name!r})")
        if len(set(value)) != len(value):
            raise ValueError("layer names must be distinct")
        return value


class DistributedParams(Section):
    """Data-parallel training over local processes, launched with torchrun (training.distributed).

    nproc 1 (default): one process. nproc N: the train stage re-launches itself with
    ``torchrun --standalone --nproc-per-node N``; each process trains on its shard of every global
    batch (the global batch stays train.batch_size, so results match one process within float
    tolerance), DP clips per process and adds the noise once. One process per GPU on CUDA, or
    processes on the CPU (gloo).
    """

    nproc: int = Field(1, ge=1, le=1024)
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto: nccl on CUDA devices, gloo on the CPU


class TrainSettings(Section):
    """The settings of one training variant (base settings merged with the variant's overrides)."""

    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA (bf16 autocast) when present, else CPU
    tokenizer: TokenizerParams = TokenizerParams()
    model: ModelParams = ModelParams()
    optimizer: OptimizerParams = OptimizerParams()
    epochs: int = Field(3, ge=1, le=10_000)
    max_steps: int | None = Field(None, ge=1)  # stop after this many optimizer steps (None: all epochs)
    batch_size: int = Field(32, ge=1, le=1_000_000)  # logical batch (expected size under Poisson sampling)
    physical_batch_size: int = Field(32, ge=1, le=1_000_000)  # memory bound; larger batches accumulate
    eval_batch_size: int = Field(64, ge=1, le=1_000_000)
    early_stopping_patience: int | None = Field(None, ge=1)  # epochs without validation improvement
    # pretrain: start from the pretrain stage's base model (models/pretrain) when it has one, with its
    # tokenizer; the model settings must then match the base's. scratch: a fresh initialisation.
    # hf:PATH models start from their own weights either way.
    init: Literal["pretrain", "scratch"] = "pretrain"
    dp: DpParams = DpParams()
    lora: LoraParams = LoraParams()
    distributed: DistributedParams = DistributedParams()

    @field_validator("lora")
    @classmethod
    def _lora_arch(cls, value: LoraParams, info: Any) -> LoraParams:
        model = info.data.get("model")
        if value.enabled and isinstance(model, ModelParams) and model.arch == "lstm":
            raise ValueError("LoRA adapts the linear layers of a transformer: use model.arch gpt2 or hf:PATH, "
                             "or lora.enabled: false")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainSettings:
        pretrained = self.model.arch.startswith("hf:")
        if pretrained != (self.tokenizer.kind == "pretrained"):
            raise ValueError("tokenizer.kind 'pretrained' goes with model.arch 'hf:PATH', and only with it")
        if self.distributed.backend == "nccl" and self.device == "cpu":
            raise ValueError("distributed.backend 'nccl' needs GPUs: use device auto or cuda, or backend gloo")
        return self


class ExternalModel(Section):
    """A causal LM trained outside the pipeline (e.g. by the user's own Hugging Face ``Trainer`` code)
    on data/augmented/train.jsonl, audited like a variant: the external stage checks and copies it,
    nothing is trained.

    ``epsilon`` and ``delta`` are the user's declared DP claim (not verified by canaryaudit: the
    report says so); none means no DP claim.
    """

    path: str = Field(min_length=1)  # a local folder: config.json, *.safetensors weights, tokenizer files
    epsilon: float | None = Field(None, gt=0.0, le=1e6)
    delta: float | None = Field(None, gt=0.0, lt=1.0)
    # Tokens per scoring window (test perplexity, exposure, extraction); None: train.model.context,
    # capped by the model's own maximum positions.
    context: int | None = Field(None, ge=2, le=1_000_000)

    @field_validator("path")
    @classmethod
    def _local(cls, value: str) -> str:
        if "://" in value or value.startswith("hf:"):
            raise ValueError("a local folder is needed (download a hub model first: the audit runs offline)")
        return value

    @model_validator(mode="after")
    def _claim(self) -> ExternalModel:
        if (self.epsilon is None) != (self.delta is None):
            raise ValueError("declare both epsilon and delta (a DP claim), or neither (no DP claim)")
        return self


class TrainParams(TrainSettings):
    # Models trained elsewhere, audited beside the variants: NAME: {path, epsilon, delta, context}.
    external: dict[str, ExternalModel] = Field(default_factory=dict)
    # Each variant overrides any of the settings above, e.g. {dp: {enabled: true, noise_multiplier: 1.0}}.
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {
            "nonprivate": {},
            "dp": {"epochs": 3, "batch_size": 256, "physical_batch_size": 64,
                   "optimizer": {"lr": 0.001, "warmup_steps": 5}, "dp": {"enabled": True, "target_epsilon": 8.0}},
        }
    )

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not value:
            raise ValueError("define at least one variant")
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
                raise ValueError(f"variant name {name!r}: use letters, digits, '_' or '-' (it names folders)")
        return value

    @field_validator("external")
    @classmethod
    def _external_names(cls, value: dict[str, ExternalModel]) -> dict[str, ExternalModel]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
                raise ValueError(f"model name {name!r}: use letters, digits, '_' or '-' (it names folders)")
        return value

    @model_validator(mode="after")
    def _distinct_names(self) -> TrainParams:
        both = sorted(set(self.external) & set(self.variants))
        if both:
            raise ValueError(f"train.external and train.variants both define {', '.join(both)}: each model "
                             "name is one folder under models/, so use distinct names")
        return self

    @property
    def audited(self) -> tuple[str, ...]:
        """Every model the audit measures: the trained variants, then the external models."""
        return (*self.variants, *self.external)

    def variant(self, name: str) -> TrainSettings:
        """The merged, validated settings of variant ``name``."""
        if name not in self.variants:
            raise ParamsError(f"train.variants: no variant {name!r}; defined: {', '.join(self.variants)}")
        merged = _deep_merge(self.model_dump(mode="json", exclude={"variants", "external"}), self.variants[name])
        try:
            return TrainSettings.model_validate_json(json.dumps(merged))
        except ValidationError as exc:
            raise ParamsError(
                format_validation_error(exc, TrainSettings, "params", prefix=("train", "variants", name))
            ) from None


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------- exposure


class ExactRankParams(Section):
    enabled: bool = True
    # Try the exact search only when the extrapolated rank (|R| 2^-exposure) is at most this many candidates.
    max_estimated_rank: int = Field(100_000, ge=1)
    max_rows: int = Field(300_000, ge=1)  # model rows (sequences scored) per canary before giving up


class ExtractionParams(Section):
    enabled: bool = True
    pop_batch: int = Field(256, ge=1, le=1_000_000)  # partial candidates popped per model call
    max_expansions: int = Field(100_000, ge=1)  # node expansions per format before "not extracted within budget"
    # The search returns the top_k likeliest fillings of each format; a canary is extracted when it is
    # among them. null: the number of canaries of that format in the training data (an adversary who
    # knows how many secrets a format has tries that many guesses).
    top_k: int | None = Field(None, ge=1, le=1_000_000)


class ExposureParams(Section):
    seed: int = Field(7, ge=0)  # reference sampling
    references: int = Field(10_000, ge=10, le=10_000_000)  # fresh candidates per format, disjoint from every canary
    batch_size: int = Field(1024, ge=1, le=1_000_000)  # sequences per forward pass
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Model replicas that score the batches of each call concurrently: on CUDA one per GPU (cuda:0..N-1),
    # on the CPU N replicas in threads sharing the cores. Results are identical to 1 (same batches).
    shards: int = Field(1, ge=1, le=64)
    exact_rank: ExactRankParams = ExactRankParams()
    extraction: ExtractionParams = ExtractionParams()


# ---------------------------------------------------------------- extract

#: Names accepted in extract.strategies / extract.metrics. The registries live in
#: canaryaudit.extraction (importing torch there); these lists keep params loading light.
#: tests/test_extract_stage.py checks they equal the registries' names.
EXTRACT_STRATEGIES = ("top_n", "temperature_decay", "prefix")
EXTRACT_METRICS = ("perplexity", "reference_ratio", "zlib", "lowercase", "window", "min_k")


class TemperatureParams(Section):
    start: float = Field(10.0, gt=0.0, le=1000.0)  # temperature of the first generated token
    end: float = Field(1.0, gt=0.0, le=1000.0)  # reached after decay_tokens, then kept
    decay_tokens: int = Field(20, ge=1, le=100_000)  # linear decay over this many generated tokens


class PrefixParams(Section):
    source: str = "test"  # test: the held-out test split (never trained on) | file:PATH (.txt/.jsonl/.csv)
    dependency: str = Field("data/sanitized/test.jsonl", min_length=1)  # what DVC hashes: file:PATH's PATH
    min_tokens: int = Field(5, ge=1, le=10_000)
    max_tokens: int = Field(10, ge=1, le=10_000)

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value != "test" and not (value.startswith("file:") and len(value) > 5):
            raise ValueError("use 'test' (the held-out split) or 'file:PATH'")
        return value

    @model_validator(mode="before")
    @classmethod
    def _derive_dependency(cls, raw: Any) -> Any:
        return derive_file_dependency(raw)

    @model_validator(mode="after")
    def _min_le_max(self) -> PrefixParams:
        if self.min_tokens > self.max_tokens:
            raise ValueError("min_tokens must be <= max_tokens")
        check_file_dependency(self.source, self.dependency, "extract.prefix")
        return self


class MembershipParams(Section):
    tokens: int = Field(128, ge=2, le=100_000)  # segment length: members and non-members alike
    max_samples: int = Field(300, ge=2, le=10_000_000)  # segments per side (members, non-members)
    bootstrap: int = Field(500, ge=0, le=100_000)  # resamples for confidence intervals (0: none)


class EmpiricalEpsilonParams(Section):
    # Fixed before looking at the scores (the one-run bound needs it): top k+ guessed included,
    # bottom k- guessed held out, the rest abstain.
    guesses_included: int = Field(8, ge=0)
    guesses_excluded: int = Field(8, ge=0)
    p: float = Field(0.05, gt=0.0, lt=1.0)  # the bound holds with confidence 1 - p


class ExtractParams(Section):
    seed: int = Field(11, ge=0)  # sampling, prompt choice, membership segments, bootstrap
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Model replicas that generate the sample batches concurrently (one per GPU, or CPU threads); each
    # batch has its own seeded generator, so the samples are the same for any number of shards.
    shards: int = Field(1, ge=1, le=64)
    # The model that is reference_ratio's reference (dvc.yaml depends on models/<it>): `pretrain`, the
    # public base model (never saw the private text), or a train variant. On that variant itself the
    # ratio is identically 1 and is skipped; so it is when pretrain.source is none.
    reference_variant: str = Field(PRETRAIN_MODEL, min_length=1)
    strategies: tuple[str, ...] = Field(EXTRACT_STRATEGIES, min_length=1)
    samples_per_strategy: int = Field(200, ge=1, le=10_000_000)
    sample_tokens: int = Field(128, ge=2, le=100_000)  # generated tokens per sample
    batch_size: int = Field(128, ge=1, le=1_000_000)  # sequences per generation / scoring pass
    top_n: int = Field(40, ge=1, le=1_000_000)  # top_n and prefix strategies
    temperature: TemperatureParams = TemperatureParams()
    prefix: PrefixParams = PrefixParams()
    metrics: tuple[str, ...] = Field(EXTRACT_METRICS, min_length=1)
    window_tokens: int = Field(50, ge=1, le=100_000)  # window metric: sliding window length
    min_k_fraction: float = Field(0.2, gt=0.0, le=1.0)  # min_k metric: fraction of lowest-probability tokens
    candidates: int = Field(20, ge=1)  # per strategy x metric: best-ranked samples deduplicated
    top_k: int = Field(10, ge=1)  # ... of which the best top_k are verified (the paper's table)
    dedup_overlap: float = Field(0.5, gt=0.0, le=1.0)  # duplicate when >= this fraction of trigrams is shared
    min_memorized_chars: int = Field(50, ge=1)  # a verified training substring at least this long
    membership: MembershipParams = MembershipParams()
    audit: EmpiricalEpsilonParams = EmpiricalEpsilonParams()

    @field_validator("strategies", "metrics")
    @classmethod
    def _known_names(cls, value: tuple[str, ...], info: Any) -> tuple[str, ...]:
        known = EXTRACT_STRATEGIES if info.field_name == "strategies" else EXTRACT_METRICS
        for name in value:
            if name not in known:
                raise ValueError(f"unknown name {name!r}; known: {', '.join(known)}")
        if len(set(value)) != len(value):
            raise ValueError("names must not repeat")
        return value

    @model_validator(mode="after")
    def _top_k_fits(self) -> ExtractParams:
        if self.top_k > self.candidates:
            raise ValueError("top_k must be <= candidates")
        if self.candidates > self.samples_per_strategy:
            raise ValueError(f"candidates ({self.candidates}) must be <= samples_per_strategy "
                             f"({self.samples_per_strategy}): the table ranks each strategy's samples and keeps "
                             "the best candidates, so more candidates than samples ranks nothing")
        return self


# ---------------------------------------------------------------- PII attacks


class PiiReconstructionParams(Section):
    enabled: bool = True
    extra_tokens: int = Field(2, ge=0, le=1000)  # greedy tokens decoded past the value's own token count


class PiiAttackParams(Section):
    """Stage pii@VARIANT: PII reconstruction and inference (Lukas et al. 2023)."""

    seed: int = Field(13, ge=0)  # target sampling and candidate draws
    device: Literal["auto", "cpu", "cuda"] = "auto"
    types: tuple[str, ...] | None = None  # PII types attacked (None: every type found in the training split)
    max_per_type: int = Field(100, ge=1, le=1_000_000)  # distinct values attacked per type (a seeded sample)
    context_chars: int = Field(32, ge=1, le=100_000)  # characters of left context given to the model
    candidates: int = Field(10, ge=2, le=10_000)  # inference: true value among this many (chance 1/candidates)
    batch_size: int = Field(256, ge=1, le=1_000_000)  # sequences per forward pass
    # CPU threads of the forward passes (null: torch's default). Its calls are small: on 2 busy cores one
    # thread spent 3x less CPU time than two, waiting on each other (benchmarks/pii_attack_speed.py).
    threads: int | None = Field(1, ge=1, le=1024)
    reconstruction: PiiReconstructionParams = PiiReconstructionParams()

    @field_validator("types")
    @classmethod
    def _known_types(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("empty list; give PII types or null for all")
        for name in value:
            if name not in PII_TYPES:
                raise ValueError(f"unknown PII type {name!r}; known: {', '.join(PII_TYPES)}")
        if len(set(value)) != len(value):
            raise ValueError("lists a type twice")
        return value


# ---------------------------------------------------------------- report and gate

GATE_CHECKS = (
    "exposure", "extracted_canaries", "memorized_samples", "memorized_pii", "memorized_canaries",
    "membership_auc", "empirical_epsilon", "accountant_epsilon", "test_perplexity", "test_perplexity_ratio",
    "pii_inference_accuracy", "pii_reconstructed",
)
ALL_VARIANTS = "all"  # a gate rule's variant: the rule is checked for every audited model


class ReportParams(Section):
    title: str = Field("canaryaudit privacy report", min_length=1, max_length=200)
    top_samples: int = Field(20, ge=0, le=10_000)  # memorized samples shown in the report


class GateRule(Section):
    check: str  # what is measured; see GATE_CHECKS
    variant: str = Field(min_length=1)  # the train variant or external model it applies to, or `all`
    max: float  # the rule passes when the measured value is <= max
    baseline: str | None = None  # test_perplexity_ratio only: the variant whose perplexity is the denominator
    name: str | None = None  # shown in the verdict (default: derived from the check)
    insertions: int | None = Field(None, ge=0)  # exposure only: canaries inserted this many times
    estimator: Literal["best", "exact", "extrapolation", "interpolation"] = "best"  # exposure only
    metric: str | None = None  # membership_auc only (default: the highest AUC over non-degenerate metrics)
    # membership_auc only: which number of the AUC the rule bounds: the point estimate, or the low / high
    # end of its 95 % bootstrap interval (ci_high: fail unless even the optimistic end is under max).
    use: Literal["point", "ci_low", "ci_high"] = "point"
    # pii_inference_accuracy and pii_reconstructed only: the PII type (default: all types pooled).
    # pii_inference_accuracy also takes use (point, or an end of its exact 95 % interval).
    pii_type: str | None = None

    @field_validator("check")
    @classmethod
    def _known_check(cls, value: str) -> str:
        if value not in GATE_CHECKS:
            raise ValueError(f"unknown check {value!r}; known: {', '.join(GATE_CHECKS)}")
        return value

    @model_validator(mode="after")
    def _fields_fit_check(self) -> GateRule:
        if self.check == "exposure" and self.insertions is None:
            raise ValueError("an exposure rule needs insertions (the canary insertion count it bounds)")
        if self.check != "exposure" and (self.insertions is not None or self.estimator != "best"):
            raise ValueError("insertions and estimator apply to exposure rules only")
        if self.check != "membership_auc" and self.metric is not None:
            raise ValueError("metric applies to membership_auc rules only")
        if self.check not in ("membership_auc", "pii_inference_accuracy") and self.use != "point":
            raise ValueError("use applies to membership_auc and pii_inference_accuracy rules only")
        if self.pii_type is not None and self.check not in ("pii_inference_accuracy", "pii_reconstructed"):
            raise ValueError("pii_type applies to pii_inference_accuracy and pii_reconstructed rules only")
        if self.pii_type is not None and self.pii_type not in PII_TYPES:
            raise ValueError(f"unknown pii_type {self.pii_type!r}; known: {', '.join(PII_TYPES)}")
        if (self.check == "test_perplexity_ratio") != (self.baseline is not None):
            raise ValueError("baseline is required by test_perplexity_ratio rules and applies to them only "
                             "(e.g. {check: test_perplexity_ratio, variant: dp, baseline: nonprivate, max: 1.5})")
        if self.metric is not None and self.metric not in EXTRACT_METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; known: {', '.join(EXTRACT_METRICS)}")
        return self


def _default_gate_rules() -> tuple[GateRule, ...]:
    return (
        GateRule(check="exposure", variant="dp", insertions=64, max=20.0),
        GateRule(check="extracted_canaries", variant="dp", max=0),
        GateRule(check="memorized_pii", variant="dp", max=0),
        GateRule(check="membership_auc", variant="dp", max=0.6, use="ci_low"),
        GateRule(check="test_perplexity_ratio", variant="dp", baseline="nonprivate", max=1.5),
        GateRule(check="pii_inference_accuracy", variant="dp", max=0.1, use="ci_low"),
        GateRule(check="pii_reconstructed", variant="dp", max=0),
    )


class GateParams(Section):
    rules: tuple[GateRule, ...] = Field(default_factory=_default_gate_rules)


# ---------------------------------------------------------------- the file


class Params(Section):
    data: DataParams = DataParams()
    pretrain: PretrainParams = PretrainParams()
    sanitize: SanitizeParams = SanitizeParams()
    canaries: CanaryParams = CanaryParams()
    train: TrainParams = TrainParams()
    exposure: ExposureParams = ExposureParams()
    extract: ExtractParams = ExtractParams()
    pii: PiiAttackParams = PiiAttackParams()
    report: ReportParams = ReportParams()
    gate: GateParams = GateParams()

    @model_validator(mode="after")
    def _variants_exist(self) -> Params:
        # Checked when the section is given: a partial file (e.g. train only, in tests or a
        # library call) keeps the defaults of the sections it does not use.
        variants = self.train.variants
        ref = self.extract.reference_variant
        if "extract" in self.model_fields_set and ref not in variants and ref != PRETRAIN_MODEL:
            raise ValueError(f"extract.reference_variant {ref!r} is not {PRETRAIN_MODEL!r} or a train variant; "
                             f"defined: {', '.join(variants)}")
        if PRETRAIN_MODEL in self.train.audited:
            raise ValueError(f"train: {PRETRAIN_MODEL!r} names the pretrain stage's model folder (models/{PRETRAIN_MODEL}); "
                             "rename the variant")
        if "extract" in self.model_fields_set and self.canaries.audit.count:
            audit = self.extract.audit
            wanted = audit.guesses_included + audit.guesses_excluded
            if wanted > self.canaries.audit.count:
                raise ValueError(f"extract.audit: {wanted} guesses but only {self.canaries.audit.count} audit "
                                 "canaries (guesses_included + guesses_excluded > canaries.audit.count); lower "
                                 "the guesses or raise the count")
        if "exposure" in self.model_fields_set:
            for fmt in self.canaries.parsed_formats():
                free = fmt.space_size - self.canaries.plan_for(fmt.name).total
                if self.exposure.references > free:
                    raise ValueError(f"exposure.references: {self.exposure.references} references requested, but "
                                     f"format {fmt.name!r} has only {free} fillings that are not canaries")
        self._variants_fit_the_base()
        for i, rule in enumerate(self.gate.rules if "gate" in self.model_fields_set else ()):
            for field_name in ("variant", "baseline"):
                name = getattr(rule, field_name)
                if name is None or name in self.train.audited or (field_name == "variant" and name == ALL_VARIANTS):
                    continue
                also = f" or {ALL_VARIANTS!r}" if field_name == "variant" else ""
                raise ValueError(f"gate.rules[{i}].{field_name} {name!r} is not a train variant or external "
                                 f"model{also}; defined: {', '.join(self.train.audited)}")
        return self


    def _variants_fit_the_base(self) -> None:
        """A variant that fine-tunes the pretrain base must have its shape (the base is trained with the
        base train.model settings): refused here, at load, rather than by its train stage after the others."""
        base = self.train.model
        if self.pretrain.source == PRETRAIN_NONE or base.arch not in ("gpt2", "lstm"):
            return
        for name in self.train.variants:
            settings = self.train.variant(name)
            if settings.init != "pretrain" or settings.model.arch.startswith("hf:"):
                continue
            for field in BASE_MODEL_FIELDS:
                mine, theirs = getattr(settings.model, field), getattr(base, field)
                if mine != theirs:
                    key = f"train.variants.{name}"
                    raise ValueError(f"{key}.model.{field}: {mine!r} differs from the pretrain base model's "
                                     f"{theirs!r} (train.model.{field}); use the base's, or set {key}.init: scratch")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML keeps the last silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# YAML 1.1 reads yes/no/on/off as booleans, so `txt_unit: off` would arrive as False.
# Only true/false are booleans here; everything else stays a string and fails type checks.
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _dotted(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _allowed_keys(model: type[BaseModel], loc: Sequence[int | str]) -> list[str] | None:
    """Field names of the section at ``loc`` (for 'unknown key' messages)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return sorted(current.model_fields)
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        nested = [a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        current = nested[0] if nested else annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return None


def format_validation_error(
    exc: ValidationError, model: type[BaseModel], origin: str, prefix: tuple[str, ...] = ()
) -> str:
    lines = [f"{origin}: invalid params:"]
    for error in exc.errors():
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = _dotted(prefix + loc)
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1]) or []
            lines.append(f"  {key}: unknown key; allowed keys here: {', '.join(allowed)}")
        elif error["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            message = error["msg"].removeprefix("Value error, ")
            given = error.get("input")
            got = "" if isinstance(given, dict) else f" (got {given!r})"
            lines.append(f"  {key}: {message}{got}")
    return "\n".join(lines)


#: Most values (mappings, lists and scalars, each alias counted every time it is used) a params
#: file may expand to. The default file has a few hundred; a "billion laughs" file of nested
#: aliases has billions, and expanding it (to validate it) would exhaust memory.
MAX_EXPANDED_VALUES = 200_000


class _Cyclic(Exception):
    pass


def expanded_size(raw: Any, limit: int = MAX_EXPANDED_VALUES) -> int:
    """How many values ``raw`` holds once every shared (aliased) node is counted at each use.

    Stops as soon as the count passes ``limit`` (returns a number > limit) without expanding
    anything; raises ``ValueError`` for a node that contains itself (a circular YAML alias).
    Iterative, so a deeply nested value cannot overflow the stack.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Any, bool]] = [(raw, False)]

    def children(node: Any) -> list[Any]:
        return [*node.keys(), *node.values()] if isinstance(node, dict) else list(node)

    while stack:
        node, finished = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        key = id(node)
        if finished:
            total = 1 + sum(sizes[id(c)] if isinstance(c, (dict, list)) else 1 for c in children(node))
            sizes[key] = total
            open_nodes.discard(key)
            if total > limit:
                return total
            continue
        if key in sizes:
            continue
        open_nodes.add(key)
        stack.append((node, True))
        for child in children(node):
            if isinstance(child, (dict, list)):
                if id(child) in open_nodes:
                    raise ValueError("a value contains itself (a circular YAML alias such as `a: &x [*x]`)")
                if id(child) not in sizes:
                    stack.append((child, False))
    return sizes.get(id(raw), 1)


def _check_expansion(raw: Any, origin: str) -> None:
    try:
        size = expanded_size(raw)
    except ValueError as exc:
        raise ParamsError(f"{origin}: {exc}") from None
    if size > MAX_EXPANDED_VALUES:
        raise ParamsError(
            f"{origin}: expands to more than {MAX_EXPANDED_VALUES} values (nested YAML aliases, "
            "a 'billion laughs' file?); params files hold a few hundred"
        )


def parse_params(raw: Any, origin: str = "params") -> Params:
    """Validate an already-parsed mapping into :class:`Params`."""
    if raw is None:
        raise ParamsError(f"{origin}: the file is empty")
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{origin}: top level must be a mapping of sections, got {type(raw).__name__}")
    _check_expansion(dict(raw), origin)
    try:
        # Through JSON: strict mode then accepts YAML lists for tuples and ints for floats,
        # but still rejects "3" for an int or "yes" for a bool.
        text = json.dumps(dict(raw), default=str)
    except (ValueError, RecursionError) as exc:
        raise ParamsError(f"{origin}: cannot be read as params ({type(exc).__name__}: {exc})") from None
    try:
        params = Params.model_validate_json(text)
    except ValidationError as exc:
        raise ParamsError(format_validation_error(exc, Params, origin)) from None
    for name in params.train.variants:
        try:
            params.train.variant(name)
        except ParamsError as exc:
            raise ParamsError(str(exc).replace("params: invalid params:", f"{origin}: invalid params:", 1)) from None
    return params


def _yaml_error(exc: yaml.YAMLError, where: str, lines: bool) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    place = f"{where}:{mark.line + 1}" if mark is not None and lines else where
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{place}: invalid YAML: {problem}"


def load_yaml(text: str, where: str, lines: bool = True) -> Any:
    """Parse params YAML; a syntax error or a too-deep nesting raises ParamsError naming ``where`` and the line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ParamsError(_yaml_error(exc, where, lines)) from None
    except RecursionError:
        raise ParamsError(f"{where}: invalid YAML: nested too deeply") from None


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``dotted.key=YAML value`` override (like ``dvc exp run -S``) in place."""
    if "=" not in assignment:
        raise ParamsError(f"override {assignment!r}: expected KEY=VALUE")
    key, _, text = assignment.partition("=")
    parts = key.strip().split(".")
    node: dict[str, Any] = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ParamsError(f"override {assignment!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = load_yaml(text, f"override {assignment!r}", lines=False)


def load_params(path: str | Path = "params.yaml", overrides: Sequence[str] = ()) -> Params:
    """Read, override and validate params; every error names the file and dotted key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParamsError(f"{p}: params file not found") from None
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{p}: not valid UTF-8 (offset {exc.start})") from None
    except IsADirectoryError:
        raise ParamsError(f"{p}: is a folder, expected a params file") from None
    raw = load_yaml(text, str(p))
    if overrides and (raw is None or isinstance(raw, Mapping)):
        raw = dict(raw or {})
        for assignment in overrides:
            apply_override(raw, assignment)
    return parse_params(raw, origin=str(p))
