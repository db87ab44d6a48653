"""Find and load the model to serve: a registry alias, an s3:// or file:// checkpoint, or a
Hugging Face-layout directory."""
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import ModelDirectoryError
from llamaops.platform.model.hf import load_model_or_hf
from llamaops.platform.model.precision import cpu_compute_dtype, no_bf16_note
from llamaops.platform.tracking.model_reference import ModelReferenceError, model_directory, model_source

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("llamaops.serve")


class ModelNotFound(ValueError):
    """The model reference resolves to nothing servable."""


@dataclass
class LoadedModel:
    model: Transformer
    name: str  # what clients pass as "model"
    source: str  # where the weights came from
    engine: "Engine | None" = None  # built with the model (a tensor-parallel rank's); else the server builds one


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
    """The model `reference` names (platform/tracking/model_reference.py), on `device`."""
    try:
        source = model_source(reference, tracking_uri)
        with model_directory(source) as directory:
            model = load_model_or_hf(directory, dtype)
    except (ModelReferenceError, ModelDirectoryError) as exc:
        raise ModelNotFound(str(exc)) from None
    if dtype is None and device == "cpu":  # "as stored", unless stored in bf16 for a CPU without it
        stored = next(model.parameters()).dtype
        if cpu_compute_dtype(stored) != stored:
            log.warning("%s: serving the bf16 weights in fp32", no_bf16_note())
            model = model.float()
    return LoadedModel(model.to(device).eval(), name or served_name(reference), source)
