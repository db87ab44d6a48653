"""Find and load the model to serve: a registry alias, an s3:// or file:// checkpoint, or a
Hugging Face-layout directory."""
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import CONFIG_FILE, ModelDirectoryError, load_model
from llamaops.platform.model.hf import load_hf
from llamaops.platform.model.precision import cpu_compute_dtype, no_bf16_note
from llamaops.platform.store import ArtifactError, fetched
from llamaops.platform.store.uri import local_path


log = logging.getLogger("llamaops.serve")


class ModelNotFound(ValueError):
    """The model reference resolves to nothing servable."""


@dataclass
class LoadedModel:
    model: Transformer
    name: str  # what clients pass as "model"
    source: str  # where the weights came from


def served_name(reference: str) -> str:
    """A client-facing model name: the registry name, or the checkpoint's last path component."""
    if reference.startswith("models:/"):
        return reference.removeprefix("models:/").split("@")[0].split("/")[0]
    return reference.rstrip("/").rsplit("/", 1)[-1] or reference


def load_for_serving(
    reference: str,
    *,
    tracking_uri: str | None = None,
    dtype: torch.dtype | None = None,
    name: str | None = None,
    device: str = "cpu",
) -> LoadedModel:
    source = reference
    is_path = "/" in reference or Path(reference).exists()
    if reference.startswith("models:") or not is_path:
        from llamaops.platform.tracking.registry import model_uri_for

        try:
            source = model_uri_for(reference, tracking_uri)
        except Exception as exc:  # MLflow's own errors name the missing model or alias
            raise ModelNotFound(f"model '{reference}' is not in the registry: {exc}") from None
    try:
        if source.startswith("s3://"):
            with fetched(source) as directory:
                model = _load_directory(directory, dtype)
        else:
            path = local_path(source) if source.startswith("file://") else Path(source).resolve()
            model = _load_directory(path, dtype)
    except (ArtifactError, ModelDirectoryError) as exc:
        raise ModelNotFound(str(exc)) from None
    if dtype is None and device == "cpu":  # "as stored", unless stored in bf16 for a CPU without it
        stored = next(model.parameters()).dtype
        if cpu_compute_dtype(stored) != stored:
            log.warning("%s: serving the bf16 weights in fp32", no_bf16_note())
            model = model.float()
    return LoadedModel(model.to(device).eval(), name or served_name(reference), source)


def _load_directory(directory: Path, dtype: torch.dtype | None) -> Transformer:
    if (directory / CONFIG_FILE).is_file():
        return load_model(directory, dtype=dtype)
    if (directory / "config.json").is_file():
        return load_hf(directory, dtype=dtype)
    what = "does not exist" if not directory.exists() else f"holds neither {CONFIG_FILE} nor a Hugging Face config.json"
    raise ModelNotFound(f"model directory {directory} {what}")
