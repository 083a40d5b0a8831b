"""Mask PII in sample texts before they reach the report, and cut a text into display segments.

The extract stage already masks PII in the texts it writes; the report masks
again from the same ``pii`` spans so that a report never shows a raw value even
if an upstream file was not masked. Masking preserves length (every character
but the last 2 of a span becomes ``*``), so character offsets such as the
memorized span stay valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MASK_CHAR = "*"
KEEP_LAST = 2  # characters left visible at the end of each PII value


def mask_value(value: str, keep_last: int = KEEP_LAST) -> str:
    """``'jane@example.com'`` -> ``'**************om'`` (same length)."""
    keep = min(keep_last, len(value))
    return MASK_CHAR * (len(value) - keep) + value[len(value) - keep :]


def _clip(start: Any, end: Any, length: int) -> tuple[int, int] | None:
    """A [start, end) span clipped to the text, or None when malformed or empty."""
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        return None
    lo, hi = max(0, start), min(length, end)
    return (lo, hi) if lo < hi else None


def mask_spans(text: str, spans: Iterable[Mapping[str, Any]]) -> str:
    """``text`` with every ``{"start": s, "end": e}`` span masked but for its last 2 characters."""
    chars = list(text)
    for span in spans:
        clipped = _clip(span.get("start"), span.get("end"), len(text))
        if clipped is None:
            continue
        lo, hi = clipped
        chars[lo:hi] = mask_value("".join(chars[lo:hi]))
    return "".join(chars)


@dataclass(frozen=True)
class Segment:
    """A piece of a sample text; ``memorized`` pieces are highlighted, ``pii`` pieces styled as masked."""

    text: str
    memorized: bool
    pii: bool


def segments(text: str, memorized_span: Sequence[Any] | None, pii_spans: Iterable[Mapping[str, Any]]) -> list[Segment]:
    """Cut ``text`` where the memorized span or a PII span starts or ends (texts stay plain strings)."""
    n = len(text)
    mem = _clip(*memorized_span, n) if memorized_span and len(memorized_span) == 2 else None
    pii = [c for c in (_clip(s.get("start"), s.get("end"), n) for s in pii_spans) if c is not None]
    cuts = sorted({0, n, *(mem or ()), *(p for span in pii for p in span)})
    out = []
    for lo, hi in zip(cuts, cuts[1:]):
        in_mem = mem is not None and mem[0] <= lo and hi <= mem[1]
        in_pii = any(a <= lo and hi <= b for a, b in pii)
        if out and out[-1].memorized == in_mem and out[-1].pii == in_pii:
            out[-1] = Segment(out[-1].text + text[lo:hi], in_mem, in_pii)
        else:
            out.append(Segment(text[lo:hi], in_mem, in_pii))
    return out
