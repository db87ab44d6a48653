from contextlib import contextmanager

import pytest

from llamaops.platform import store
from llamaops.platform.data import sources
from llamaops.platform.data.documents import DataError
from llamaops.platform.data.sources import check_sources, read_source


def test_unknown_source_lists_the_known_ones():
    expected = "unknown data source 'wikipedia'; use one of chatterbot-corpus, cpython-stdlib, fortunes"
    with pytest.raises(DataError, match=expected):
        check_sources(["cpython-stdlib", "wikipedia"])


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        check_sources([(tmp_path / "nope").as_uri()])


def test_incomplete_s3_artifact_is_refused(monkeypatch):
    monkeypatch.setattr(store, "is_complete", lambda uri: False)
    with pytest.raises(DataError, match="not a complete artifact"):
        check_sources(["s3://bucket/corpus"])


def test_known_sources_pass(tmp_path):
    check_sources(["cpython-stdlib", "chatterbot-corpus", tmp_path.as_uri()])


def test_unavailable_corpus_fails_the_check(monkeypatch, tmp_path):
    def missing():
        raise DataError("not here")

    monkeypatch.setitem(sources.CORPORA, "fortunes", (sources.CORPORA["fortunes"][0], missing))
    with pytest.raises(DataError, match="not here"):
        check_sources(["fortunes"])


def test_s3_source_reads_the_fetched_artifact(monkeypatch, tmp_path):
    (tmp_path / "notes.txt").write_text("from object storage")
    fetched_uris = []

    @contextmanager
    def fake_fetched(uri):
        fetched_uris.append(uri)
        yield tmp_path

    monkeypatch.setattr(store, "is_complete", lambda uri: True)
    monkeypatch.setattr(store, "fetched", fake_fetched)
    check_sources(["s3://bucket/corpus"])
    docs, skipped = read_source("s3://bucket/corpus")
    assert fetched_uris == ["s3://bucket/corpus"]
    assert [(d.id, d.text, d.source) for d in docs] == [("notes.txt", "from object storage", "s3://bucket/corpus")]
    assert skipped == []
