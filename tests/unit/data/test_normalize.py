import unicodedata

from llamaops.platform.data.documents import Document
from llamaops.platform.data.normalize import normalize_documents, normalize_text


def test_normalize_composes_unicode_and_tidies_whitespace():
    decomposed = unicodedata.normalize("NFD", "café")
    text = f"\n\n{decomposed}  \t\r\nline two   \n\n\n\n\n\nend\n"
    assert normalize_text(text) == "café\nline two\n\n\nend"


def test_two_blank_lines_are_kept():
    assert normalize_text("a\n\n\nb") == "a\n\n\nb"


def test_documents_left_empty_are_dropped_with_a_reason():
    docs = [Document("a", "  \n\t\n", "s"), Document("b", "text  ", "s")]
    kept, removed = normalize_documents(docs)
    assert [d.id for d in kept] == ["b"] and kept[0].text == "text"
    assert [(d.id, reason) for d, reason in removed] == [("a", "empty")]
