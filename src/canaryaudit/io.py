"""Atomic file output and strict JSONL/JSON input.

Every output goes to a temporary file in the destination folder and is renamed
over the target only when complete, so an interrupted stage never leaves a half
file that DVC would cache. Every read error names the file and the line.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from canaryaudit.errors import DataError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it onto ``path`` on success.

    On any exception (KeyboardInterrupt included) the temporary file is removed
    and ``path`` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes only ('w' or 'wb'), not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual umask-based mode
    try:
        if mode == "w":
            handle: IO[Any] = open(fd, "w", encoding="utf-8", newline="\n")
        else:
            handle = open(fd, "wb")
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary sibling folder of ``path``; on success it replaces ``path``.

    On any exception the temporary folder is removed and ``path`` is left as it was, so a
    stage that fails while writing a folder output (disk full) leaves no half folder.
    """
    import shutil

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def dumps_line(record: Mapping[str, Any]) -> str:
    """One JSONL line, deterministic: keys in insertion order, UTF-8 kept, no spaces."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> int:
    """Write records atomically as JSON Lines; return how many were written."""
    count = 0
    with atomic_open(path) as handle:
        for record in records:
            handle.write(dumps_line(record))
            count += 1
    return count


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write one JSON document atomically, pretty-printed with sorted keys (stable diffs)."""
    with atomic_open(path) as handle:
        json.dump(obj, handle, ensure_ascii=False, indent=2, sort_keys=True, allow_nan=False)
        handle.write("\n")


def write_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Write dict rows as CSV atomically (header from the first row's keys)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_open(path) as handle:
        handle.write(buffer.getvalue())


def read_text_strict(path: str | os.PathLike[str]) -> str:
    """Read a UTF-8 text file; undecodable bytes or an empty file raise DataError with the line."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DataError(p, "file not found") from None
    except IsADirectoryError:
        raise DataError(p, "is a folder, expected a file") from None
    if not raw.strip():
        raise DataError(p, "file is empty")
    return decode_utf8(raw, p)


def decode_utf8(raw: bytes, path: str | os.PathLike[str]) -> str:
    """Decode UTF-8 (a BOM is dropped); on failure name the line of the first bad byte."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            path,
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "re-encode the file as UTF-8",
            line=line,
        ) from None


#: A \uD800-\uDFFF escape: JSON allows it, but alone (not in a high+low pair) it is no character,
#: and pandas, pyarrow and every UTF-8 writer fail on it later with no file or line.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _loads(text: str, path: Path, line: int | None) -> Any:
    """json.loads; a syntax error, a too-deep nesting or a lone surrogate raises DataError at the line."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        where = line if line is not None else exc.lineno
        raise DataError(path, f"invalid JSON ({exc.msg} at column {exc.colno})", line=where) from None
    except RecursionError:
        raise DataError(path, "JSON nested too deeply to read", line=line) from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DataError(path, f"a string holds a lone surrogate escape (\\u{ord(exc.object[exc.start]):04x}), "
                                  "which is not valid Unicode text", line=line) from None
    return obj


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of a JSONL file.

    Raises DataError naming the file and line for bad encoding, bad JSON, a
    value that is not an object, or a file without any record.
    """
    p = Path(path)
    text = read_text_strict(p)
    seen = 0
    # split on "\n" only: str.splitlines also breaks at U+2028/U+2029/U+0085, which
    # json.dumps(ensure_ascii=False) leaves raw inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        obj = _loads(line, p, number)
        if not isinstance(obj, dict):
            raise DataError(p, f"expected a JSON object, got {type(obj).__name__}", line=number)
        seen += 1
        yield number, obj
    if seen == 0:
        raise DataError(p, "no records (file holds only blank lines)")


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a JSONL file (see :func:`iter_jsonl` for the errors)."""
    return [obj for _, obj in iter_jsonl(path)]


def read_jsonl_with_lines(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], list[int]]:
    """Records and the file line of each (blank lines are skipped, so they can differ from positions)."""
    pairs = list(iter_jsonl(path))
    return [obj for _, obj in pairs], [number for number, _ in pairs]


def read_json(path: str | os.PathLike[str]) -> Any:
    """One JSON document; errors name the file and line."""
    p = Path(path)
    text = read_text_strict(p)
    return _loads(text, p, None)
