from llamaops.platform.data.documents import Document
from llamaops.platform.data.filters import (
    QualityRules,
    alphanumeric_fraction,
    duplicate_line_fraction,
    first_failed_rule,
)

RULES = QualityRules(min_chars=20, max_chars=200, min_alphanumeric_fraction=0.5, max_duplicate_line_fraction=0.3)


def test_alphanumeric_fraction_counts_letters_of_any_script_and_ignores_spaces():
    assert alphanumeric_fraction("ab !!") == 0.5
    assert alphanumeric_fraction("नमस्ते दुनिया") == 1.0  # vowel signs are marks, not symbols
    assert alphanumeric_fraction("   ") == 0.0


def test_duplicate_line_fraction_ignores_blank_lines():
    assert duplicate_line_fraction("a\n\nb\na\n a \n") == 0.5
    assert duplicate_line_fraction("") == 0.0


def test_each_rule_reports_its_reason():
    docs = [
        Document("good", "A perfectly ordinary sentence of text.", "s"),
        Document("short", "tiny", "s"),
        Document("long", "word " * 100, "s"),
        Document("symbols", "{}[]()<>;;;::!!??==++--** ab", "s"),
        Document("repeats", "same line\nsame line\nsame line\nother line", "s"),
    ]
    assert {d.id: first_failed_rule(d, RULES) for d in docs} == {
        "good": None,
        "short": "too_short",
        "long": "too_long",
        "symbols": "low_alphanumeric_fraction",
        "repeats": "many_duplicate_lines",
    }
