"""Tokenizers, registered by ``train.tokenizer.kind``: char (default), bpe, pretrained.

Character-level is the default because each digit of a canary is then one
token, which keeps exact exposure (enumerating the randomness tree) tractable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from canaryaudit.errors import DataError, ParamsError
from canaryaudit.io import atomic_open, read_json
from canaryaudit.registry import Registry

EOS = "<eos>"  # separates documents in the token stream
UNK = "<unk>"  # characters unseen in training


class Tokenizer(Protocol):
    kind: str

    @property
    def vocab_size(self) -> int: ...

    @property
    def eos_id(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def save(self, folder: Path) -> None: ...


class CharTokenizer:
    """One token per Unicode character seen in training, plus <eos> and <unk>."""

    kind = "char"

    def __init__(self, chars: Sequence[str]) -> None:
        self.itos: list[str] = [EOS, UNK, *chars]
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        return cls(sorted(seen))  # sorted: the same data always gives the same ids

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def eos_id(self) -> int:
        return 0

    def encode(self, text: str) -> list[int]:
        unk = 1
        return [self.stoi.get(ch, unk) for ch in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.itos[i] if i > 1 else ("\n\n" if i == 0 else "\ufffd") for i in ids)

    def save(self, folder: Path) -> None:
        """Save as a PreTrainedTokenizerFast (AutoTokenizer loads it and gives the same ids) plus tokenizer_kind.json."""
        from tokenizers import Tokenizer as HfTokenizer
        from tokenizers import decoders, models

        # A BPE model without merges is a character lookup: each character maps to its id, an unseen
        # one to <unk> (one <unk> per character, as encode does); no normalizer, no pre-tokenizer,
        # so spaces and newlines are characters like any other, and Fuse joins them back on decode.
        backend = HfTokenizer(models.BPE(vocab=dict(self.stoi), merges=[], unk_token=UNK))
        backend.decoder = decoders.Fuse()
        save_hf_tokenizer(backend, folder, self.kind)

    @classmethod
    def load(cls, folder: Path) -> CharTokenizer:
        """Read what :meth:`save` writes, or the older {"kind": "char", "chars": [...]} tokenizer.json."""
        path = folder / "tokenizer.json"
        raw = read_json(path)
        chars = raw.get("chars") if isinstance(raw, dict) and "chars" in raw else _chars_of_hf_vocab(raw, path)
        if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise DataError(path, "corrupt char tokenizer: 'chars' must be a list of single characters")
        if len(set(chars)) != len(chars) or EOS in chars or UNK in chars:
            raise DataError(path, "corrupt char tokenizer: 'chars' repeats a character")
        return cls(chars)


def _chars_of_hf_vocab(raw: object, path: Path) -> object:
    """The characters of a char tokenizer saved in the HF format, in id order after <eos> and <unk>."""
    vocab = raw.get("model", {}).get("vocab") if isinstance(raw, dict) and isinstance(raw.get("model"), dict) else None
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise DataError(path, "corrupt char tokenizer: no model.vocab of token ids")
    by_id = sorted(vocab.items(), key=lambda item: item[1])
    if [i for _, i in by_id] != list(range(len(by_id))) or [t for t, _ in by_id[:2]] != [EOS, UNK]:
        raise DataError(path, "corrupt char tokenizer: ids must run 0..n-1 from <eos> and <unk>")
    return [t for t, _ in by_id[2:]]


def save_hf_tokenizer(backend, folder: Path, kind: str) -> None:
    """Write ``backend`` (a tokenizers.Tokenizer) as a PreTrainedTokenizerFast, and tokenizer_kind.json.

    save_pretrained writes into a temporary subfolder whose files are then renamed in one by one
    (each atomically), so an interrupted save leaves no half file.
    """
    import shutil

    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS,
                                   unk_token=UNK if backend.token_to_id(UNK) is not None else None)
    tmp = folder / ".saving-tokenizer"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fast.save_pretrained(str(tmp))
        for path in sorted(tmp.iterdir()):
            path.replace(folder / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with atomic_open(folder / "tokenizer_kind.json") as handle:
        json.dump({"kind": kind}, handle)


class BpeTokenizer:
    """Byte-level BPE trained on the corpus with the `tokenizers` library."""

    kind = "bpe"

    def __init__(self, backend) -> None:  # a tokenizers.Tokenizer
        self.backend = backend

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BpeTokenizer:
        from tokenizers import Tokenizer as HfTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        backend = HfTokenizer(models.BPE(unk_token=None))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        backend.train_from_iterator(texts, trainer=trainer)
        return cls(backend)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    @property
    def eos_id(self) -> int:
        return self.backend.token_to_id(EOS)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids))

    def save(self, folder: Path) -> None:
        save_hf_tokenizer(self.backend, folder, self.kind)

    @classmethod
    def load(cls, folder: Path) -> BpeTokenizer:
        from tokenizers import Tokenizer as HfTokenizer

        path = folder / "tokenizer.json"
        try:
            return cls(HfTokenizer.from_file(str(path)))
        except Exception as exc:  # noqa: BLE001 - the Rust backend raises a bare Exception
            raise DataError(path, f"corrupt BPE tokenizer ({str(exc)[:200]})") from None


class PretrainedTokenizer:
    """The tokenizer saved with a pretrained model (``hf:PATH`` models)."""

    kind = "pretrained"

    def __init__(self, backend) -> None:  # a transformers PreTrainedTokenizerBase
        self.backend = backend

    @classmethod
    def from_path(cls, path: str) -> PretrainedTokenizer:
        from transformers import AutoTokenizer

        try:
            return cls(AutoTokenizer.from_pretrained(path))
        except (OSError, ValueError) as exc:
            raise DataError(path, f"no usable tokenizer ({str(exc)[:200]})") from None

    @property
    def vocab_size(self) -> int:
        return len(self.backend)

    @property
    def eos_id(self) -> int:
        eos = self.backend.eos_token_id
        return int(eos) if eos is not None else 0

    def encode(self, text: str) -> list[int]:
        return list(self.backend.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids))

    def save(self, folder: Path) -> None:
        self.backend.save_pretrained(str(folder))
        with atomic_open(folder / "tokenizer_kind.json") as handle:
            json.dump({"kind": self.kind}, handle)


@dataclass(frozen=True)
class TokenizerOptions:
    bpe_vocab_size: int = 512
    pretrained_path: str | None = None  # the hf:PATH model's folder or hub name


def _pretrained(_texts: Sequence[str], options: TokenizerOptions) -> Tokenizer:
    if options.pretrained_path is None:
        raise ParamsError("train.tokenizer.kind: 'pretrained' needs train.model.arch 'hf:PATH'")
    return PretrainedTokenizer.from_path(options.pretrained_path)


TOKENIZERS: Registry[Callable[[Sequence[str], TokenizerOptions], Tokenizer]] = Registry("tokenizer")
TOKENIZERS.add("char", lambda texts, _options: CharTokenizer.train(texts))
TOKENIZERS.add("bpe", lambda texts, options: BpeTokenizer.train(texts, options.bpe_vocab_size))
TOKENIZERS.add("pretrained", _pretrained)


def build_tokenizer(kind: str, texts: Sequence[str], options: TokenizerOptions) -> Tokenizer:
    """Train (char, bpe) or load (pretrained) the tokenizer registered as ``kind``."""
    return TOKENIZERS.get(kind)(texts, options)


HF_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model", "vocab.json")


def _saved_kind(folder: Path) -> tuple[str | None, Path]:
    """The kind of the tokenizer saved in ``folder`` and the file that says so."""
    kind_file = folder / "tokenizer_kind.json"
    if kind_file.exists():
        meta = read_json(kind_file)
        return (meta.get("kind") if isinstance(meta, dict) else None), kind_file
    legacy = folder / "tokenizer.json"
    if legacy.exists() and not (folder / "tokenizer_config.json").exists():
        meta = read_json(legacy)  # canaryaudit's first format: {"kind": "char", "chars": [...]}
        if isinstance(meta, dict) and "model" not in meta:
            return meta.get("kind"), legacy
    if any((folder / name).exists() for name in HF_TOKENIZER_FILES):
        return "pretrained", folder  # saved by transformers: a model trained elsewhere
    raise DataError(folder, "no tokenizer (tokenizer.json or tokenizer_config.json); save the model's tokenizer "
                    "into the folder with tokenizer.save_pretrained(folder)")


def load_tokenizer(folder: Path, vocab_size: int | None = None, at_most: bool = False) -> Tokenizer:
    """Load what :meth:`Tokenizer.save` (or transformers' ``save_pretrained``) wrote into ``folder``.

    ``vocab_size`` is the model's embedding rows: char and BPE tokenizers must match it exactly; a
    pretrained one (or any, with ``at_most``) may have fewer tokens, since models often pad their
    embeddings (GPT-2-style 50257 tokens in 50304 rows). A missing, corrupt or unknown tokenizer, or
    one that does not fit, raises DataError naming the file (not a params key: the file is at fault).
    """
    kind, source = _saved_kind(folder)
    if kind == "char":
        tokenizer: Tokenizer = CharTokenizer.load(folder)
    elif kind == "bpe":
        tokenizer = BpeTokenizer.load(folder)
    elif kind == "pretrained":
        tokenizer = PretrainedTokenizer.from_path(str(folder))
    else:
        raise DataError(source, f"unknown or missing tokenizer kind {kind!r}; known: char, bpe, pretrained")
    if vocab_size is not None:
        fits = tokenizer.vocab_size <= vocab_size if at_most or kind == "pretrained" else tokenizer.vocab_size == vocab_size
        if not fits:
            raise DataError(source, f"tokenizer has {tokenizer.vocab_size} tokens but the model was trained with "
                                    f"{vocab_size}; the model folder is inconsistent: retrain it")
    return tokenizer
