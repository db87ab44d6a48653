from pathlib import Path

import numpy as np
import pytest

from llamaops.platform.data.shards import TokenStream, write_split
from llamaops.platform.model.loss import IGNORE_INDEX
from llamaops.platform.train.batches import check_stream_fits, next_cursor, rank_batch, shuffled_window
from llamaops.platform.train.errors import TrainingConfigError


@pytest.fixture
def stream(tmp_path: Path) -> TokenStream:
    docs = [list(range(i * 100, i * 100 + 50)) for i in range(10)]  # 500 tokens, documents of 50
    write_split(tmp_path, "train", docs)
    return TokenStream.open(tmp_path, "train")


def test_ranks_take_disjoint_consecutive_windows(stream: TokenStream):
    whole = rank_batch(stream, 0, 16, 4, rank=0, world=1)
    halves = [rank_batch(stream, 0, 16, 4, rank=r, world=2) for r in (0, 1)]
    assert np.array_equal(np.concatenate([h.inputs for h in halves]), whole.inputs)


@pytest.mark.parametrize("windows", [1, 2, 7, 10, 64, 1000])
@pytest.mark.parametrize("seed", [0, 3])
def test_window_order_is_a_seeded_permutation_that_spreads_neighbours(windows: int, seed: int):
    order = [shuffled_window(i, windows, seed) for i in range(windows)]
    assert sorted(order) == list(range(windows))
    if windows >= 64:
        assert min(abs(a - b) for a, b in zip(order, order[1:])) > 1


def test_targets_are_next_tokens_and_never_cross_documents(stream: TokenStream):
    batch = rank_batch(stream, 0, 64, 1, rank=0, world=1)
    assert batch.targets[0, 0] == batch.inputs[0, 1]
    assert batch.document_ids[0, 49] == 0 and batch.document_ids[0, 50] == 1
    assert batch.targets[0, 49] == IGNORE_INDEX  # token 49 ends document 0
    assert batch.targets[0, 50] == batch.inputs[0, 51]


def test_cursor_moves_to_window_boundaries_and_wraps(stream: TokenStream):
    assert next_cursor(0, 16, 4) == 64
    assert next_cursor(64, 48, 1) == 96 + 48  # the next 48-token boundary after 64 is 96
    windows = stream.num_windows(100)
    far = rank_batch(stream, windows * 100, 100, 1, rank=0, world=1)
    assert np.array_equal(far.inputs, rank_batch(stream, 0, 100, 1, rank=0, world=1).inputs)


def test_too_little_data_for_a_window_is_a_clear_error(stream: TokenStream):
    with pytest.raises(TrainingConfigError, match="fewer than one window of 1025"):
        check_stream_fits(stream, {16, 1024})
