"""Validation perplexity: exp of the mean next-token NLL over windows of the validation split.

Windows have the pretraining seq_len and carry document ids, so attention and positions restart
at each document exactly as in training; every target in a window counts.
"""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from llamaops.platform.data.shards import TokenStream
from llamaops.platform.model import Transformer
from llamaops.platform.serve.head import OutputHead

from .errors import EvalInputError

SPLIT = "validation"
_MAX_EXP_ARG = 700.0  # math.exp overflows a float a little above 709


@dataclass
class PerplexityResult:
    perplexity: float
    mean_nll: float
    windows: int
    tokens: int


def window_indices(available: int, wanted: int) -> list[int]:
    """At most `wanted` window indices spread evenly over `available` windows."""
    if available <= wanted:
        return list(range(available))
    return sorted({int(i) for i in np.linspace(0, available - 1, wanted)})


def open_validation(shards_dir: Path, seq_len: int) -> TokenStream:
    """The validation stream, checked to hold at least one window (before any model work)."""
    try:
        stream = TokenStream.open(shards_dir, SPLIT)
    except FileNotFoundError:
        raise EvalInputError(f"{shards_dir} has no '{SPLIT}' split; pass the shards artifact of data prep") from None
    if stream.num_windows(seq_len) == 0:
        raise EvalInputError(
            f"the {SPLIT} split of {shards_dir} has {len(stream.tokens)} tokens, fewer than one window of"
            f" {seq_len + 1}; prepare more validation data"
        )
    return stream


def window_rows(stream: TokenStream, indices: list[int], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows' tokens and document ids, [len(indices), seq_len + 1] each: inputs are [:, :-1],
    targets (every one counted) [:, 1:]."""
    windows = [stream.window(i, seq_len) for i in indices]
    return torch.from_numpy(np.stack([w[0] for w in windows])), torch.from_numpy(np.stack([w[1] for w in windows]))


POSITIONS_PER_PROJECTION = 1024  # logits of this many positions at a time: [1024, vocab] fp32 is 0.5 GB


@torch.no_grad()
def window_nll_sums(model: Transformer, head: OutputHead, stream: TokenStream, indices: list[int], seq_len: int,
                    batch_size: int) -> list[float]:
    """The summed next-token NLL of each window (every one of its seq_len targets counted), the
    output projection through `head` (a tensor-parallel model's sharded one, or the model's own)."""
    sums: list[float] = []
    for start in range(0, len(indices), batch_size):
        tokens, document_ids = window_rows(stream, indices[start : start + batch_size], seq_len)
        device = next(model.parameters()).device
        hidden = model(tokens[:, :-1].to(device), document_ids=document_ids[:, :-1].to(device), project=False)
        targets = tokens[:, 1:].to(device)
        per_position = torch.cat([
            F.cross_entropy(head.logits(h).float(), t, reduction="none")
            for h, t in zip(hidden.flatten(0, 1).split(POSITIONS_PER_PROJECTION),
                            targets.flatten().split(POSITIONS_PER_PROJECTION))
        ])
        sums += per_position.view(len(tokens), seq_len).sum(1).tolist()
    return sums


def perplexity_of(window_sums: list[float], seq_len: int) -> PerplexityResult:
    tokens = len(window_sums) * seq_len
    mean = sum(window_sums) / tokens
    perplexity = math.exp(mean) if mean < _MAX_EXP_ARG else math.inf
    return PerplexityResult(perplexity, mean, len(window_sums), tokens)


def validation_perplexity(model: Transformer, stream: TokenStream, seq_len: int, max_windows: int,
                          batch_size: int) -> PerplexityResult:
    """What the eval stage's workers measure, in one process holding the whole model (checks and
    benchmarks compare sharded figures with it)."""
    indices = window_indices(stream.num_windows(seq_len), max_windows)
    head = OutputHead(model.output.weight, screen=False)
    return perplexity_of(window_nll_sums(model, head, stream, indices, seq_len, batch_size), seq_len)
