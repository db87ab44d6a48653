"""The model to compare with: a registry reference (models:/NAME@ALIAS, models:/NAME/VERSION), an
s3:// or file:// artifact, or a local model directory.

A registry reference that names no model yet (the first run of a lifecycle has no production
model) is an error, unless the caller allows it: then the evaluation goes on without comparison
and the report says why.
"""
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import EvalInputError


@dataclass(frozen=True)
class Baseline:
    reference: str  # as the user gave it
    source: str | None  # the model's directory or artifact URI; None when it is missing (and allowed to be)
    missing: str | None = None  # why there is no baseline

    @contextlib.contextmanager
    def directory(self) -> Iterator[Path]:
        assert self.source is not None
        if self.source.startswith(("s3://", "file://")):
            from llamaops.platform.store import fetched

            with fetched(self.source) as folder:
                yield Path(folder)
        else:
            yield Path(self.source)


def resolve_baseline(reference: str, tracking_uri: str | None, optional: bool) -> Baseline:
    if reference.startswith("models:"):
        from llamaops.platform.tracking import model_uri_for
        from llamaops.platform.tracking.connection import TrackingError

        try:
            source = model_uri_for(reference, tracking_uri)
        except TrackingError as exc:
            if optional:
                return Baseline(reference, None, str(exc))
            raise EvalInputError(
                f"cannot compare with {reference}: {exc}; pass --compare-optional to evaluate without comparison"
            ) from None
    else:
        source = reference
    if source.startswith(("s3://", "file://")):
        from llamaops.platform.store import ArtifactError, is_complete

        try:
            complete = is_complete(source)
        except ArtifactError as exc:
            raise EvalInputError(f"cannot compare with {reference}: {exc}") from None
        if not complete:
            raise EvalInputError(f"cannot compare with {reference}: model artifact {source} does not exist or is unfinished")
    elif not Path(source).is_dir():
        raise EvalInputError(f"cannot compare with {reference}: no such model directory")
    return Baseline(reference, source)
