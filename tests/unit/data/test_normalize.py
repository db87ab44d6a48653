import unicodedata

from llamaops.platform.data.normalize import normalize_text


def test_normalize_composes_unicode_and_tidies_whitespace():
    decomposed = unicodedata.normalize("NFD", "café")
    text = f"\n\n{decomposed}  \t\r\nline two   \n\n\n\n\n\nend\n"
    assert normalize_text(text) == "café\nline two\n\n\nend"


def test_two_blank_lines_are_kept():
    assert normalize_text("a\n\n\nb") == "a\n\n\nb"
