"""The native llamaops model directory: `llamaops_model.json` (the ModelConfig) + `model.safetensors`
(the state dict in Meta's names). Directories are written atomically: a temp sibling, then a rename.
"""
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.store.atomic import replace_directory

from .transformer import Transformer

CONFIG_FILE = "llamaops_model.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "llamaops-model"
FORMAT_VERSION = 1


class ModelDirectoryError(ValueError):
    """A model directory is missing, unreadable or does not match its config; the message says what to do."""


def check_destination(dst: Path, overwrite: bool = False) -> Path:
    """Fail fast, before any work, when `dst` cannot become a new model directory."""
    dst = Path(dst)
    if dst.exists() and not dst.is_dir():
        raise ModelDirectoryError(f"{dst} exists and is not a directory; choose another destination")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise ModelDirectoryError(
            f"{dst} already exists and is not empty; choose another destination or remove it first"
        )
    return dst


@contextmanager
def atomic_directory(dst: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temp directory next to `dst` and rename it to `dst` once the block succeeds;
    on failure it is removed and `dst` is untouched."""
    with replace_directory(check_destination(dst, overwrite)) as tmp:
        yield tmp


def save_model(model: Transformer, directory: Path, overwrite: bool = False) -> Path:
    """Write `model` as a native model directory and return its path."""
    require_whole_model(model)
    directory = Path(directory)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.cfg.model_dump(mode="json")}
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    with atomic_directory(directory, overwrite) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(header, indent=2) + "\n")
        save_file(tensors, tmp / WEIGHTS_FILE, metadata={"format": "pt"})
    return directory


def read_model_config(directory: Path) -> ModelConfig:
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelDirectoryError(
            f"{directory} is not a directory; pass a llamaops model directory"
            " (written by save_model or `llamaops model import-hf`)"
        )
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ModelDirectoryError(f"{path} is missing; {directory} is not a llamaops model directory")
    try:
        header = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirectoryError(f"{path} is unreadable or corrupt ({exc}); re-create the model directory") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or "config" not in header:
        raise ModelDirectoryError(f"{path} is not a llamaops model config; re-create the model directory")
    if header.get("format_version") != FORMAT_VERSION:
        raise ModelDirectoryError(
            f"{path} has format version {header.get('format_version')!r}, this llamaops reads {FORMAT_VERSION};"
            " use a matching llamaops version"
        )
    try:
        return ModelConfig.model_validate(header["config"])
    except ValidationError as exc:
        raise ModelDirectoryError(f"{path}: invalid model config: {first_error(exc)}") from None


def load_model(directory: Path, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> Transformer:
    """Read a native model directory; weights keep their stored dtype unless `dtype` is given."""
    directory = Path(directory)
    cfg = read_model_config(directory)
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise ModelDirectoryError(f"{path} is missing; re-create the model directory")
    state: dict[str, torch.Tensor] = {}
    try:
        with safe_open(path, framework="pt", device=str(device)) as f:
            for name in f.keys():
                tensor = f.get_tensor(name)
                state[name] = tensor if dtype is None else tensor.to(dtype)
    except (SafetensorError, OSError) as exc:
        raise ModelDirectoryError(f"{path} is corrupt ({exc}); re-create the model directory") from None
    return build_model(cfg, state, str(path), device)


def build_model(
    cfg: ModelConfig, state: dict[str, torch.Tensor], source: str, device: torch.device | str
) -> Transformer:
    """A Transformer holding exactly `state` (no copies), after checking its names and shapes against `cfg`."""
    with torch.device("meta"):
        model = Transformer(cfg)
    expected = model.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ModelDirectoryError(f"{source}: tensors do not match the model config ({what}); re-create the model")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ModelDirectoryError(
                f"{source}: {name} has shape {list(tensor.shape)} but the config needs"
                f" {list(expected[name].shape)}; the weights and config do not belong together"
            )
    model.load_state_dict(state, assign=True)
    model.init_buffers(device)
    return model


def first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


def require_whole_model(model: Transformer) -> None:
    parts = (model.tok_embeddings, model.norm, model.output)
    if any(part is None for part in parts) or len(model.layers) != model.cfg.n_layers:
        raise ValueError("only a whole model can be saved, not a pipeline stage; gather the stages first")
