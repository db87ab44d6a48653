"""Per-language branches: language id routes each document to its language's own thresholds and
dirty words; the report counts documents in, out and removed per language."""
import itertools
import json

import numpy as np

from llamaops.platform.config import load_preset
from llamaops.platform.data.prep import prepare_data

SENTENCES = {
    "en": ["the children play in the garden with their friends every afternoon",
           "my grandmother always tells us stories about the old village where she grew up",
           "we walked along the river until the sun went down behind the hills",
           "the teacher explained the lesson again because nobody had understood it",
           "after dinner my father reads the newspaper while my mother writes letters"],
    "de": ["die Kinder spielen jeden Nachmittag mit ihren Freunden im Garten",
           "meine Großmutter erzählt uns immer Geschichten über das alte Dorf, in dem sie aufgewachsen ist",
           "wir gingen am Fluss entlang, bis die Sonne hinter den Hügeln unterging",
           "der Lehrer erklärte die Stunde noch einmal, weil niemand sie verstanden hatte",
           "nach dem Abendessen liest mein Vater die Zeitung, während meine Mutter Briefe schreibt"],
    "fr": ["les enfants jouent dans le jardin avec leurs amis tous les après-midi",
           "ma grand-mère nous raconte toujours des histoires sur le vieux village où elle a grandi",
           "nous avons marché le long de la rivière jusqu'à ce que le soleil se couche derrière les collines",
           "le professeur a expliqué la leçon encore une fois parce que personne ne l'avait comprise",
           "après le dîner mon père lit le journal pendant que ma mère écrit des lettres"],
}
MARKED = "schmutzwort"  # the German branch's own dirty word


def write_multilingual_corpus(folder, per_language: int = 12) -> None:
    rng = np.random.default_rng(5)
    orders = list(itertools.permutations(range(5)))
    records = []
    for language, sentences in SENTENCES.items():
        for i, order in enumerate(rng.choice(len(orders), per_language, replace=False)):  # no two alike
            text = ". ".join(sentences[j] for j in orders[order]) + "."
            if i < 4:  # a few documents of every language carry the marked word, ~4% of their words
                text += f" {MARKED} {MARKED} {MARKED}."
            records.append({"text": text, "id": f"{language}-{i}"})
    folder.mkdir()
    (folder / "docs.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")


def test_each_language_branch_applies_its_own_rules_and_is_reported(tmp_path):
    write_multilingual_corpus(tmp_path / "in")
    branches = {"de": {"dirty_words": [MARKED], "max_dirty_word_fraction": 0.02}, "fr": {"min_chars": 2000}}
    data = load_preset("tiny", overrides=[
        f"data.sources=['{(tmp_path / 'in').as_uri()}']", "data.validation_fraction=0.2",
        "data.max_duplicate_ngram_fraction=null", "data.max_token_kl_zscore=null", "data.near_duplicate_jaccard=1.0",
        f"data.language_rules={json.dumps(branches)}",
    ]).data

    report = prepare_data(data, (tmp_path / "out").as_uri()).report

    by_language = report["by_language"]
    assert set(by_language) == {"en", "de", "fr"}  # identified by langid: the corpus gives no language
    assert by_language["en"] == {"documents_in": 12, "documents_out": 12, "tokens_out": by_language["en"]["tokens_out"],
                                 "removed": {}}  # English: the default list has no marked word
    assert by_language["de"]["removed"] == {"dirty_words": 4} and by_language["de"]["documents_out"] == 8
    assert by_language["fr"]["removed"] == {"too_short": 12} and by_language["fr"]["documents_out"] == 0
    filters = next(step for step in report["steps"] if step["step"] == "quality_filters")
    assert filters["removed"]["dirty_words"]["by_language"] == {"de": 4}
    assert sum(row["tokens_out"] for row in by_language.values()) == report["tokens_out"]


def test_a_branch_inherits_what_it_does_not_set(tmp_path):
    from llamaops.platform.data.filters import DIRTY_WORDS
    from llamaops.platform.data.pipeline import language_routes

    data = load_preset("tiny", overrides=["data.language_rules={de: {min_chars: 500}}", "data.min_chars=70"]).data
    routes = language_routes(data)
    german, other = routes.rules_for("de"), routes.rules_for("it")
    assert (german.min_chars, other.min_chars) == (500, 70)
    assert german.max_dirty_word_fraction == other.max_dirty_word_fraction == data.max_dirty_word_fraction
    assert german.dirty_words == other.dirty_words == DIRTY_WORDS and routes.rules_for(None) is routes.default
