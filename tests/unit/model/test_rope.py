import math

import torch

from llamaops.platform.config import RopeScaling
from llamaops.platform.model.rope import apply_rotary, inverse_frequencies, rotary_table

LLAMA_3_1 = RopeScaling(factor=8, low_freq_factor=1, high_freq_factor=4, original_max_seq_len=8192)


def test_llama_3_1_scaling_keeps_short_wavelengths_and_stretches_long_ones():
    plain = inverse_frequencies(128, 500_000.0, None)
    scaled = inverse_frequencies(128, 500_000.0, LLAMA_3_1)
    wavelen = 2 * math.pi / plain
    short = wavelen < 8192 / 4
    long = wavelen > 8192 / 1
    middle = ~short & ~long
    assert short.any() and long.any() and middle.any()
    torch.testing.assert_close(scaled[short], plain[short])
    torch.testing.assert_close(scaled[long], plain[long] / 8)
    # In the band between, the speed is a blend strictly between the two.
    assert ((scaled[middle] < plain[middle]) & (scaled[middle] > plain[middle] / 8)).all()
    smooth = (8192 / wavelen[middle] - 1) / (4 - 1)
    torch.testing.assert_close(scaled[middle], (1 - smooth) * plain[middle] / 8 + smooth * plain[middle])


def test_rotation_preserves_norms_and_relative_positions():
    table = rotary_table(16, 64, 500_000.0, LLAMA_3_1)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    dots = []
    for shift in (0, 7, 30):
        q_rot = apply_rotary(q, table[3 + shift].view(1, 1, 8, 2))
        k_rot = apply_rotary(k, table[1 + shift].view(1, 1, 8, 2))
        torch.testing.assert_close(q_rot.norm(), q.norm())
        dots.append((q_rot * k_rot).sum())
    # Attention scores depend only on the distance between positions.
    torch.testing.assert_close(dots[0], dots[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dots[0], dots[2], atol=1e-5, rtol=1e-5)
