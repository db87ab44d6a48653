import json
import os

import pytest

from llamaops.platform.data.documents import DataError
from llamaops.platform.data.readers import read_chatterbot_corpus, read_cpython_stdlib, read_folder, read_fortunes


def test_folder_reader_takes_txt_md_jsonl_lines_and_parquet_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("plain text")
    (tmp_path / "sub" / "b.md").write_text("# markdown")
    (tmp_path / "ignored.csv").write_text("x,y")
    records = [{"text": "first", "language": "de"}, {"text": "second", "url": "https://a.example/2", "id": "two"}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    pq.write_table(pa.table({"text": ["row zero", "row one"], "url": ["https://p.example", None]}), tmp_path / "d.parquet")
    docs, skipped = read_folder(tmp_path, "file://x")
    assert [(d.id, d.text, d.language, d.url) for d in docs] == [
        ("a.txt", "plain text", None, None),
        ("c.jsonl:1", "first", "de", None),
        ("two", "second", None, "https://a.example/2"),
        ("d.parquet:0", "row zero", None, "https://p.example"),
        ("d.parquet:1", "row one", None, None),
        ("sub/b.md", "# markdown", None, None),
    ]
    assert {d.source for d in docs} == {"file://x"} and skipped == []


def test_bad_input_is_skipped_with_a_reason_never_raised(tmp_path):
    (tmp_path / "good.txt").write_text("fine")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    as_root = os.geteuid() == 0  # root reads a file whatever its mode
    if not as_root:
        (tmp_path / "locked.txt").write_text("secret")
        (tmp_path / "locked.txt").chmod(0)
    lines = ['{"text": "ok"}', '{"content": "no text field"}', "not json", '["a list"]']
    (tmp_path / "bad.jsonl").write_bytes("\n".join(lines).encode() + b'\n{"text": "\xff"}\n')
    docs, skipped = read_folder(tmp_path, "file://x")
    assert [d.text for d in docs] == ["ok", "fine"]
    reasons = {doc.id: reason for doc, reason in skipped}
    expected = {
        "bad.jsonl:2": "no_text_field",
        "bad.jsonl:3": "bad_json",
        "bad.jsonl:4": "no_text_field",
        "bad.jsonl:5": "bad_encoding",
        "broken.parquet": "unreadable_file",
        "latin1.txt": "bad_encoding",
    }
    if not as_root:
        expected["locked.txt"] = "unreadable_file"
    assert reasons == expected


def test_fortune_files_become_one_document_each_with_language(tmp_path):
    (tmp_path / "de").mkdir()
    (tmp_path / "off").mkdir()
    (tmp_path / "wisdom").write_text("First saying.\n%\nSecond saying.\n%\n")
    (tmp_path / "wisdom.dat").write_bytes(b"\x00\x01")
    (tmp_path / "de" / "weisheit").write_text("Ein Spruch.\n%\n")
    (tmp_path / "off" / "rude").write_text("skipped\n%\n")
    docs = read_fortunes(root=tmp_path)
    assert [(d.id, d.text, d.language) for d in docs] == [
        ("de/weisheit", "Ein Spruch.", "de"),
        ("wisdom", "First saying.\n\nSecond saying.", "en"),
    ]


def test_fortunes_without_the_debian_package_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="apt install fortunes"):
        read_fortunes(root=tmp_path / "missing")


def test_chatterbot_conversations_are_flattened_per_file_with_languages():
    docs = read_chatterbot_corpus()
    languages = {d.language for d in docs}
    assert {"en", "de", "fr", "hi", "th"} <= languages and None not in languages
    english_ai = next(d for d in docs if d.id == "english/ai.yml")
    assert "What is AI?\nArtificial Intelligence is" in english_ai.text
    assert "\n\n" in english_ai.text  # conversations are separated


def test_stdlib_reader_skips_tests_and_site_packages():
    docs = read_cpython_stdlib()
    ids = {d.id for d in docs}
    assert "json/encoder.py" in ids and len(docs) > 300
    assert not any(part in {"test", "tests", "site-packages"} for i in ids for part in i.split("/")[:-1])
    assert {d.language for d in docs} == {"python"}


def test_stdlib_reader_skips_links_a_distribution_adds(tmp_path, monkeypatch):
    """Debian's stdlib links sitecustomize.py into /etc: a dangling link in an image built from it."""
    from llamaops.platform.data import readers

    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "encoder.py").write_text("x = 1\n")
    (tmp_path / "sitecustomize.py").symlink_to(tmp_path / "etc" / "sitecustomize.py")
    monkeypatch.setattr(readers, "stdlib_dir", lambda: tmp_path)
    assert [d.id for d in read_cpython_stdlib()] == ["json/encoder.py"]
