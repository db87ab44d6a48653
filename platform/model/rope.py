"""Rotary position embeddings with the Llama 3.1 frequency scaling.

Pairs are interleaved (dims 2i, 2i+1 rotate together), Meta's convention. Hugging Face rotates
half-split pairs instead; hf.py permutes the q/k projection rows to convert between the two.
"""
import math

import torch

from llamaops.platform.config.model import RopeScaling


def inverse_frequencies(head_dim: int, theta: float, scaling: RopeScaling | None) -> torch.Tensor:
    """Per-pair rotation speeds, long wavelengths stretched by the Llama 3.1 scaling."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if scaling is None:
        return inv_freq
    wavelen = 2 * math.pi / inv_freq
    low_freq_wavelen = scaling.original_max_seq_len / scaling.low_freq_factor
    high_freq_wavelen = scaling.original_max_seq_len / scaling.high_freq_factor
    # 0 for wavelengths beyond the original context (fully scaled), 1 for short ones (untouched),
    # linear in between.
    smooth = (scaling.original_max_seq_len / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    smooth = torch.where(wavelen > low_freq_wavelen, 0.0, smooth)
    smooth = torch.where(wavelen < high_freq_wavelen, 1.0, smooth)
    return (1 - smooth) * inv_freq / scaling.factor + smooth * inv_freq


def rotary_table(
    head_dim: int, max_seq_len: int, theta: float, scaling: RopeScaling | None, device=None
) -> torch.Tensor:
    """fp32 [max_seq_len, head_dim // 2, 2] table of (cos, sin) per position and pair."""
    inv_freq = inverse_frequencies(head_dim, theta, scaling).to(device)
    angles = torch.outer(torch.arange(max_seq_len, device=device, dtype=torch.float32), inv_freq)
    return torch.stack((angles.cos(), angles.sin()), dim=-1)


def apply_rotary(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, T, H, D] by table [B or 1, T, D // 2, 2]; math in fp32, result in x.dtype.

    Each pair (x0, x1) times (cos, sin) is one complex product, as in Meta's reference: one
    kernel forward and one backward instead of a dozen elementwise ops (~4x faster on a CPU).
    """
    pairs = torch.view_as_complex(x.float().contiguous().unflatten(-1, (-1, 2)))
    rotation = torch.view_as_complex(table.contiguous()).unsqueeze(2)  # cos + i sin, broadcast over heads
    return torch.view_as_real(pairs * rotation).flatten(-2).type_as(x)
