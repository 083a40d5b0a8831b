"""The public corpus of the pretrain stage: text disjoint from the private corpus.

Teams fine-tune a model pretrained on public text; the audit does the same so that
its DP variant is useful (DP fine-tuning of a public base model loses far less than DP
training from scratch). The public corpus must not hold the private data, or the base
model would carry private text past DP:

* ``builtin:emails``: the same generator with ``pretrain.seed`` and none of the private
  corpus's people (their (first, last) names are excluded, so every person, address,
  number and key is another one);
* ``file:PATH`` / ``hf:NAME``: the user's public text; documents identical to a private
  training document are dropped (counted in the report).

Extraction later counts a sample as memorized *private* text only where its span is in
the private training text and not in this corpus (``extraction.verify``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from canaryaudit.config import DataParams, Params
from canaryaudit.corpus.emails import Person, generate_emails
from canaryaudit.corpus.sources import Document, load_corpus
from canaryaudit.errors import ParamsError


@dataclass(frozen=True)
class PublicCorpus:
    documents: list[Document]
    description: str
    excluded_names: int  # builtin: private people's names no public person may have
    dropped_duplicates: int  # documents identical to a private training document


def private_names(data: DataParams) -> frozenset[tuple[str, str]]:
    """(first, last) of every person the builtin generator writes for ``data`` (the private corpus)."""
    people: list[Person] = []
    b = data.builtin
    for _ in generate_emails(data.seed, b.target_bytes, (b.emails_per_person_min, b.emails_per_person_max),
                             b.reply_probability, people=people):
        pass
    return frozenset((p.first, p.last) for p in people)


def _builtin_public(params: Params) -> PublicCorpus:
    names = private_names(params.data) if params.data.source == "builtin:emails" else frozenset()
    b, pre = params.data.builtin, params.pretrain
    generated = generate_emails(pre.seed, pre.target_bytes, (b.emails_per_person_min, b.emails_per_person_max),
                                b.reply_probability, exclude_names=names)
    docs = [Document(f"public-{d.doc_id}", d.text, f"public-{d.author}") for d in generated]
    description = (f"builtin synthetic emails (seed {pre.seed}), none of the private corpus's "
                   f"{len(names)} people" if names else f"builtin synthetic emails (seed {pre.seed})")
    return PublicCorpus(docs, description, len(names), 0)


def _user_public(params: Params, base_dir: Path) -> PublicCorpus:
    data = params.data.model_copy(update={"source": params.pretrain.source, "max_documents": None})
    try:
        corpus = load_corpus(data, base_dir)
    except ParamsError as exc:  # its messages name data.source: this is pretrain.source
        raise ParamsError(str(exc).replace("data.source", "pretrain.source")) from None
    return PublicCorpus(corpus.documents, f"public corpus {params.pretrain.source}: {corpus.description}", 0, 0)


def drop_private_copies(corpus: PublicCorpus, private_texts: Sequence[str]) -> PublicCorpus:
    """Without the documents whose text (stripped) equals a private training document's."""
    private = {t.strip() for t in private_texts}
    kept = [d for d in corpus.documents if d.text.strip() not in private]
    return PublicCorpus(kept, corpus.description, corpus.excluded_names,
                        corpus.dropped_duplicates + len(corpus.documents) - len(kept))


def load_public_corpus(params: Params, private_texts: Sequence[str], base_dir: Path) -> PublicCorpus:
    """The public corpus of ``pretrain.source`` (not ``none``), capped at pretrain.max_documents."""
    source = params.pretrain.source
    corpus = _builtin_public(params) if source == "builtin:emails" else _user_public(params, base_dir)
    corpus = drop_private_copies(corpus, private_texts)
    cap = params.pretrain.max_documents
    if cap is not None:
        corpus = PublicCorpus(corpus.documents[:cap], corpus.description, corpus.excluded_names,
                              corpus.dropped_duplicates)
    if len(corpus.documents) < 2:
        raise ParamsError(f"pretrain.source: {source} gives {len(corpus.documents)} usable public document(s) "
                          "after dropping copies of private ones; need at least 2 (or set pretrain.source: none)")
    return corpus
