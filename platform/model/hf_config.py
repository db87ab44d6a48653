"""Hugging Face `config.json` / `generation_config.json` for Llama <-> ModelConfig.

Exports write the legacy `rope_theta` + `rope_scaling` keys of Meta's own Llama 3.1 configs: transformers
4 and vLLM read them, and transformers 5 converts them to its `rope_parameters`. Imports read either.
"""
from typing import Any

from pydantic import ValidationError

from llamaops.platform.config.model import ModelConfig, RopeScaling

from .checkpoint import ModelDirectoryError, first_error

BOS_TOKEN_ID = 128_000
EOS_TOKEN_IDS = [128_001, 128_008, 128_009]  # <|end_of_text|>, <|eom_id|>, <|eot_id|>

# transformers' LlamaConfig defaults, for keys a config.json may leave out.
_HF_DEFAULT_ROPE_THETA = 10_000.0
_HF_DEFAULT_NORM_EPS = 1e-6
_HF_DEFAULT_MAX_POSITIONS = 2048


class UnsupportedHFConfigError(ModelDirectoryError):
    """The Hugging Face config describes a model llamaops cannot represent."""


def model_config_from_hf(config_json: dict[str, Any]) -> ModelConfig:
    c = config_json
    if c.get("model_type") != "llama":
        raise UnsupportedHFConfigError(f"model_type {c.get('model_type')!r} is not supported; only 'llama' models are")
    if "architectures" in c and "LlamaForCausalLM" not in (c["architectures"] or []):
        raise UnsupportedHFConfigError(
            f"architectures {c['architectures']} are not supported; only LlamaForCausalLM is"
        )
    for flag in ("tie_word_embeddings", "attention_bias", "mlp_bias"):
        if c.get(flag, False):
            raise UnsupportedHFConfigError(f"{flag}=true is not supported; llamaops models have none")
    if c.get("hidden_act", "silu") != "silu":
        raise UnsupportedHFConfigError(f"hidden_act {c['hidden_act']!r} is not supported; only silu is")
    required = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    if missing := [key for key in required if key not in c]:
        raise UnsupportedHFConfigError(f"config.json lacks {', '.join(missing)}; it is not a complete Llama config")
    heads = c["num_attention_heads"]
    head_dim = c.get("head_dim") or c["hidden_size"] // heads
    if head_dim * heads != c["hidden_size"]:
        raise UnsupportedHFConfigError(
            f"head_dim {head_dim} x {heads} heads != hidden_size {c['hidden_size']};"
            " llamaops needs head_dim = hidden_size / heads"
        )
    max_positions = c.get("max_position_embeddings", _HF_DEFAULT_MAX_POSITIONS)
    theta, scaling = _rope_from_hf(c, max_positions)
    try:
        return ModelConfig(
            dim=c["hidden_size"],
            n_layers=c["num_hidden_layers"],
            n_heads=heads,
            n_kv_heads=c.get("num_key_value_heads") or heads,
            ffn_hidden_dim=c["intermediate_size"],
            vocab_size=c["vocab_size"],
            norm_eps=c.get("rms_norm_eps", _HF_DEFAULT_NORM_EPS),
            rope_theta=theta,
            rope_scaling=scaling,
            max_seq_len=max_positions,
        )
    except ValidationError as exc:
        raise UnsupportedHFConfigError(f"config.json is not a valid Llama config: {first_error(exc)}") from None


def _rope_from_hf(c: dict[str, Any], max_positions: int) -> tuple[float, RopeScaling | None]:
    # Same precedence as transformers: a legacy `rope_scaling` wins over `rope_parameters`.
    params = c.get("rope_scaling") or c.get("rope_parameters") or {}
    theta = params.get("rope_theta", c.get("rope_theta", _HF_DEFAULT_ROPE_THETA))
    if params.get("partial_rotary_factor", c.get("partial_rotary_factor", 1.0)) != 1.0:
        raise UnsupportedHFConfigError("partial_rotary_factor != 1 is not supported; llamaops rotates whole heads")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type == "default":
        return theta, None
    if rope_type != "llama3":
        raise UnsupportedHFConfigError(f"rope_type {rope_type!r} is not supported; only 'default' and 'llama3' are")
    try:
        scaling = RopeScaling(
            factor=params["factor"],
            low_freq_factor=params["low_freq_factor"],
            high_freq_factor=params["high_freq_factor"],
            original_max_seq_len=params.get("original_max_position_embeddings", max_positions),
        )
    except KeyError as exc:
        raise UnsupportedHFConfigError(f"llama3 rope scaling lacks {exc.args[0]}; config.json is incomplete") from None
    except ValidationError as exc:
        raise UnsupportedHFConfigError(f"invalid llama3 rope scaling: {first_error(exc)}") from None
    return theta, scaling


def hf_config_from_model_config(cfg: ModelConfig, dtype: str = "bfloat16") -> dict[str, Any]:
    """config.json for LlamaForCausalLM; `dtype` names the torch dtype of the exported weights."""
    s = cfg.rope_scaling
    rope_scaling = None
    if s is not None:
        rope_scaling = {
            "rope_type": "llama3",
            "factor": s.factor,
            "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_seq_len,
        }
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_hidden_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": rope_scaling,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": True,
        "bos_token_id": BOS_TOKEN_ID,
        "eos_token_id": EOS_TOKEN_IDS,
        "torch_dtype": dtype,  # transformers 4 / vLLM
        "dtype": dtype,  # transformers >= 4.56
    }


def hf_generation_config() -> dict[str, Any]:
    """Llama 3.1's published sampling defaults."""
    return {
        "bos_token_id": BOS_TOKEN_ID,
        "eos_token_id": EOS_TOKEN_IDS,
        "do_sample": True,
        "temperature": 0.6,
        "top_p": 0.9,
    }
