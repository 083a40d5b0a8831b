"""A deterministic synthetic email corpus with planted, recorded PII.

Each invented person has a name, personal and work addresses, a phone, an SSN,
a payment card, a street address, an IP, an IBAN and an API key. A person
writes a handful of emails on topics (payments, payroll, IT tickets, ...) that
reuse their details, and their signature repeats their phone on every message,
so the corpus holds rare, repeated secrets as the Enron study found. Replies
quote the message they answer. The generator records where it put every PII
item (type and character span): the ground truth for the sanitizer's
precision and recall.

PII is written in the many forms people use, so the detectors are measured on
more than one spelling per type: NANP phones with or without +1 / 1, toll-free,
bare ten digits next to a phone word, international +CC groups; SSNs with
dashes, spaces or (after "SSN") none; cards grouped or contiguous, sometimes
next to a quantity or CVV; IBANs of many countries, compact or grouped, upper
or lower case, followed by a BIC; addresses with directionals, ordinals,
Mc/O' names, unit letters and PO boxes; emails with apostrophes and
subdomains; AWS-style secrets with '/' and '+'.

Look-alikes that are *not* PII are planted on purpose (16-digit order numbers
failing Luhn, SSN-shaped references with an invalid area, nine-digit tracking
and claim numbers and NANP-valid ten-digit confirmation numbers with no
SSN / phone word before them, firmware versions with four dotted parts and
four-part version strings that are valid IPv4 after "version", commit hashes,
UUIDs, camelCase identifiers, "::" in prose) so precision is measured, not
assumed.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field

from canaryaudit.corpus import vocab
from canaryaudit.pii import validators
from canaryaudit.pii.spans import PiiSpan


@dataclass(frozen=True)
class Person:
    person_id: str
    first: str
    last: str
    work_email: str
    personal_email: str
    company: str
    title: str
    phone: str
    ssn: str
    card: str
    address: str
    ipv4: str
    ipv6: str
    iban: str
    api_key: str

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


@dataclass(frozen=True)
class GeneratedDocument:
    doc_id: str
    text: str
    author: str
    pii: tuple[PiiSpan, ...]


@dataclass
class TextBuilder:
    """Appends text while recording the span of every PII value it is given."""

    parts: list[str] = field(default_factory=list)
    spans: list[PiiSpan] = field(default_factory=list)
    length: int = 0

    def text(self, value: str) -> None:
        self.parts.append(value)
        self.length += len(value)

    def pii(self, pii_type: str, value: str) -> None:
        self.spans.append(PiiSpan(pii_type, self.length, self.length + len(value)))
        self.text(value)

    def fill(self, template: str, fields: dict[str, str | tuple[str, str]]) -> None:
        """Render ``template``: a field whose value is ``(type, value)`` is recorded as PII."""
        for literal, name, _spec, _conv in string.Formatter().parse(template):
            if literal:
                self.text(literal)
            if name is None:
                continue
            value = fields[name]
            if isinstance(value, tuple):
                self.pii(value[0], value[1])
            else:
                self.text(value)

    def build(self) -> tuple[str, tuple[PiiSpan, ...]]:
        return "".join(self.parts), tuple(self.spans)


# ---------------------------------------------------------------- identifiers


def _nanp_digits(rng: random.Random, area: str | None = None) -> str:
    while True:
        digits = f"{area or rng.randint(200, 989)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
        if validators.nanp_valid(digits):
            return digits


def _international_phone(rng: random.Random) -> str:
    code, groups = rng.choice(vocab.INTERNATIONAL_PHONES)
    national = str(rng.randint(1, 9)) + "".join(rng.choice(string.digits) for _ in range(sum(groups) - 1))
    parts, i = [], 0
    for size in groups:
        parts.append(national[i : i + size])
        i += size
    style = rng.randrange(6)
    if style == 0:
        return f"+{code}{national}"  # compact E.164
    if style == 1 and code == "44":
        return f"+44 (0){' '.join(parts)}"  # UK trunk prefix in brackets
    sep = "-" if style == 2 else " "
    return f"+{code}{sep}{sep.join(parts)}"


def _phone(rng: random.Random) -> str:
    style = rng.randrange(12)
    if style == 9:
        return _international_phone(rng)
    toll_free = style in (7, 8)
    digits = _nanp_digits(rng, rng.choice(vocab.TOLL_FREE_AREAS) if toll_free else None)
    a, b, c = digits[:3], digits[3:6], digits[6:]
    if style == 7:
        return f"1-{a}-{b}-{c}"
    if style == 8:
        return f"1 ({a}) {b}-{c}"
    if style == 10:
        return digits  # bare ten digits: the detector needs a phone word nearby
    if style == 11:
        return f"+1{digits}"
    return [f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}", f"+1-{a}-{b}-{c}", f"({a}){b}-{c}", f"{a} {b} {c}"][style]


def _ssn(rng: random.Random) -> str:
    while True:
        area, group, serial = rng.randint(1, 899), rng.randint(1, 99), rng.randint(1, 9999)
        if area != 666:
            break
    # dashes mostly; spaces; or bare nine digits (every SSN line names the SSN before it)
    sep = rng.choice(["-", "-", "-", "-", "-", " ", ""])
    return f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"


def _card(rng: random.Random) -> str:
    brand = rng.choice(["visa", "visa", "mastercard", "amex", "discover"])
    length = 19 if brand == "visa" and rng.random() < 0.05 else 16
    if brand == "visa":
        partial = "4" + "".join(rng.choice(string.digits) for _ in range(length - 2))
    elif brand == "mastercard":
        partial = str(rng.randint(51, 55)) + "".join(rng.choice(string.digits) for _ in range(13))
    elif brand == "amex":
        partial = rng.choice(["34", "37"]) + "".join(rng.choice(string.digits) for _ in range(12))
    else:
        partial = "6011" + "".join(rng.choice(string.digits) for _ in range(11))
    number = partial + validators.luhn_check_digit(partial)
    if brand == "amex":
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number[i : i + 4] for i in range(0, len(number), 4)]  # 4-4-4-4 or 4-4-4-4-3
    sep = rng.choice([" ", "-", ""])
    return sep.join(groups)


def _unit(rng: random.Random) -> str:
    word = rng.choice(vocab.UNIT_WORDS)
    number = rng.choice([str(rng.randint(1, 1200)), f"{rng.randint(1, 40)}{rng.choice('ABCDEF')}", rng.choice("ABCDEF")])
    if word == "#":
        return f" #{number}" if number[0].isdigit() else f", Apt {number}"
    return f"{rng.choice([',', ''])} {word} {number}"


def _street_address(rng: random.Random, full: bool) -> str:
    if rng.random() < 0.08:
        street = f"{rng.choice(['PO Box', 'P.O. Box', 'P.O. Box'])} {rng.randint(1, 99999)}"
    else:
        number = str(rng.randint(1, 9899))
        if rng.random() < 0.05:
            number += rng.choice("ABCD")  # 221B
        name = f"{rng.choice(vocab.STREET_PREFIXES)}{rng.choice(vocab.STREET_NAMES)}"
        if rng.random() < 0.15:
            name += f" {rng.choice(vocab.STREET_NAMES)}"
        street = f"{number} {name} {rng.choice(vocab.STREET_SUFFIXES)}"
        if rng.random() < 0.12:
            street += f" {rng.choice(vocab.STREET_DIRECTIONS)}"
        if rng.random() < 0.25:
            street += _unit(rng)
    if not full:
        return street
    city, state, zip3 = rng.choice(vocab.CITIES)
    zip_code = f"{zip3}{rng.randint(0, 99):02d}"
    if rng.random() < 0.1:
        zip_code += f"-{rng.randint(1, 9999):04d}"
    return f"{street}, {city}, {state} {zip_code}"


def _ipv4(rng: random.Random) -> str:
    first = rng.choice([rng.randint(11, 126), rng.randint(128, 171), rng.randint(173, 191), rng.randint(193, 223)])
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(6)]
    style = rng.randrange(4)
    if style == 0:
        return "2001:db8::" + ":".join(groups[:3])  # compressed
    if style == 1:
        return "fe80::" + ":".join(groups[:4])  # link-local
    return "2001:db8:" + ":".join(groups)


def _bic(rng: random.Random, country: str) -> str:
    bank = "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
    return bank + country + rng.choice(["XX", "2L", "FF", "BB"]) + rng.choice(["", "XXX"])


# Countries whose BBAN starts with a four-letter bank code.
_IBAN_LETTER_BANKS = {"GB", "NL", "QA", "KW", "MT", "IE", "BH", "JO", "MU"}
_IBAN_COUNTRIES = ["DE", "GB", "FR", "NL", "ES", "IT", "CH", "BE", "AT", "PL", "IE", "PT", "NO", "SE",
                   "SA", "AE", "BR", "QA", "KW", "TR", "MT", "JO"]


def _iban(rng: random.Random) -> str:
    country = rng.choice(_IBAN_COUNTRIES)
    length = validators.IBAN_LENGTHS[country]
    rest = length - 4
    bban = ""
    if country in _IBAN_LETTER_BANKS:
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
    bban += "".join(rng.choice(string.digits) for _ in range(rest - len(bban)))
    compact = country + validators.iban_check_digits(country, bban) + bban
    style = rng.randrange(10)
    if style < 4:
        value = " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
    elif style == 4:
        value = "-".join(compact[i : i + 4] for i in range(0, len(compact), 4))
    else:
        value = compact
    return value.lower() if style in (3, 8, 9) else value


_KEY_ALPHABET = string.ascii_letters + string.digits


def _api_key(rng: random.Random) -> str:
    def run(n: int, alphabet: str = _KEY_ALPHABET) -> str:
        while True:
            token = "".join(rng.choice(alphabet) for _ in range(n))
            # every class present, so a generic key really is "high-entropy mixed" text
            if alphabet != _KEY_ALPHABET or (
                any(c.isupper() for c in token) and any(c.islower() for c in token) and any(c.isdigit() for c in token)
            ):
                return token

    style = rng.randrange(6)
    if style == 5:  # AWS secret access key: 40 base64 characters, with '/' or '+'
        while True:
            token = run(40, _KEY_ALPHABET + "/+")
            if ("/" in token or "+" in token) and any(c.isupper() for c in token) and any(
                c.islower() for c in token
            ) and any(c.isdigit() for c in token):
                return token
    if style == 0:
        return "sk_live_" + run(24)
    if style == 1:
        return "AKIA" + run(16, string.ascii_uppercase + string.digits)
    if style == 2:
        return "ghp_" + run(36)
    if style == 3:
        return "xoxb-" + "-".join(str(rng.randint(10**11, 10**12 - 1)) for _ in range(2)) + "-" + run(24)
    return run(32)


def _email_local(rng: random.Random, first: str, last: str) -> str:
    f, l = first.lower(), last.lower()  # O'Brien gives john.o'brien
    return rng.choice([f"{f}.{l}", f"{f[0]}{l}", f"{f}{l[0]}", f"{f}_{l}", f"{f}.{l}{rng.randint(1, 99)}"])


def make_person(rng: random.Random, index: int, exclude_names: Collection[tuple[str, str]] = ()) -> Person:
    """A new person; ``exclude_names``: (first, last) pairs never drawn (redrawn instead)."""
    first, last = rng.choice(vocab.FIRST_NAMES), rng.choice(vocab.LAST_NAMES)
    while (first, last) in exclude_names:  # only redraws when excluding: the default stream is unchanged
        first, last = rng.choice(vocab.FIRST_NAMES), rng.choice(vocab.LAST_NAMES)
    company, domain = rng.choice(vocab.COMPANIES)
    return Person(
        person_id=f"person-{index:05d}",
        first=first,
        last=last,
        work_email=f"{_email_local(rng, first, last)}@"
        + (f"{rng.choice(vocab.MAIL_SUBDOMAINS)}.{domain}" if rng.random() < 0.2 else domain),
        personal_email=f"{_email_local(rng, first, last)}{rng.randint(1, 999)}@{rng.choice(vocab.FREE_MAIL)}",
        company=company,
        title=rng.choice(vocab.TITLES),
        phone=_phone(rng),
        ssn=_ssn(rng),
        card=_card(rng),
        address=_street_address(rng, full=True),
        ipv4=_ipv4(rng),
        ipv6=_ipv6(rng),
        iban=_iban(rng),
        api_key=_api_key(rng),
    )


# ---------------------------------------------------------------- look-alikes (not PII)


def _order_number(rng: random.Random) -> str:
    """16 digits starting like a Visa card but failing Luhn: a card look-alike."""
    partial = "4" + "".join(rng.choice(string.digits) for _ in range(14))
    good = validators.luhn_check_digit(partial)
    bad = str((int(good) + rng.randint(1, 9)) % 10)
    return partial + bad


def _ssn_lookalike(rng: random.Random) -> str:
    return f"{rng.randint(900, 999)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"


def _firmware(rng: random.Random) -> str:
    return f"{rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}.{rng.randint(256, 9999)}"


def _version4(rng: random.Random) -> str:
    """Four dotted parts that also make a valid IPv4 address; written after 'version' / 'build'."""
    return f"{rng.randint(1, 12)}.{rng.randint(0, 20)}.{rng.randint(0, 40)}.{rng.randint(1, 250)}"


def _identifier(rng: random.Random) -> str:
    """A camelCase or PascalCase name: mixed case and digits, like a key, but made of words."""
    nouns = "".join(rng.sample(vocab.IDENT_NOUNS, rng.randint(2, 4)))
    if rng.random() < 0.5:
        return rng.choice(vocab.IDENT_VERBS) + nouns + rng.choice(vocab.IDENT_SUFFIXES)
    return rng.choice(vocab.IDENT_PREFIXES) + nouns + rng.choice(vocab.IDENT_SUFFIXES)


def _digits_lookalike(rng: random.Random, n: int, valid: Callable[[str], bool]) -> str:
    """``n`` digits that pass ``valid`` (a phone or SSN shape) but are a reference number."""
    while True:
        value = str(rng.randint(2 * 10 ** (n - 1), 10**n - 1))
        if valid(value):
            return value


def _commit(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(40))


def _uuid(rng: random.Random) -> str:
    h = "".join(rng.choice("0123456789abcdef") for _ in range(32))
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# ---------------------------------------------------------------- message bodies

# Topic bodies: fields in {} are filled per message; ("type", value) fields are PII.
_TOPIC_LINES: dict[str, list[str]] = {
    "meeting": [
        "Can you call me at {phone} when you are free {weekday}?",
        "Text me at {phone} once you land.",
        "My cell is {phone} if the conference bridge acts up again.",
        "Let's meet at {time} on {weekday} to go over the {project}.",
        "If I'm not at my desk, try {phone} and leave a message.",
    ],
    "payment": [
        "Please charge the {product} to my card {card}, expiry {exp}.",
        "The card on file is {card}; the billing address is {address}.",
        "Your order number is {order} and it should ship {weekday}.",
        "I was charged twice for order {order}, can you check?",
        "Card {card} cvv {cvv}, exp {exp}.",
        "Order form: {product} qty {qty} {card} exp {exp}.",
        "Card number {card} {cvv} (the last three are the security code).",
    ],
    "hr": [
        "For the payroll form, my SSN is {ssn}.",
        "Here is the info for the benefits enrollment: SSN {ssn}, home address {address}.",
        "The employee reference on the letter is {ssn_like}, not my SSN.",
        "Social security number: {ssn}.",
        "The claim number is {claim9}, not my SSN.",
        "Please update my mailing address to {address} before the next pay period.",
        "You can reach me at {personal_email} while I'm on leave.",
    ],
    "it": [
        "The {project} server at {ipv4} stopped responding around {time}.",
        "My laptop shows the address {ipv4} on the VPN, and {ipv6} on the office network.",
        "Here is the API key for the staging service: {api_key}",
        "Rotate the key {api_key} once the {project} cutover is done.",
        "The controller is still on firmware {firmware}; the fix landed in commit {commit}.",
        "Ticket {uuid} is tracking the outage.",
        "We upgraded the agent to version {version4} last night.",
        "QA signed off on build {version4}.",
        "The stack trace points at {identifier} again.",
        "Please rename {identifier} before the {project} release.",
        "The log separates fields with :: so grep for that.",
        "For the S3 export use secret {api_key} with the usual key id.",
    ],
    "shipping": [
        "Please ship the {product} to {address}.",
        "My new address is {address}, effective {weekday}.",
        "The courier will call {phone} before delivery.",
        "Your tracking number is {track9}.",
    ],
    "wire": [
        "Please wire the refund to IBAN {iban}.",
        "Our bank details for the {project} invoice: IBAN {iban}, reference INV-{year}-{inv}.",
        "The transfer to {iban} should clear by {weekday}.",
        "Bank details: IBAN {iban} BIC {bic}.",
        "The wire confirmation number is {conf10}.",
    ],
}

_TOPICS = ["chatter", "chatter", "meeting", "payment", "hr", "it", "shipping", "wire"]


def _common_fields(rng: random.Random, author: Person, other: Person) -> dict[str, str | tuple[str, str]]:
    return {
        "project": rng.choice(vocab.PROJECTS),
        "product": rng.choice(vocab.PRODUCTS),
        "dept": rng.choice(vocab.DEPARTMENTS),
        "weekday": rng.choice(vocab.WEEKDAYS),
        "time": rng.choice(vocab.TIMES),
        "pct": str(rng.randint(2, 40)),
        "room": f"{rng.randint(1, 40)}{rng.choice('ABC')}{rng.randint(10, 99)}",
        "year": str(rng.randint(1999, 2003)),
        "inv": f"{rng.randint(1, 99999):05d}",
        "exp": f"{rng.randint(1, 12):02d}/{rng.randint(24, 31)}",
        "other": ("person_name", other.first),
        "phone": ("phone", author.phone),
        "card": ("credit_card", author.card),
        "address": ("street_address", author.address),
        "ssn": ("ssn", author.ssn),
        "personal_email": ("email", author.personal_email),
        "ipv4": ("ipv4", author.ipv4),
        "ipv6": ("ipv6", author.ipv6),
        "api_key": ("api_key", author.api_key),
        "iban": ("iban", author.iban),
        "order": _order_number(rng),
        "ssn_like": _ssn_lookalike(rng),
        "firmware": _firmware(rng),
        "commit": _commit(rng),
        "uuid": _uuid(rng),
        "cvv": f"{rng.randint(100, 999)}",
        "qty": str(rng.randint(1, 12)),
        "bic": _bic(rng, author.iban[:2].upper()),
        "version4": _version4(rng),
        "identifier": _identifier(rng),
        "claim9": _digits_lookalike(rng, 9, validators.ssn_valid),
        "track9": _digits_lookalike(rng, 9, validators.ssn_valid),
        "conf10": _digits_lookalike(rng, 10, validators.nanp_valid),
    }


def _date_header(rng: random.Random) -> str:
    day = rng.randint(1, 28)
    return (
        f"{rng.choice(['Mon', 'Tue', 'Wed', 'Thu', 'Fri'])}, {day} {rng.choice(vocab.MONTHS)} "
        f"{rng.randint(1999, 2003)} {rng.randint(7, 19):02d}:{rng.randint(0, 59):02d}:00 -0{rng.choice([5, 6, 7, 8])}00"
    )


def _write_headers(b: TextBuilder, rng: random.Random, author: Person, other: Person, subject: str) -> None:
    b.text("From: ")
    b.pii("person_name", author.name)
    b.text(" <")
    b.pii("email", author.work_email)
    b.text(">\nTo: ")
    b.pii("person_name", other.name)
    b.text(" <")
    b.pii("email", other.work_email)
    b.text(f">\nDate: {_date_header(rng)}\nSubject: {subject}\n\n")


def _write_signature(b: TextBuilder, rng: random.Random, author: Person) -> None:
    b.text(f"\n\n{rng.choice(vocab.SIGNOFFS)}\n")
    b.pii("person_name", author.first)
    b.text("\n\n--\n")
    b.pii("person_name", author.name)
    b.text(f"\n{author.title}, {author.company}\nPhone: ")
    b.pii("phone", author.phone)
    if rng.random() < 0.3:
        b.text("\n")
        b.pii("street_address", author.address)
    b.text("\n")


def write_email(
    rng: random.Random,
    author: Person,
    other: Person,
    quoted: tuple[str, tuple[PiiSpan, ...]] | None = None,
) -> tuple[str, tuple[PiiSpan, ...]]:
    """One email from ``author`` to ``other``; ``quoted`` (text and its PII spans) is appended as a reply quote."""
    topic = rng.choice(_TOPICS)
    fields = _common_fields(rng, author, other)
    plain = {k: v for k, v in fields.items() if isinstance(v, str)}
    subject = rng.choice(vocab.TOPIC_SUBJECTS[topic]).format(**plain)
    if quoted is not None and not subject.startswith("RE:"):
        subject = "RE: " + subject
    b = TextBuilder()
    _write_headers(b, rng, author, other, subject)
    b.fill(rng.choice(vocab.GREETINGS), {"first": ("person_name", other.first)})
    b.text("\n\n")
    lines = list(vocab.CHATTER) if topic == "chatter" else list(_TOPIC_LINES[topic])
    count = rng.randint(2, 5) if topic == "chatter" else rng.randint(2, 4)
    chosen = rng.sample(lines, min(count, len(lines)))
    if topic != "chatter" and rng.random() < 0.6:
        chosen.append(rng.choice(vocab.CHATTER))
    for i, line in enumerate(chosen):
        if i:
            b.text(" " if rng.random() < 0.6 else "\n\n")
        b.fill(line, fields)
    _write_signature(b, rng, author)
    if quoted is not None:
        b.text("\n-----Original Message-----\n")
        base = b.length
        quoted_text, quoted_spans = quoted
        b.text(quoted_text)
        b.spans.extend(PiiSpan(s.type, s.start + base, s.end + base) for s in quoted_spans)
    return b.build()


def quote_message(text: str, spans: tuple[PiiSpan, ...]) -> tuple[str, tuple[PiiSpan, ...]]:
    """Prefix every line of ``text`` with '> ' and shift its PII spans to match.

    Spans never cross a newline (PII values are single-line), so each span moves
    by 2 characters per line up to and including its own.
    """
    lines = text.split("\n")
    out_spans: list[PiiSpan] = []
    src = 0
    for number, line in enumerate(lines):
        shift = 2 * (number + 1)
        for span in spans:
            if src <= span.start and span.end <= src + len(line):
                out_spans.append(PiiSpan(span.type, span.start + shift, span.end + shift))
        src += len(line) + 1
    quoted = "".join(f"> {line}\n" for line in lines)
    return quoted, tuple(out_spans)


def generate_emails(
    seed: int,
    target_bytes: int,
    emails_per_person: tuple[int, int] = (3, 8),
    reply_probability: float = 0.3,
    exclude_names: Collection[tuple[str, str]] = (),
    people: list[Person] | None = None,
) -> Iterator[GeneratedDocument]:
    """Yield emails until their UTF-8 size reaches ``target_bytes``; same seed, same corpus.

    Each new person writes between ``emails_per_person`` messages (inclusive),
    to earlier people; with ``reply_probability`` a message quotes the last
    message its recipient wrote. ``exclude_names``: (first, last) pairs no person gets (a
    public corpus with none of a private corpus's people); ``people``: filled with every
    person generated.
    """
    rng = random.Random(seed)
    people = [] if people is None else people
    last_message: dict[str, tuple[str, tuple[PiiSpan, ...]]] = {}
    produced = 0
    index = 0
    while produced < target_bytes:
        author = make_person(rng, len(people), exclude_names)
        people.append(author)
        if len(people) < 2:
            continue
        for _ in range(rng.randint(*emails_per_person)):
            other = rng.choice(people[:-1])
            quoted = None
            previous = last_message.get(other.person_id)
            if previous is not None and rng.random() < reply_probability:
                quoted = quote_message(*previous)
            text, spans = write_email(rng, author, other, quoted)
            last_message[author.person_id] = (text, spans)
            index += 1
            produced += len(text.encode("utf-8"))
            yield GeneratedDocument(f"email-{index:06d}", text, author.person_id, spans)
            if produced >= target_bytes:
                return
