"""Hugging Face Llama checkpoints (LlamaForCausalLM layout) to and from llamaops models.

Besides the renaming, the q/k projections are permuted per head: llamaops rotates interleaved pairs
(2i, 2i+1), Hugging Face rotates half-split pairs (i, i + head_dim/2).
"""
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from llamaops.platform.config.model import ModelConfig

from .checkpoint import (
    CONFIG_FILE,
    ModelDirectoryError,
    atomic_directory,
    build_model,
    check_destination,
    indexed_weight_files,
    load_model,
    plan_shards,
    require_whole_model,
    save_model,
    shard_file,
    weight_slices,
)
from .hf_config import hf_config_from_model_config, hf_generation_config, model_config_from_hf
from .transformer import Transformer

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"

_TOP_LEVEL = {
    "tok_embeddings.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_PER_LAYER = {
    "attention.wq": "self_attn.q_proj",
    "attention.wk": "self_attn.k_proj",
    "attention.wv": "self_attn.v_proj",
    "attention.wo": "self_attn.o_proj",
    "feed_forward.w1": "mlp.gate_proj",
    "feed_forward.w3": "mlp.up_proj",
    "feed_forward.w2": "mlp.down_proj",
    "attention_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_LEVEL_BACK = {hf: meta for meta, hf in _TOP_LEVEL.items()}
_PER_LAYER_BACK = {hf: meta for meta, hf in _PER_LAYER.items()}
_META_LAYER = re.compile(r"layers\.(\d+)\.(.+)\.weight")
_HF_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)\.weight")


def hf_name(name: str) -> str:
    """Meta name -> Hugging Face name."""
    if name in _TOP_LEVEL:
        return _TOP_LEVEL[name]
    if (m := _META_LAYER.fullmatch(name)) and m[2] in _PER_LAYER:
        return f"model.layers.{m[1]}.{_PER_LAYER[m[2]]}.weight"
    raise KeyError(f"no Hugging Face name for {name!r}")


def meta_name(name: str) -> str:
    """Hugging Face name -> Meta name."""
    if name in _TOP_LEVEL_BACK:
        return _TOP_LEVEL_BACK[name]
    if (m := _HF_LAYER.fullmatch(name)) and m[2] in _PER_LAYER_BACK:
        return f"layers.{m[1]}.{_PER_LAYER_BACK[m[2]]}.weight"
    raise KeyError(f"no llamaops name for {name!r}")


def _rotary_heads(cfg: ModelConfig, name: str) -> int | None:
    if name.endswith("attention.wq.weight"):
        return cfg.n_heads
    if name.endswith("attention.wk.weight"):
        return cfg.n_kv_heads
    return None


def _permute(w: torch.Tensor, heads: int, head_dim: int, to_hf: bool) -> torch.Tensor:
    if w.shape[0] != heads * head_dim:
        return w  # wrong shape: leave it for build_model's shape check to report
    split = (heads, head_dim // 2, 2) if to_hf else (heads, 2, head_dim // 2)
    return w.reshape(*split, -1).transpose(1, 2).reshape(w.shape).contiguous()


def to_hf_tensor(cfg: ModelConfig, name: str, tensor: torch.Tensor) -> tuple[str, torch.Tensor]:
    if (heads := _rotary_heads(cfg, name)) is not None:
        tensor = _permute(tensor, heads, cfg.head_dim, to_hf=True)
    return hf_name(name), tensor


def from_hf_tensor(cfg: ModelConfig, name: str, tensor: torch.Tensor) -> tuple[str, torch.Tensor]:
    name = meta_name(name)
    if (heads := _rotary_heads(cfg, name)) is not None:
        tensor = _permute(tensor, heads, cfg.head_dim, to_hf=False)
    return name, tensor


# --- export ---------------------------------------------------------------------------------------


def save_hf(
    model: Transformer,
    dst: Path,
    max_shard_bytes: int = 5 * 2**30,
    dtype: torch.dtype = torch.bfloat16,
    overwrite: bool = False,
    tokenizer: bool = True,
) -> Path:
    """Write `model` as a complete Hugging Face Llama directory: config, generation config, sharded
    safetensors + index, and (unless tokenizer=False) the Llama 3.1 tokenizer files."""
    require_whole_model(model)
    state = model.state_dict()
    return _write_hf(model.cfg, {n: t.numel() for n, t in state.items()}, lambda n: state[n].detach(), dst,
                     max_shard_bytes, dtype, overwrite, tokenizer)


def _write_hf(cfg: ModelConfig, numels: dict[str, int], read: Callable[[str], torch.Tensor], dst: Path,
              max_shard_bytes: int, dtype: torch.dtype, overwrite: bool, tokenizer: bool) -> Path:
    """The Hugging Face directory of the tensors `numels` names, each `read` when its shard is
    written: at most one shard of the model is in memory."""
    if max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
    shards = plan_shards({name: numel * dtype.itemsize for name, numel in numels.items()}, max_shard_bytes)
    dtype_name = str(dtype).removeprefix("torch.")
    with atomic_directory(dst, overwrite) as tmp:
        _write_json(tmp / "config.json", hf_config_from_model_config(cfg, dtype_name))
        _write_json(tmp / "generation_config.json", hf_generation_config())
        weight_map, total = {}, 0
        for i, names in enumerate(shards, start=1):
            file = shard_file(i, len(shards))
            tensors = dict(to_hf_tensor(cfg, n, read(n).to("cpu", dtype)) for n in names)
            save_file({n: t.contiguous() for n, t in tensors.items()}, tmp / file, metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(tensors, file))
            total += sum(t.numel() * t.element_size() for t in tensors.values())
            del tensors
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        _write_json(tmp / INDEX_FILE, index)
        if tokenizer:
            from llamaops.platform.tokenizer.hf_export import write_hf_tokenizer_files

            write_hf_tokenizer_files(tmp)
    return Path(dst)


def export_hf(
    src: Path,
    dst: Path,
    max_shard_bytes: int = 5 * 2**30,
    dtype: torch.dtype = torch.bfloat16,
    overwrite: bool = False,
    tokenizer: bool = True,
) -> Path:
    """Native model directory `src` -> Hugging Face model directory `dst`, one output shard in
    memory at a time (a serving pod's init container exports 405B within its memory limit)."""
    check_destination(dst, overwrite)
    with weight_slices(src) as (cfg, slices):
        numels = {name: math.prod(tensor.get_shape()) for name, tensor in slices.items()}
        return _write_hf(cfg, numels, lambda name: slices[name][...], dst, max_shard_bytes, dtype, overwrite,
                         tokenizer)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


# --- import ---------------------------------------------------------------------------------------


def read_hf_config(src: Path) -> ModelConfig:
    src = Path(src)
    if not src.is_dir():
        raise ModelDirectoryError(f"{src} is not a directory; pass a Hugging Face model directory")
    path = src / "config.json"
    if not path.is_file():
        raise ModelDirectoryError(f"{path} is missing; {src} is not a Hugging Face model directory")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirectoryError(f"{path} is unreadable or corrupt ({exc})") from None
    if not isinstance(config, dict):
        raise ModelDirectoryError(f"{path} is not a JSON object; it is not a Hugging Face config")
    return model_config_from_hf(config)


def load_hf(src: Path, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> Transformer:
    """A llamaops Transformer from a Hugging Face Llama directory, read one shard at a time."""
    src = Path(src)
    cfg = read_hf_config(src)
    state: dict[str, torch.Tensor] = {}
    for path in _weight_files(src):
        try:
            with safe_open(path, framework="pt", device=str(device)) as f:
                for key in f.keys():
                    if key.endswith("rotary_emb.inv_freq"):  # a buffer some old exports saved
                        continue
                    _check_known(path, key)
                    name, tensor = from_hf_tensor(cfg, key, f.get_tensor(key))
                    state[name] = tensor if dtype is None else tensor.to(dtype)
        except (SafetensorError, OSError) as exc:
            raise ModelDirectoryError(f"{path} is corrupt ({exc}); download it again") from None
    return build_model(cfg, state, str(src), device)


def load_model_or_hf(directory: Path, dtype: torch.dtype | None = None) -> Transformer:
    """The model in `directory`, native (its manifest checked) or Hugging Face Llama."""
    directory = Path(directory)
    if (directory / CONFIG_FILE).is_file():
        return load_model(directory, dtype=dtype)
    if (directory / "config.json").is_file():
        return load_hf(directory, dtype=dtype)
    what = "does not exist" if not directory.exists() else f"holds neither {CONFIG_FILE} nor a Hugging Face config.json"
    raise ModelDirectoryError(f"model directory {directory} {what}")


def import_hf(src: Path, dst: Path, overwrite: bool = False) -> Path:
    """Hugging Face Llama directory `src` -> native model directory `dst` (weights keep their dtype)."""
    check_destination(dst, overwrite)
    return save_model(load_hf(src), dst, overwrite)


def _check_known(path: Path, key: str) -> None:
    try:
        meta_name(key)
    except KeyError:
        raise ModelDirectoryError(
            f"{path}: unexpected tensor {key!r}; only plain LlamaForCausalLM weights can be imported"
        ) from None


def _weight_files(src: Path) -> list[Path]:
    if (src / INDEX_FILE).is_file():
        return indexed_weight_files(src, INDEX_FILE)
    if (src / SINGLE_FILE).is_file():
        return [src / SINGLE_FILE]
    raise ModelDirectoryError(
        f"{src} has neither {SINGLE_FILE} nor {INDEX_FILE}; only safetensors checkpoints can be imported"
    )
