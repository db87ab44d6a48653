"""Training batches from the packed token stream, split over data-parallel ranks.

The data position is a token cursor into the training split. A step at length T starts at the
first window boundary (a multiple of T) at or after the cursor and takes `sequences` consecutive
logical windows, wrapping round the split; rank r of `world` takes its own contiguous slice of
them. So the batch of every rank is a function of (cursor, plan step, seed) alone, and a
checkpoint stores the cursor. Logical windows map to stored ones through a seeded affine
permutation (i -> a*i + b mod n): shards hold documents source by source, and reading them in
order would feed the model one source at a time; the permutation needs no memory at any scale.
"""
import math
from dataclasses import dataclass

import numpy as np
import torch

from llamaops.platform.data.shards import TokenStream
from llamaops.platform.model.loss import IGNORE_INDEX

from .errors import TrainingConfigError


@dataclass
class Batch:
    inputs: torch.Tensor  # [B, T] token ids
    targets: torch.Tensor  # [B, T] the next token of each input; IGNORE_INDEX across documents
    document_ids: torch.Tensor  # [B, T] document of each input token, for the attention mask
    # [B, T] fine-tuning: which of the batch's examples (their index in the order given) each
    # position belongs to, -1 for padding; None for token windows
    example_index: torch.Tensor | None = None


def first_window(cursor: int, seq_len: int) -> int:
    return -(-cursor // seq_len)


def next_cursor(cursor: int, seq_len: int, sequences: int) -> int:
    return (first_window(cursor, seq_len) + sequences) * seq_len


def check_stream_fits(stream: TokenStream, seq_lens: set[int]) -> None:
    for seq_len in sorted(seq_lens):
        if stream.num_windows(seq_len) == 0:
            raise TrainingConfigError(
                f"the training split has {len(stream.tokens)} tokens, fewer than one window of"
                f" {seq_len + 1}; prepare more data or use a shorter seq_len"
            )


def shuffled_window(logical: int, windows: int, seed: int) -> int:
    """The stored window read as logical window `logical`: a bijection of range(windows)."""
    stride = max(1, int(windows * 0.6180339887)) | 1  # golden-ratio stride: neighbours land far apart
    while math.gcd(stride, windows) != 1:
        stride += 2
    return (stride * logical + seed) % windows


def rank_batch(
    stream: TokenStream, cursor: int, seq_len: int, sequences: int, rank: int, world: int, seed: int = 0
) -> Batch:
    per_rank = sequences // world
    windows = stream.num_windows(seq_len)
    first = first_window(cursor, seq_len) + rank * per_rank
    picked = (shuffled_window((first + i) % windows, windows, seed) for i in range(per_rank))
    tokens, documents = zip(*(stream.window(index, seq_len) for index in picked))
    tokens_t = torch.from_numpy(np.stack(tokens))
    documents_t = torch.from_numpy(np.stack(documents))
    # The first token of the next document cannot be predicted from the one before it.
    crosses = documents_t[:, 1:] != documents_t[:, :-1]
    targets = tokens_t[:, 1:].masked_fill(crosses, IGNORE_INDEX)
    return Batch(tokens_t[:, :-1], targets, documents_t[:, :-1])
