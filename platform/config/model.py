"""Shape of a Llama 3.1-family decoder; the presets hold the real numbers."""
from pydantic import PositiveFloat, PositiveInt, model_validator

from .base import Config


class RopeScaling(Config):
    """Llama 3.1 RoPE frequency scaling (HF `rope_type: llama3`)."""

    factor: PositiveFloat = 8.0
    low_freq_factor: PositiveFloat = 1.0
    high_freq_factor: PositiveFloat = 4.0
    original_max_seq_len: PositiveInt = 8192

    @model_validator(mode="after")
    def _check_band(self) -> "RopeScaling":
        if self.high_freq_factor <= self.low_freq_factor:
            raise ValueError("high_freq_factor must be greater than low_freq_factor")
        return self


class ModelConfig(Config):
    dim: PositiveInt
    n_layers: PositiveInt
    n_heads: PositiveInt
    n_kv_heads: PositiveInt
    ffn_hidden_dim: PositiveInt
    vocab_size: PositiveInt = 128_256
    norm_eps: PositiveFloat = 1e-5
    rope_theta: PositiveFloat = 500_000.0
    rope_scaling: RopeScaling | None = RopeScaling()
    max_seq_len: PositiveInt = 131_072

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @model_validator(mode="after")
    def _check_heads(self) -> "ModelConfig":
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not divisible by n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for rotary embeddings")
        return self
