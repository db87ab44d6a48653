"""One way to name a model, for every command that reads one: models:/NAME@ALIAS or
models:/NAME/VERSION (a registry version), a registered NAME (its latest version), an s3:// or
file:// artifact, or a local model directory (native or Hugging Face)."""
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llamaops.platform.store import ArtifactError, fetched

from .connection import TrackingError, resolve_tracking_uri, sqlite_path

MODEL_REFERENCE_HELP = ("models:/NAME@ALIAS, models:/NAME/VERSION, a registered NAME, an s3:// or file:// artifact, "
                        "or a model directory (native or Hugging Face)")


class ModelReferenceError(ValueError):
    """A model reference that names nothing readable."""

    def __init__(self, reference: str, reason: str):
        super().__init__(reference, reason)  # both in args: it pickles (e.g. out of a Ray worker)
        self.reference, self.reason = reference, reason

    def __str__(self) -> str:
        return f"model {self.reference}: {self.reason}"


def _names_registry(reference: str) -> bool:
    """models:/..., or a bare name that is no path here."""
    if reference.startswith("models:"):
        return True
    return "/" not in reference and not reference.startswith(".") and not Path(reference).exists()


def model_source(reference: str, tracking_uri: str | None = None) -> str:
    """The artifact URI or directory behind `reference`, registry references resolved."""
    if not _names_registry(reference):
        return reference
    tracking = resolve_tracking_uri(tracking_uri)
    if tracking.startswith("sqlite:") and not sqlite_path(tracking).is_file():  # no registry: make none
        if not reference.startswith("models:"):
            raise ModelReferenceError(reference, f"does not exist; pass {MODEL_REFERENCE_HELP}")
        raise ModelReferenceError(reference, f"there is no model registry at {tracking}; pass --tracking-uri "
                                             "or set MLFLOW_TRACKING_URI")
    from .registry import model_uri_for

    try:
        return model_uri_for(reference, tracking_uri)
    except TrackingError as error:
        hint = "" if reference.startswith("models:") else "; no such model directory either"
        raise ModelReferenceError(reference, f"{error}{hint}") from None


@contextlib.contextmanager
def model_directory(reference: str, tracking_uri: str | None = None) -> Iterator[Path]:
    """A local directory holding the model `reference` names (an s3:// artifact is fetched)."""
    source = model_source(reference, tracking_uri)
    with _opened_artifact(reference, source, fetched) as directory:
        yield directory or _local_directory(reference, source)


@contextlib.contextmanager
def model_in_parts(source: str) -> Iterator[tuple[Path, Callable[[str, int, int], None] | None]]:
    """`model_directory` for a reader of parts of the weights (a tensor-parallel rank), given the
    resolved `source`: an s3:// artifact's weights are fetched block by block as they are read
    (checkpoint.model_in_part), never whole."""
    from llamaops.platform.model.checkpoint import model_in_part  # torch: not for the CLI's fast commands

    with _opened_artifact(source, source, model_in_part) as opened:
        yield opened or (_local_directory(source, source), None)


@contextlib.contextmanager
def _opened_artifact(reference: str, source: str, open_artifact: Callable) -> Iterator[Any]:
    """`open_artifact(source)` for an s3:// or file:// artifact, its failure one line naming
    `reference`; None for a local path."""
    if not source.startswith(("s3://", "file://")):
        yield None
        return
    with contextlib.ExitStack() as stack:
        try:
            opened = stack.enter_context(open_artifact(source))
        except ArtifactError as error:
            raise ModelReferenceError(reference, str(error)) from None
        yield opened


def _local_directory(reference: str, source: str) -> Path:
    directory = Path(source)
    if not directory.is_dir():
        raise ModelReferenceError(reference, f"does not exist; pass {MODEL_REFERENCE_HELP}")
    return directory
