"""prepare's sources on files the tests write: each kind, and each error names file and line."""

import json

import pytest

from canaryaudit.config import parse_params
from canaryaudit.corpus.sources import Document, load_corpus, split_documents
from canaryaudit.errors import CanaryAuditError, DataError, ParamsError


def data_params(source: str, **extra):
    return parse_params({"data": {"source": source, "min_chars": 1, **extra}}).data


def texts(corpus):
    return [d.text for d in corpus.documents]


def test_txt_blocks(tmp_path):
    (tmp_path / "mail.txt").write_text("first doc\nline two\n\n\nsecond doc\n  \nthird doc\n")
    corpus = load_corpus(data_params("file:mail.txt"), tmp_path)
    assert texts(corpus) == ["first doc\nline two", "second doc", "third doc"]
    assert [d.doc_id for d in corpus.documents] == ["mail:1", "mail:5", "mail:7"]
    assert corpus.truth is None


def test_txt_folder_one_document_per_file(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.txt", "a.txt", "sub/c.txt"):
        (folder / name).write_text(f"text of {name}\n\nstill {name}")
    (folder / "notes.md").write_text("ignored: not a supported type")
    corpus = load_corpus(data_params("file:docs", file={"txt_unit": "file"}), tmp_path)
    assert [d.doc_id for d in corpus.documents] == ["a", "b", "sub/c"]
    assert corpus.documents[0].text == "text of a.txt\n\nstill a.txt"


def test_jsonl_with_fields(tmp_path):
    rows = [{"body": f"message {i}", "id": f"m{i}", "who": "ann"} for i in range(3)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    params = data_params("file:d.jsonl", file={"text_field": "body", "id_field": "id", "author_field": "who"})
    corpus = load_corpus(params, tmp_path)
    assert corpus.documents[1] == Document("m1", "message 1", "ann")


def test_csv(tmp_path):
    (tmp_path / "d.csv").write_text('id,text\n1,"hello, world"\n2,"multi\nline"\n3,third\n')
    corpus = load_corpus(data_params("file:d.csv", file={"id_field": "id"}), tmp_path)
    assert texts(corpus) == ["hello, world", "multi\nline", "third"]
    assert [d.doc_id for d in corpus.documents] == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("name", "content", "line", "message"),
    [
        ("bad.txt", b"ok text\n\nmore ok\ncaf\xe9 au lait\n", 4, "not valid UTF-8"),
        ("bad.jsonl", b'{"text": "a"}\n{"text": "b"\n', 2, "invalid JSON"),
        ("bad.jsonl", b'{"text": "a"}\n{"body": "b"}\n', 2, "missing field 'text'"),
        ("bad.jsonl", b'{"text": "a"}\n{"text": 5}\n', 2, "field 'text' must be a string"),
        ("bad.csv", b"id,body\n1,x\n", 1, "no column 'text'"),
        ("bad.csv", b"id,text\n1,x\n2,y,z\n", 3, "row has 3 fields, header has 2"),
        ("bad.csv", b'id,text\n1,"x\n', 2, "malformed CSV"),
        ("bad.csv", b"id,text\n1,\xff\xfe\n", 2, "not valid UTF-8"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, name, content, line, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        load_corpus(data_params(f"file:{name}"), tmp_path)
    assert info.value.line == line and info.value.path.endswith(name)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"id,text\n"])
def test_empty_inputs(tmp_path, content):
    (tmp_path / "e.csv").write_bytes(content)
    with pytest.raises(DataError, match="e.csv"):
        load_corpus(data_params("file:e.csv"), tmp_path)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_corpus(data_params("file:nowhere"), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no .txt"):
        load_corpus(data_params("file:empty"), tmp_path)


def test_duplicate_ids_and_too_few_documents(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text":"a","id":"x"}\n{"text":"b","id":"x"}\n{"text":"c","id":"y"}\n')
    with pytest.raises(DataError, match="two documents share one id"):
        load_corpus(data_params("file:d.jsonl", file={"id_field": "id"}), tmp_path)
    (tmp_path / "two.txt").write_text("a\n\nb\n")
    with pytest.raises(DataError, match="need at least 3"):
        load_corpus(data_params("file:two.txt"), tmp_path)


def test_min_chars_and_max_documents(tmp_path):
    (tmp_path / "d.txt").write_text("tiny\n\n" + "\n\n".join(f"long enough document {i}" for i in range(6)))
    corpus = load_corpus(data_params("file:d.txt", min_chars=10, max_documents=4), tmp_path)
    assert texts(corpus) == [f"long enough document {i}" for i in range(4)]


def test_builtin_has_truth_for_every_document():
    corpus = load_corpus(data_params("builtin:emails", builtin={"target_bytes": 15_000}), None)
    assert corpus.truth is not None and set(corpus.truth) == {d.doc_id for d in corpus.documents}


def test_hf_local_saved_dataset(tmp_path):
    import datasets

    ds = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"content": [f"row {i}" for i in range(5)]}),
        "test": datasets.Dataset.from_dict({"content": ["held"] * 3}),
    })
    ds.save_to_disk(str(tmp_path / "saved"))
    corpus = load_corpus(data_params(f"hf:{tmp_path / 'saved'}", hf={"text_field": "content"}), tmp_path)
    assert texts(corpus) == [f"row {i}" for i in range(5)]
    with pytest.raises(ParamsError, match="data.hf.text_field: column 'text' not in"):
        load_corpus(data_params(f"hf:{tmp_path / 'saved'}"), tmp_path)
    with pytest.raises(ParamsError, match="data.hf.split"):
        load_corpus(data_params(f"hf:{tmp_path / 'saved'}", hf={"split": "dev", "text_field": "content"}), tmp_path)


def test_hf_local_data_files_folder(tmp_path):
    folder = tmp_path / "jsondata"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(json.dumps({"text": f"line {i}"}) for i in range(4)))
    corpus = load_corpus(data_params(f"hf:{folder}"), tmp_path)
    assert texts(corpus) == [f"line {i}" for i in range(4)]


def test_hf_hub_name_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(CanaryAuditError, match="HF_HUB_OFFLINE=0"):
        load_corpus(data_params("hf:someorg/some-dataset-that-is-not-cached"), tmp_path)


def test_split_is_seeded_disjoint_and_complete():
    docs = [Document(f"d{i}", f"text {i}") for i in range(50)]
    a = split_documents(docs, 0.1, 0.2, seed=1)
    b = split_documents(docs, 0.1, 0.2, seed=1)
    c = split_documents(docs, 0.1, 0.2, seed=2)
    assert a == b and a != c
    assert [len(a[s]) for s in ("train", "valid", "test")] == [35, 5, 10]
    ids = [d.doc_id for split in a.values() for d in split]
    assert sorted(ids) == sorted(d.doc_id for d in docs)
    assert a["train"] == sorted(a["train"], key=lambda d: int(d.doc_id[1:])), "source order kept"


def test_truncated_csv_row_is_an_error(tmp_path):
    (tmp_path / "t.csv").write_text("id,text\n1,hello\n2\n")
    with pytest.raises(DataError, match="row has 1 fields, header has 2") as info:
        load_corpus(data_params("file:t.csv"), tmp_path)
    assert info.value.line == 3


def test_same_file_names_in_subfolders_get_distinct_ids(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / "src" / sub).mkdir(parents=True)
        (tmp_path / "src" / sub / "part.jsonl").write_text('{"text": "one"}\n{"text": "two"}\n')
    corpus = load_corpus(data_params("file:src"), tmp_path)
    assert [d.doc_id for d in corpus.documents] == ["a/part:1", "a/part:2", "b/part:1", "b/part:2"]


def test_line_endings_normalised(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "a\\r\\nb"}\n{"text": "c\\rd"}\n{"text": "e"}\n')
    assert texts(load_corpus(data_params("file:d.jsonl"), tmp_path)) == ["a\nb", "c\nd", "e"]


def test_duplicate_id_error_does_not_echo_the_id(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text":"a","id":"jane@x.org"}\n{"text":"b","id":"jane@x.org"}\n{"text":"c","id":"y"}\n')
    with pytest.raises(DataError) as info:
        load_corpus(data_params("file:d.jsonl", file={"id_field": "id"}), tmp_path)
    assert "jane@x.org" not in str(info.value)


def test_txt_one_document_per_line(tmp_path):
    (tmp_path / "lines.txt").write_text("first document here\nsecond one\n\nthird after a blank\n")
    corpus = load_corpus(data_params("file:lines.txt", file={"txt_unit": "line"}), tmp_path)
    assert [(d.doc_id, d.text) for d in corpus.documents] == [
        ("lines:1", "first document here"), ("lines:2", "second one"), ("lines:4", "third after a blank")]


def test_too_few_blocks_hints_at_txt_unit_line(tmp_path):
    (tmp_path / "lines.txt").write_text("one document a line\nanother document\na third one\n")
    with pytest.raises(DataError, match="only 1 usable document.*set data.file.txt_unit: line"):
        load_corpus(data_params("file:lines.txt"), tmp_path)


def test_cr_only_line_ends_separate_blocks_and_lines(tmp_path):
    (tmp_path / "mac.txt").write_bytes(b"first block\rstill first\r\rsecond block\r\rthird block\r")
    blocks = load_corpus(data_params("file:mac.txt"), tmp_path)
    assert texts(blocks) == ["first block\nstill first", "second block", "third block"]
    lines = load_corpus(data_params("file:mac.txt", file={"txt_unit": "line"}), tmp_path)
    assert texts(lines) == ["first block", "still first", "second block", "third block"]


def test_files_of_other_types_in_a_folder_are_logged_and_listed(tmp_path, caplog):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha one\n\nalpha two\n\nalpha three\n")
    (folder / "notes.md").write_text("# not read\n")
    (folder / "data.json").write_text("{}\n")
    with caplog.at_level("WARNING", logger="canaryaudit.corpus.sources"):
        corpus = load_corpus(data_params("file:corpus"), tmp_path)
    assert corpus.skipped_files == ("data.json", "notes.md")
    assert [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()] == [
        f"data.source: skipped {folder / 'data.json'}: not .txt, .jsonl, .csv",
        f"data.source: skipped {folder / 'notes.md'}: not .txt, .jsonl, .csv"]
