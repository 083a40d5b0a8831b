"""Atomic writes and strict JSONL reading: errors name file and line."""

import pytest

from canaryaudit.errors import DataError
from canaryaudit.io import atomic_open, read_json, read_jsonl, write_json, write_jsonl


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.jsonl"
    write_jsonl(target, [{"a": 1}])
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write('{"a": 2}\n{"half')
            raise RuntimeError("interrupted mid-write")
    assert target.read_text() == '{"a":1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"], "no temp file left behind"


def test_keyboard_interrupt_leaves_nothing(tmp_path):
    target = tmp_path / "new.json"
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target) as handle:
            handle.write("{")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_jsonl_roundtrip_is_deterministic_utf8(tmp_path):
    records = [{"doc_id": "é", "text": "naïve ☃"}, {"doc_id": "b", "text": "x"}]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(a, records)
    write_jsonl(b, records)
    assert a.read_bytes() == b.read_bytes()
    assert "☃".encode() in a.read_bytes()
    assert read_jsonl(a) == records


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (b'{"text": "ok"}\n{"text": "caf\xe9"}\n', 2, "not valid UTF-8"),
        (b'{"text": "ok"}\n\n{"text": broken}\n', 3, "invalid JSON"),
        (b'{"text": "ok"}\n["a list"]\n', 2, "expected a JSON object"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, content, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_jsonl(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_empty_file_is_an_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match="empty"):
        read_jsonl(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_json_sorted_and_strict(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"b": 1, "a": [1, 2]})
    assert path.read_text().startswith('{\n  "a"')
    assert read_json(path) == {"a": [1, 2], "b": 1}
    with pytest.raises(ValueError):
        write_json(path, {"x": float("nan")})
    assert read_json(path) == {"a": [1, 2], "b": 1}, "failed write kept the old file"


def test_line_separators_inside_strings_roundtrip(tmp_path):
    # U+2028/U+2029/U+0085 are written raw by ensure_ascii=False; they must not split records
    records = [{"text": "hello\u2028world\u2029and\x85more"}, {"text": "crlf\r\nkept"}]
    path = tmp_path / "sep.jsonl"
    write_jsonl(path, records)
    assert read_jsonl(path) == records


def test_windows_line_endings_are_read(tmp_path):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'{"a": 1}\r\n{"a": 2}\r\n')
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]


def test_outputs_are_not_private_to_the_owner(tmp_path):
    import os

    target = tmp_path / "mode.json"
    write_json(target, {})
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
