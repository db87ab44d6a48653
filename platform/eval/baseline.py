"""The model to compare with: a registry reference (models:/NAME@ALIAS, models:/NAME/VERSION), an
s3:// or file:// artifact, or a local model directory.

A registry reference that names no model yet (the first run of a lifecycle has no production
model) is an error, unless the caller allows it: then the evaluation goes on without comparison
and the report says why.
"""
from dataclasses import dataclass

from .errors import EvalInputError


@dataclass(frozen=True)
class Baseline:
    reference: str  # as the user gave it
    source: str | None  # the model's directory or artifact URI; None when it is missing (and allowed to be)
    missing: str | None = None  # why there is no baseline


def resolve_baseline(reference: str, tracking_uri: str | None, optional: bool) -> Baseline:
    from llamaops.platform.tracking.model_reference import ModelReferenceError, model_directory, model_source

    try:
        source = model_source(reference, tracking_uri)
    except ModelReferenceError as exc:
        if optional and reference.startswith("models:"):
            return Baseline(reference, None, exc.reason)
        hint = "; pass --compare-optional to evaluate without comparison" if reference.startswith("models:") else ""
        raise EvalInputError(f"cannot compare with {reference}: {exc.reason}{hint}") from None
    try:
        with model_directory(source):  # it exists and is complete, before the candidate is evaluated
            pass
    except ModelReferenceError as exc:
        raise EvalInputError(f"cannot compare with {reference}: {exc.reason}") from None
    return Baseline(reference, source)
