"""Load a model to serve from `models:/NAME@alias`, a registered name, s3://, file:// or a local directory.

A directory holding config.json is read as a Hugging Face export, otherwise as a native checkpoint.
"""
from pathlib import Path

import torch

from llamaops.platform.model import Transformer


def _load_directory(path: Path, dtype: torch.dtype | None) -> Transformer:
    from llamaops.platform.model.checkpoint import ModelDirectoryError, load_model
    from llamaops.platform.model.hf import load_hf

    if not path.is_dir():
        raise ModelDirectoryError(f"model directory {path} does not exist; pass a checkpoint directory, s3:// or models:/ URI")
    return load_hf(path, dtype=dtype) if (path / "config.json").exists() else load_model(path, dtype=dtype)


def load_serving_model(source: str, dtype: torch.dtype | None = None) -> Transformer:
    if source.startswith(("s3://", "file://", "models:/")):
        from llamaops.platform.store.uri import fetched
        from llamaops.platform.tracking.registry import model_uri_for

        uri = model_uri_for(source)
        with fetched(uri) as path:
            model = _load_directory(Path(path), dtype)
    else:
        model = _load_directory(Path(source), dtype)
    return model.eval()
