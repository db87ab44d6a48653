"""What the data steps send to Ray workers is small: the tokenizer as its file, langid's model as arrays."""
import pickle

import llamaops.platform.data.language as language
from llamaops.platform.tokenizer import load_tokenizer


def test_the_tokenizer_pickles_as_its_file_and_loads_once_per_process():
    tokenizer = load_tokenizer()
    payload = pickle.dumps(tokenizer)
    assert len(payload) < 1000  # the path, not 3 MB of merge ranks
    assert pickle.loads(payload).encode("data prep", bos=True, eos=False) == tokenizer.encode("data prep", bos=True, eos=False)


def test_langid_model_travels_decoded_and_gives_the_same_answers(monkeypatch):
    text = "Der schnelle braune Fuchs springt über den faulen Hund und läuft weiter in den Wald."
    expected = language.identify_language(text)
    payload = pickle.dumps(language.ShippedModel())
    monkeypatch.setattr(language, "_model", None)  # as in a fresh worker process
    pickle.loads(payload)
    assert language._model is not None and language.identify_language(text) == expected == "de"
