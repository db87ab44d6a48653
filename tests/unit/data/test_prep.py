import json

import numpy as np
import pytest

from llamaops.platform.config import load_preset
from llamaops.platform.data.documents import DataError
from llamaops.platform.data.prep import REPORT_FILE, run_data_prep
from llamaops.platform.data.shards import TokenStream
from llamaops.platform.store import fetched, is_complete
from llamaops.platform.tokenizer import load_tokenizer

VOCABULARY = [f"word{i}" for i in range(3000)]


class RecordingSink:
    def __init__(self):
        self.logged = []

    def log_metrics(self, metrics, step=None):
        self.logged.append(dict(metrics))


def preset_for(*overrides: str):
    return load_preset("tiny", overrides=list(overrides))


def synthetic_corpus(folder, documents: int = 60):
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(VOCABULARY, 200)) + "." for _ in range(documents)]
    folder.mkdir()
    for i, text in enumerate(texts):
        (folder / f"doc{i:03d}.txt").write_text(text)
    (folder / "exact_copy.txt").write_text(texts[0] + "   \n")  # identical after normalization
    words = texts[1].split()
    words[100] = "edited"
    (folder / "near_copy.txt").write_text(" ".join(words))
    (folder / "short.txt").write_text("too short")
    return texts


def read_documents(stream: TokenStream) -> list[tuple[int, ...]]:
    bounds = list(stream.starts) + [len(stream.tokens)]
    return [tuple(int(t) for t in stream.tokens[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def test_stage_writes_split_shards_with_document_boundaries(tmp_path):
    texts = synthetic_corpus(tmp_path / "corpus")
    preset = preset_for(f"data.sources=['{(tmp_path / 'corpus').as_uri()}']", "data.validation_fraction=0.2")
    output_uri = (tmp_path / "shards").as_uri()
    sink = RecordingSink()

    result = run_data_prep(preset, output_uri, sink)

    assert result.outputs == {"shards": output_uri} and is_complete(output_uri)
    tokenizer = load_tokenizer()
    with fetched(output_uri) as directory:
        splits = {split: TokenStream.open(directory, split) for split in ("train", "validation")}
        saved_report = json.loads((directory / REPORT_FILE).read_text())
    documents = {split: read_documents(stream) for split, stream in splits.items()}
    for docs in documents.values():
        assert all(doc[0] == tokenizer.bos_id and doc[-1] == tokenizer.eos_id for doc in docs)
        assert all(tokenizer.bos_id not in doc[1:] for doc in docs)
    assert not set(documents["train"]) & set(documents["validation"])
    decoded = {tokenizer.decode(doc[1:-1]) for docs in documents.values() for doc in docs}
    assert decoded == set(texts)  # every distinct text exactly once; copies and the short one gone
    assert 3 <= len(documents["validation"]) <= 25

    tokens, document_ids = splits["train"].window(0, 600)
    starts_in_window = np.flatnonzero(tokens == tokenizer.bos_id)
    assert starts_in_window[0] == 0 and np.array_equal(np.flatnonzero(np.diff(document_ids)) + 1, starts_in_window[1:])

    assert saved_report == result.report
    removed = {reason for step in result.report["steps"] for reason in step["removed"]}
    assert {"exact_duplicate", "near_duplicate", "too_short"} <= removed
    assert result.metrics["documents_in"] == 63 and result.metrics["documents_out"] == 60
    assert result.metrics["tokens_out"] == sum(len(d) for docs in documents.values() for d in docs)
    assert result.metrics["validation_documents"] == len(documents["validation"])
    assert sink.logged == []  # its final metrics are the caller's to log, once


def test_same_corpus_and_seed_give_identical_shards(tmp_path):
    synthetic_corpus(tmp_path / "corpus", documents=20)
    preset = preset_for(f"data.sources=['{(tmp_path / 'corpus').as_uri()}']", "data.validation_fraction=0.3")
    first = run_data_prep(preset, (tmp_path / "a").as_uri())
    second = run_data_prep(preset, (tmp_path / "b").as_uri())
    assert first.report == second.report
    for name in ("train.tokens.npy", "validation.tokens.npy", "train.starts.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_builtin_corpora_with_caps(tmp_path):
    preset = preset_for(
        "data.sources=['cpython-stdlib', 'chatterbot-corpus']",
        "data.max_documents_per_source=25",
        "data.max_tokens=40000",
        "data.validation_fraction=0.2",
    )
    result = run_data_prep(preset, (tmp_path / "shards").as_uri())
    assert result.metrics["documents_in"] > 900
    sampled = next(step for step in result.report["steps"] if step["step"] == "sample")
    assert sampled["out"]["documents"] == 50
    assert 30000 < result.metrics["tokens_out"] <= 40000  # whole documents, as many as fit
    assert set(result.report["by_source_out"]) == {"cpython-stdlib", "chatterbot-corpus"}
    assert len(result.report["by_source_in"]["chatterbot-corpus"]) > 5  # several languages


def test_unknown_source_fails_before_anything_is_written(tmp_path):
    with pytest.raises(DataError, match="unknown data source 'wiki'"):
        run_data_prep(preset_for("data.sources=['wiki']"), (tmp_path / "out").as_uri())
    assert not (tmp_path / "out").exists()


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no documents"):
        run_data_prep(preset_for(f"data.sources=['{(tmp_path / 'empty').as_uri()}']"), (tmp_path / "out").as_uri())


def test_everything_filtered_out_is_an_error_and_publishes_nothing(tmp_path):
    (tmp_path / "corpus").mkdir()
    for i in range(5):
        (tmp_path / "corpus" / f"{i}.txt").write_text(f"short {i}")
    with pytest.raises(DataError, match=r"too_short': 5"):
        run_data_prep(preset_for(f"data.sources=['{(tmp_path / 'corpus').as_uri()}']"), (tmp_path / "out").as_uri())
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused_before_reading(tmp_path):
    synthetic_corpus(tmp_path / "corpus", documents=30)  # the split hashes the tmp path: 10 left a 3% chance of an empty split
    preset = preset_for(f"data.sources=['{(tmp_path / 'corpus').as_uri()}']", "data.validation_fraction=0.3")
    run_data_prep(preset, (tmp_path / "out").as_uri())
    with pytest.raises(DataError, match="already exists"):
        run_data_prep(preset, (tmp_path / "out").as_uri())


# A small grammar and templated code repeat by design: the repetition filters would take them all.
LOOSE_REPETITION = ("data.max_duplicate_ngram_fraction=null", "data.max_duplicate_line_fraction=1", "data.validation_fraction=0.2")


def test_quality_classifier_language_filter_and_mix_run_inside_the_stage(tmp_path):
    rng = np.random.default_rng(3)
    subjects, verbs = ["the cat", "a dog", "my friend", "the teacher", "our team"], ["sees", "likes", "builds", "reads"]
    objects = ["the book", "a house", "the answer", "a garden", "the river", "a letter"]

    def prose() -> str:
        return " ".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} today." for _ in range(30))

    for name, count in (("reference", 150), ("web", 40)):
        (tmp_path / name).mkdir()
        for i in range(count):
            (tmp_path / name / f"{i}.txt").write_text(prose())
    vocabulary = prose().split()
    for i in range(10):
        (tmp_path / "web" / f"salad{i}.txt").write_text(" ".join(rng.choice(vocabulary, 150)))
    (tmp_path / "web" / "german.txt").write_text("Der schnelle braune Fuchs springt über den faulen Hund. " * 5)
    (tmp_path / "code").mkdir()
    for i in range(20):
        (tmp_path / "code" / f"m{i}.md").write_text(f"def f{i}(x):\n    return x * {i} + {i * 7}\n" * 4)
    web, code = (tmp_path / "web").as_uri(), (tmp_path / "code").as_uri()
    preset = preset_for(
        f"data.sources=['{web}', '{code}']",
        f"data.quality_reference_sources=['{(tmp_path / 'reference').as_uri()}']",
        f"data.source_categories={{'{code}': code}}",
        "data.mix=anneal",
        *LOOSE_REPETITION,
    )
    result = run_data_prep(preset, (tmp_path / "out").as_uri())
    removed = {s["step"]: {r: c["documents"] for r, c in s["removed"].items()} for s in result.report["steps"]}
    assert removed["quality_classifier"].get("low_quality_score", 0) >= 10
    mixed = next(s for s in result.report["steps"] if s["step"] == "anneal_mix")
    assert mixed["removed"]  # one category is downsampled to keep the 40/30/30 anneal proportions

    only_english = preset_for(f"data.sources=['{web}']", "data.languages=[en]", *LOOSE_REPETITION)
    result = run_data_prep(only_english, (tmp_path / "english").as_uri())
    language = next(s for s in result.report["steps"] if s["step"] == "language")
    assert language["removed"]["language_not_kept"]["documents"] >= 1  # the German document
    assert "de" not in result.report["by_source_out"][web]
