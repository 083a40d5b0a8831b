"""PII types and character spans, shared by the corpus generator and the detectors."""

from __future__ import annotations

from typing import NamedTuple

#: Every PII type the builtin corpus plants and (except person_name) a detector finds.
PII_TYPES: tuple[str, ...] = (
    "person_name",
    "email",
    "phone",
    "ssn",
    "credit_card",
    "street_address",
    "ipv4",
    "ipv6",
    "iban",
    "api_key",
)


class PiiSpan(NamedTuple):
    """A PII item at text[start:end] (character offsets, end exclusive)."""

    type: str
    start: int
    end: int

    def overlaps(self, other: PiiSpan) -> bool:
        return self.start < other.end and other.start < self.end
