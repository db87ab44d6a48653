import numpy as np
import pytest

from llamaops.platform.data.clean import remove_boilerplate_lines, repair_mojibake
from llamaops.platform.data.dedup import drop_duplicate_urls, drop_repeated_lines
from llamaops.platform.data.documents import Document
from llamaops.platform.data.filters import (
    QualityRules,
    dirty_word_fraction,
    duplicate_ngram_fraction,
    first_failed_rule,
    symbol_word_ratio,
)
from llamaops.platform.data.language import identify_language, language_reason
from llamaops.platform.data.pii import scrub_pii
from llamaops.platform.data.report import PrepReport
from llamaops.platform.data.steps import DocumentStep, run_document_steps


@pytest.mark.parametrize(
    "broken, fixed",
    [
        ("cafÃ© and naÃ¯ve", "café and naïve"),
        ("â€œquotedâ€\x9d â€” dash", "“quoted” — dash"),
        ("emoji ðŸ˜€ here", "emoji 😀 here"),
        ("clean café–bar text", "clean café–bar text"),  # already right: left alone
        ("Ã alone", "Ã alone"),
    ],
)
def test_mojibake_runs_are_repaired_and_clean_text_left_alone(broken, fixed):
    assert repair_mojibake(broken) == fixed


def test_boilerplate_lines_go_but_long_content_lines_stay():
    long_line = "This essay explains why a privacy policy matters " + "and why " * 30
    text = "Title\nAccept all cookies\nBody text.\n© 2024 Example. All rights reserved.\n" + long_line
    assert remove_boilerplate_lines(text) == "Title\nBody text.\n" + long_line


def test_pii_becomes_placeholders_and_counts():
    text = "Mail jo.doe+x@example.co.uk, call (555) 123-4567 or +44 20 7946 0958; host 192.168.1.20; 300 apples."
    scrubbed, count = scrub_pii(text)
    assert scrubbed == "Mail <EMAIL>, call <PHONE> or <PHONE>; host <IP_ADDRESS>; 300 apples."
    assert count == 4
    assert scrub_pii("no personal data, version 2.0 and 1999")[1] == 0


def test_url_dedup_keeps_the_first_document_of_each_url():
    docs = [Document("a", "x", "s", url="u1"), Document("b", "y", "s", url="u1"), Document("c", "z", "s")]
    kept, removed = drop_duplicate_urls(docs)
    assert [d.id for d in kept] == ["a", "c"] and [(d.id, r) for d, r in removed] == [("b", "duplicate_url")]


def test_lines_repeated_across_documents_of_a_bucket_are_removed():
    docs = [Document(str(i), f"Home | About | Contact\nunique line {i}", "s", "en") for i in range(4)]
    docs.append(Document("nav-only", "Home | About | Contact", "s", "en"))
    docs.append(Document("code", "Home | About | Contact\nimport os", "s", "python"))  # code is left alone
    kept, removed = drop_repeated_lines(docs, max_repeats=3, bucket_documents=100, skip_languages=frozenset({"python"}))
    assert [d.text for d in kept] == [f"unique line {i}" for i in range(4)] + ["Home | About | Contact\nimport os"]
    assert [(d.id, r) for d, r in removed] == [("nav-only", "only_repeated_lines")]
    # In buckets of 3 documents no line repeats more than 3 times: nothing changes.
    fresh = [Document(str(i), f"Home | About | Contact\nline {i}", "s", "en") for i in range(6)]
    assert len(drop_repeated_lines(fresh, 3, 3, frozenset())[0]) == 6


def test_prose_heuristics():
    assert duplicate_ngram_fraction("a b c d e " * 10, 5) == 1.0
    assert duplicate_ngram_fraction(" ".join(f"w{i}" for i in range(50)), 5) == 0.0
    assert dirty_word_fraction("this porn spam porn") == 0.5
    assert symbol_word_ratio("#tag #tag2 read more... word") == 0.6  # 3 symbols, 5 words
    rules = QualityRules(1, 10_000, 0.0, 1.0, 0.5, 5, 0.05, 0.1)
    prose = " ".join(f"word{i}" for i in range(60))
    cases = {
        "fine": prose,
        "repeated": "buy now cheap pills today " * 20,
        "dirty": prose + " porn " * 10,
        "tags": prose + " #a #b #c #d #e #f #g",
    }
    reasons = {name: first_failed_rule(Document(name, text, "s", "en"), rules) for name, text in cases.items()}
    assert reasons == {"fine": None, "repeated": "many_duplicate_ngrams", "dirty": "dirty_words", "tags": "many_symbols"}
    # Code keeps only the basic rules: comments are '#' and loops repeat.
    code = Document("c", "# comment\n" * 30 + "x = 1\n", "s", "python")
    assert first_failed_rule(code, QualityRules(1, 10_000, 0.0, 1.0, 0.5, 5, 0.05, 0.1)) is None


def test_language_identification_fills_unknown_languages_and_filters():
    assert identify_language("Der schnelle braune Fuchs springt über den faulen Hund.") == "de"
    assert identify_language("La vie est belle et le soleil brille sur la ville.") == "fr"
    doc = Document("x", "The quick brown fox jumps over the lazy dog near the river bank.", "s")
    assert language_reason(doc, identify=True, allowed=frozenset({"en"})) is None and doc.language == "en"
    german = Document("y", "Das ist ein Haus.", "s", language="de")
    assert language_reason(german, identify=True, allowed=frozenset({"en"})) == "language_not_kept"


def test_fused_steps_report_each_step_as_if_run_one_by_one():
    def shorten(doc):
        doc.text = doc.text[:3]

    def drop_b(doc):
        return "is_b" if doc.text.startswith("b") else None

    docs = [Document("1", "aaaaa", "s"), Document("2", "bbbbb", "t"), Document("3", "ccccc", "s")]
    report = PrepReport()
    kept = run_document_steps([DocumentStep("shorten", shorten), DocumentStep("drop_b", drop_b)], docs, report, 1)
    assert [d.text for d in kept] == ["aaa", "ccc"]
    shorten_step, drop_step = report.steps
    assert shorten_step["in"] == {"documents": 3, "chars": 15, "tokens": 0}
    assert shorten_step["out"] == {"documents": 3, "chars": 9, "tokens": 0} and shorten_step["removed"] == {}
    assert drop_step["out"] == {"documents": 2, "chars": 6, "tokens": 0}
    assert drop_step["removed"] == {"is_b": {"documents": 1, "chars": 3, "tokens": 0, "by_source": {"t": 1}, "by_language": {"unknown": 1}}}


def test_huge_lines_and_empty_documents_are_skipped_with_reasons(tmp_path):
    from llamaops.platform.config import load_preset
    from llamaops.platform.data.pipeline import clean_check

    data = load_preset("tiny", overrides=["data.max_line_chars=1000"]).data
    huge = Document("huge", "ok\n" + "x" * 1001, "s")
    empty = Document("empty", " \n\t\n", "s")
    fine = Document("fine", "Caf\u0065\u0301  \r\nline two", "s")
    assert [clean_check(data, d) for d in (huge, empty, fine)] == ["huge_line", "empty", None]
    assert fine.text == "Café\nline two"  # NFC, newlines, trailing space


def test_random_words_score_lower_than_reference_prose():
    from llamaops.platform.data.quality import QualityClassifier

    rng = np.random.default_rng(0)
    subjects, verbs, objects = ["the cat", "a dog", "my friend", "the teacher", "our team"], ["sees", "likes", "builds", "reads", "finds"], ["the book", "a house", "the answer", "a garden", "the river"]  # fmt: skip
    def sentence():
        return f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} and then {rng.choice(verbs)} {rng.choice(objects)}."
    reference = [" ".join(sentence() for _ in range(8)) for _ in range(300)]
    model = QualityClassifier.train(reference[:200], seed=0)
    vocabulary = " ".join(reference).split()
    salad = [" ".join(rng.choice(vocabulary, 80)) for _ in range(100)]
    assert (model.scores(reference[200:]) >= 0.5).mean() >= 0.95
    assert (model.scores(salad) < 0.5).mean() >= 0.95
