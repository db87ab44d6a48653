import math

import numpy as np
import pytest
import torch

from llamaops.platform.data.shards import write_split
from llamaops.platform.eval.errors import EvalInputError
from llamaops.platform.eval.perplexity import open_validation, validation_perplexity, window_indices


def _validation_shards(directory, documents):
    directory.mkdir(exist_ok=True)
    write_split(directory, "validation", documents)
    return directory


def test_perplexity_is_exp_of_mean_nll_computed_from_logits(tmp_path, small_model):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 300, size=n).tolist() for n in (7, 30, 12, 50, 3, 41, 20)]
    stream = open_validation(_validation_shards(tmp_path, docs), seq_len=16)
    result = validation_perplexity(small_model, stream, seq_len=16, max_windows=5, batch_size=2)

    nlls = []
    with torch.no_grad():
        for index in window_indices(stream.num_windows(16), 5):
            tokens, doc_ids = (torch.from_numpy(a).unsqueeze(0) for a in stream.window(index, 16))
            logits = small_model(tokens[:, :-1], document_ids=doc_ids[:, :-1])
            log_probs = torch.log_softmax(logits.double(), -1)
            nlls += (-log_probs[0].gather(-1, tokens[0, 1:, None]).squeeze(-1)).tolist()
    assert result.windows == 5 and result.tokens == len(nlls) == 5 * 16
    assert math.isfinite(result.perplexity)
    assert result.perplexity == pytest.approx(math.exp(sum(nlls) / len(nlls)), rel=1e-4)


def test_document_boundaries_change_the_score(tmp_path, small_model):
    # Same tokens, one document vs two: attention must stop at the boundary, so NLL differs.
    tokens = list(range(1, 34))
    one = open_validation(_validation_shards(tmp_path / "one", [tokens]), 32)
    two = open_validation(_validation_shards(tmp_path / "two", [tokens[:10], tokens[10:]]), 32)
    nll_one = validation_perplexity(small_model, one, 32, max_windows=1, batch_size=1).mean_nll
    nll_two = validation_perplexity(small_model, two, 32, max_windows=1, batch_size=1).mean_nll
    assert nll_one != pytest.approx(nll_two)


def test_window_indices_are_capped_and_spread():
    assert window_indices(3, 10) == [0, 1, 2]
    picked = window_indices(100, 5)
    assert len(picked) == 5 and picked[0] == 0 and picked[-1] == 99


def test_too_short_validation_split_is_a_clear_error(tmp_path):
    write_split(tmp_path, "validation", [[1, 2, 3]])
    with pytest.raises(EvalInputError, match="fewer than one window"):
        open_validation(tmp_path, seq_len=16)


def test_missing_validation_split_is_a_clear_error(tmp_path):
    with pytest.raises(EvalInputError, match="no 'validation' split"):
        open_validation(tmp_path, seq_len=16)
