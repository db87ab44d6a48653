"""Preallocated key/value cache for incremental decoding.

Every row of the batch keeps its own positions, so rows at different lengths can decode together
(continuous batching): keys are written at each row's positions and attention is masked by them.
"""
from dataclasses import dataclass

import torch

from llamaops.platform.config.model import ModelConfig


@dataclass
class KVCache:
    keys: torch.Tensor  # [n_layers, batch, n_kv_heads, max_seq_len, head_dim]
    values: torch.Tensor

    @classmethod
    def allocate(
        cls,
        cfg: ModelConfig,
        batch_size: int,
        max_seq_len: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> "KVCache":
        if max_seq_len > cfg.max_seq_len:
            raise ValueError(f"cache length {max_seq_len} exceeds the model's max_seq_len {cfg.max_seq_len}")
        shape = (cfg.n_layers, batch_size, cfg.n_kv_heads, max_seq_len, cfg.head_dim)
        return cls(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))

    @property
    def max_seq_len(self) -> int:
        return self.keys.shape[3]

    def update(
        self, layer: int, positions: torch.Tensor, k: torch.Tensor, v: torch.Tensor, length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [B, T, n_kv, D] at positions [B, T]; return the first `length` cached slots
        as [B, n_kv, length, D]."""
        rows = torch.arange(positions.shape[0], device=positions.device).unsqueeze(1)
        self.keys[layer][rows, :, positions] = k.to(self.keys.dtype)
        self.values[layer][rows, :, positions] = v.to(self.values.dtype)
        return self.keys[layer, :, :, :length], self.values[layer, :, :, :length]
