"""Corpus sources for the prepare stage: builtin:emails, file:PATH, hf:NAME[:CONFIG].

Each loader returns documents (id, text, optional author); the builtin one also
returns the ground-truth PII spans its generator planted.
"""

from __future__ import annotations

import csv
import io
import logging
import random
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from canaryaudit.config import DataParams
from canaryaudit.corpus.emails import generate_emails
from canaryaudit.errors import CanaryAuditError, DataError, ParamsError
from canaryaudit.io import iter_jsonl, read_text_strict
from canaryaudit.pii.spans import PiiSpan

FILE_SUFFIXES = (".txt", ".jsonl", ".csv")
log = logging.getLogger("canaryaudit.corpus.sources")
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str
    author: str | None = None

    def record(self) -> dict[str, str | None]:
        return {"doc_id": self.doc_id, "text": self.text, "author": self.author}


@dataclass(frozen=True)
class Corpus:
    documents: list[Document]
    #: Ground-truth PII spans per doc_id, when the source knows them (builtin only).
    truth: dict[str, tuple[PiiSpan, ...]] | None
    description: str
    #: Files of a folder source that were not read (not .txt, .jsonl or .csv), relative to the folder.
    skipped_files: tuple[str, ...] = ()


# ---------------------------------------------------------------- builtin


def load_builtin(params: DataParams) -> Corpus:
    b = params.builtin
    documents: list[Document] = []
    truth: dict[str, tuple[PiiSpan, ...]] = {}
    generated = generate_emails(
        seed=params.seed,
        target_bytes=b.target_bytes,
        emails_per_person=(b.emails_per_person_min, b.emails_per_person_max),
        reply_probability=b.reply_probability,
    )
    with tqdm(total=b.target_bytes, unit="B", unit_scale=True, desc="generate emails", mininterval=1.0) as bar:
        for doc in generated:
            documents.append(Document(doc.doc_id, doc.text, doc.author))
            truth[doc.doc_id] = doc.pii
            bar.update(len(doc.text.encode("utf-8")))
    return Corpus(documents, truth, f"builtin synthetic emails (seed {params.seed})")


# ---------------------------------------------------------------- files

def _txt_documents(path: Path, label: str, unit: str) -> Iterator[Document]:
    """One document per file, per line, or per block of lines separated by blank lines (id: stem:first line).

    Line ends may be LF, CRLF or a lone CR (old Mac files): a CR-only file has as many lines as it shows.
    """
    text = read_text_strict(path).replace("\r\n", "\n").replace("\r", "\n")
    if unit == "file":
        yield Document(label, text.strip())
        return
    if unit == "line":
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                yield Document(f"{label}:{number}", line.strip())
        return
    block: list[str] = []
    start = 1
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            if not block:
                start = number
            block.append(line)
        elif block:
            yield Document(f"{label}:{start}", "\n".join(block).strip())
            block = []
    if block:
        yield Document(f"{label}:{start}", "\n".join(block).strip())


def _field(obj: dict[str, object], key: str | None, path: Path, line: int, required: bool) -> str | None:
    if key is None:
        return None
    if key not in obj or obj[key] is None:
        if required:
            raise DataError(path, f"missing field {key!r} (set data.file.text_field / id_field to the right key)", line)
        return None
    value = obj[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not required:
        return str(value)
    if not isinstance(value, str):
        raise DataError(path, f"field {key!r} must be a string, got {type(value).__name__}", line)
    return value


def _jsonl_documents(path: Path, label: str, params: DataParams) -> Iterator[Document]:
    f = params.file
    for line, obj in iter_jsonl(path):
        text = _field(obj, f.text_field, path, line, required=True) or ""
        doc_id = _field(obj, f.id_field, path, line, required=False) or f"{label}:{line}"
        yield Document(doc_id, text, _field(obj, f.author_field, path, line, required=False))


def _csv_documents(path: Path, label: str, params: DataParams) -> Iterator[Document]:
    f = params.file
    text = read_text_strict(path)
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    row_start = 1  # line where the row being read begins (a quoted field may span lines)
    try:
        header = reader.fieldnames or []
        if f.text_field not in header:
            raise DataError(path, f"no column {f.text_field!r} in header {header} (set data.file.text_field)", 1)
        row_start = reader.line_num + 1
        for row in reader:
            if None in row:
                raise DataError(path, f"row has {len(header) + len(row[None])} fields, header has {len(header)}", row_start)
            if any(value is None for value in row.values()):
                missing = sum(value is None for value in row.values())
                raise DataError(path, f"row has {len(header) - missing} fields, header has {len(header)}", row_start)
            doc_id = row.get(f.id_field) if f.id_field else None
            author = row.get(f.author_field) if f.author_field else None
            yield Document(doc_id or f"{label}:{row_start}", row[f.text_field] or "", author or None)
            row_start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(path, f"malformed CSV in the row starting here: {exc}", row_start) from None


def _files_under(root: Path) -> tuple[list[Path], list[Path]]:
    """(files read, files skipped for their extension) of a file or folder source."""
    if root.is_file():
        return [root], []
    if not root.exists():
        raise DataError(root, "data.source path does not exist")
    every = sorted(p for p in root.rglob("*") if p.is_file())
    files = [p for p in every if p.suffix.lower() in FILE_SUFFIXES]
    skipped = [p for p in every if p.suffix.lower() not in FILE_SUFFIXES]
    if not files:
        raise DataError(root, f"folder holds no {', '.join(FILE_SUFFIXES)} files"
                              f"{f' (only {len(skipped)} other file(s), e.g. {skipped[0].name})' if skipped else ''}")
    return files, skipped


def load_files(path: Path, params: DataParams) -> Corpus:
    documents: list[Document] = []
    files, skipped = _files_under(path)
    for file in skipped:  # said out loud: a .md or .json corpus file silently left out changes the audit
        log.warning("data.source: skipped %s: not %s", file, ", ".join(FILE_SUFFIXES))
    for file in files:
        suffix = file.suffix.lower()
        # ids from the path relative to the source folder, so a/part.jsonl and b/part.jsonl differ
        label = file.relative_to(path).with_suffix("").as_posix() if path.is_dir() else file.stem
        if suffix == ".txt":
            docs: Iterator[Document] = _txt_documents(file, label, params.file.txt_unit)
        elif suffix == ".jsonl":
            docs = _jsonl_documents(file, label, params)
        elif suffix == ".csv":
            docs = _csv_documents(file, label, params)
        else:
            raise DataError(file, f"unsupported file type {suffix!r}; use one of {', '.join(FILE_SUFFIXES)}")
        found = list(docs)
        if not any(d.text.strip() for d in found):
            raise DataError(file, "holds no non-empty document")
        documents.extend(found)
    return Corpus(documents, None, f"files under {path}", tuple(p.relative_to(path).as_posix() for p in skipped))


# ---------------------------------------------------------------- Hugging Face datasets


def load_hf(spec: str, params: DataParams) -> Corpus:
    """Load ``NAME[:CONFIG]``: a local dataset folder, or a hub dataset when online."""
    import datasets  # imported here: slow, and only this source needs it

    name, _, config = spec.partition(":")
    split = params.hf.split
    local = Path(name)
    try:
        if local.exists() and ((local / "state.json").exists() or (local / "dataset_dict.json").exists()):
            loaded = datasets.load_from_disk(str(local))
            dataset = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            dataset = datasets.load_dataset(str(local) if local.exists() else name, config or None, split=split)
    except KeyError:
        raise ParamsError(f"data.hf.split: split {split!r} not found in {name}") from None
    except (FileNotFoundError, ConnectionError, OSError, ValueError) as exc:
        raise CanaryAuditError(
            f"data.source hf:{spec}: could not load ({type(exc).__name__}: {str(exc)[:300]}). "
            "Hub datasets need network: set HF_HUB_OFFLINE=0 and HF_DATASETS_OFFLINE=0, or point at a local folder."
        ) from None
    field = params.hf.text_field
    if field not in dataset.column_names:
        raise ParamsError(f"data.hf.text_field: column {field!r} not in {dataset.column_names}")
    documents = [
        Document(f"{name.replace('/', '_')}:{i}", str(text)) for i, text in enumerate(dataset[field]) if text is not None
    ]
    return Corpus(documents, None, f"Hugging Face dataset {spec} (split {split})")


# ---------------------------------------------------------------- checks before any work

_EDGE_PUNCTUATION = "\"'`.,;:!?()[]{}<>*_~|"
_INNER_ASCII = "'-._@/+#%&=:"  # ASCII punctuation a word, address, path or number may hold inside


def _is_word(token: str) -> bool:
    """A token made of letters (any script), digits and word-internal punctuation, at least half letters."""
    core = token.strip(_EDGE_PUNCTUATION)
    if not core:
        return False
    letters = 0
    for ch in core:
        if ch.isalpha():
            letters += 1
        elif ch.isascii():
            if not (ch.isdigit() or ch in _INNER_ASCII):
                return False
        elif unicodedata.category(ch)[0] not in "LMNP":
            return False
    return letters * 2 >= len(core)


def word_fraction(texts: Iterable[str], max_chars: int = 2_000_000) -> float:
    """Share of the whitespace-separated tokens that look like words, over the first ``max_chars``.

    English prose scores about 0.9, the builtin emails and source code about 0.75, random printable
    ASCII 0.05 (random bytes with extra spaces 0.2): the check tells text from noise, not style.
    """
    words = total = 0
    budget = max_chars
    for text in texts:
        for token in text[:budget].split():
            total += 1
            words += _is_word(token)
        budget -= len(text)
        if budget <= 0:
            break
    return words / total if total else 0.0


def check_word_fraction(documents: Sequence[Document], params: DataParams) -> float:
    """Refuse a corpus whose text is mostly non-words (``data.min_word_fraction``; 0 turns it off)."""
    fraction = word_fraction(d.text for d in documents)
    if fraction < params.min_word_fraction:
        raise DataError(
            params.source,
            f"only {fraction:.0%} of its whitespace-separated tokens look like words, below "
            f"data.min_word_fraction = {params.min_word_fraction:g}: random bytes or binary data read as text? "
            "Check the files, or lower data.min_word_fraction (0 turns the check off)",
        )
    return fraction


def resolve_source_path(params: DataParams, base_dir: Path) -> Path:
    """The path of a ``file:`` source, refused outside ``base_dir`` unless data.allow_outside_workspace."""
    rest = params.source.partition(":")[2]
    path = Path(rest).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not params.allow_outside_workspace:
        resolved, root = path.resolve(), base_dir.resolve()
        if resolved != root and root not in resolved.parents:
            raise ParamsError(
                f"data.source: {params.source} resolves to {resolved}, outside the workspace {root}; copy or link "
                "the data into the workspace, or set data.allow_outside_workspace: true to read it from there"
            )
    return path


# ---------------------------------------------------------------- entry point


def _txt_unit_hint(params: DataParams) -> str:
    """What to try when a .txt source split into too few documents."""
    if not params.source.startswith("file:") or params.file.txt_unit == "line":
        return ""
    unit = "blank-line-separated block" if params.file.txt_unit == "block" else "file"
    return (f" (.txt files are read as one document per {unit}, data.file.txt_unit: {params.file.txt_unit}; "
            "for one document per line set data.file.txt_unit: line)")


def load_corpus(params: DataParams, base_dir: Path) -> Corpus:
    """Load ``data.source``, drop short documents, cap at ``data.max_documents``."""
    kind, _, rest = params.source.partition(":")
    if kind == "builtin":
        corpus = load_builtin(params)
    elif kind == "file":
        corpus = load_files(resolve_source_path(params, base_dir), params)
    else:
        corpus = load_hf(rest, params)
    # One newline convention everywhere: canaries are inserted as "\n"-separated lines.
    docs = [
        Document(d.doc_id, d.text.replace("\r\n", "\n").replace("\r", "\n"), d.author)
        for d in corpus.documents
        if len(d.text.strip()) >= params.min_chars
    ]
    if params.max_documents is not None:
        docs = docs[: params.max_documents]
    seen: set[str] = set()
    for d in docs:
        if d.doc_id in seen:
            # the id itself is not echoed: an id_field may hold an email address
            raise DataError(params.source, f"two documents share one id (the {len(seen) + 1}th loaded repeats an earlier one); ids must be unique")
        seen.add(d.doc_id)
    if len(docs) < 3:
        raise DataError(params.source, f"only {len(docs)} usable document(s); need at least 3 to split"
                        + _txt_unit_hint(params))
    check_word_fraction(docs, params)
    truth = {d.doc_id: corpus.truth[d.doc_id] for d in docs} if corpus.truth is not None else None
    return Corpus(docs, truth, corpus.description, corpus.skipped_files)


def split_documents(documents: list[Document], valid_fraction: float, test_fraction: float, seed: int) -> dict[str, list[Document]]:
    """Split by document with a seeded shuffle; each split keeps the source order."""
    n = len(documents)
    order = list(range(n))
    random.Random(f"split-{seed}").shuffle(order)
    n_valid = round(n * valid_fraction)
    n_test = round(n * test_fraction)
    if n - n_valid - n_test < 1:
        raise DataError("data.split", f"{n} documents leave no training document")
    chosen = {
        "valid": sorted(order[:n_valid]),
        "test": sorted(order[n_valid : n_valid + n_test]),
        "train": sorted(order[n_valid + n_test :]),
    }
    return {name: [documents[i] for i in chosen[name]] for name in SPLITS}


def truth_records(truth: dict[str, tuple[PiiSpan, ...]]) -> list[dict[str, object]]:
    return [
        {"doc_id": doc_id, "type": s.type, "start": s.start, "end": s.end}
        for doc_id, spans in truth.items()
        for s in spans
    ]


def describe(splits: dict[str, list[Document]]) -> dict[str, dict[str, int]]:
    return {
        name: {"documents": len(docs), "bytes": sum(len(d.text.encode("utf-8")) for d in docs)}
        for name, docs in splits.items()
    }


__all__ = ["Corpus", "Document", "SPLITS", "check_word_fraction", "describe", "load_corpus", "resolve_source_path",
           "split_documents", "truth_records", "word_fraction"]
