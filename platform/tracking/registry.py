"""Model registry on MLflow: versions point at artifact URIs; weights are never copied.

A version's `source` is the model artifact's own URI (s3:// or file://), and aliases
(candidate, production, ...) say which version a deployment should use.
"""
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..store import ArtifactError, is_complete
from .connection import TrackingError, redacted, resolve_tracking_uri, tracking_client

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

# A version's gated metrics, written by the register step (deploy/registration.py) as tags.
METRIC_TAG = "llamaops.metric."
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,255}$")


def _check_name(name: str) -> None:
    if not _MODEL_NAME.match(name):
        raise TrackingError(f"model name '{name}' must be letters, digits, '_', '.' or '-'")


def register_model(
    name: str, source_uri: str, run_id: str | None = None, alias: str | None = "candidate",
    tracking_uri: str | None = None,
) -> str:
    """Register the complete model artifact at `source_uri` as a new version of `name`; return the version."""
    _check_name(name)
    if not source_uri.startswith(("s3://", "file://")):
        raise ArtifactError(f"model source '{source_uri}' must be an s3:// or file:// artifact URI")
    resolved = resolve_tracking_uri(tracking_uri)
    if source_uri.startswith("file://") and resolved.startswith(("http://", "https://")):
        raise TrackingError(
            f"tracking server {redacted(resolved)} cannot register the local artifact {source_uri}; "
            "publish the model to s3:// or use a sqlite:/// tracking URI"
        )
    if not is_complete(source_uri):
        raise ArtifactError(f"model artifact {source_uri} does not exist or is unfinished; run its stage first")
    client = tracking_client(resolved)
    from mlflow.exceptions import MlflowException

    if _registered_model(client, name) is None:
        try:
            client.create_registered_model(name)
        except MlflowException:  # created concurrently by another process
            if _registered_model(client, name) is None:
                raise
    version = client.create_model_version(name, source=source_uri, run_id=run_id, tags={"llamaops.source": source_uri})
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def set_alias(name: str, version: str | int, alias: str, tracking_uri: str | None = None) -> None:
    """Point `alias` of model `name` at `version` (moving it from any other version)."""
    client = tracking_client(tracking_uri)
    _version(client, name, str(version))
    client.set_registered_model_alias(name, alias, str(version))


def model_uri_for(name_or_models_uri: str, tracking_uri: str | None = None) -> str:
    """The artifact URI behind `models:/name@alias`, `models:/name/3` or `name` (its latest version).

    s3:// and file:// URIs are returned unchanged, so callers can accept either form.
    """
    if name_or_models_uri.startswith(("s3://", "file://")):
        return name_or_models_uri
    client = tracking_client(tracking_uri)
    match = _MODELS_URI.match(name_or_models_uri)
    if match:
        name = match["name"]
        if match["alias"]:
            return _source(_by_alias(client, name, match["alias"]))
        return _source(_version(client, name, match["version"]))
    if name_or_models_uri.startswith("models:"):
        raise TrackingError(
            f"model URI '{name_or_models_uri}' must look like models:/NAME@ALIAS or models:/NAME/VERSION"
        )
    _check_name(name_or_models_uri)
    versions = client.search_model_versions(f"name = '{name_or_models_uri}'")
    if not versions:
        raise TrackingError(f"registered model '{name_or_models_uri}' has no versions; register one first")
    return _source(max(versions, key=lambda v: int(v.version)))


def _registered_model(client: "MlflowClient", name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        return None


def _version(client: "MlflowClient", name: str, version: str) -> "ModelVersion":
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, version)
    except MlflowException:
        raise TrackingError(f"registered model '{name}' has no version {version}") from None


def _by_alias(client: "MlflowClient", name: str, alias: str) -> "ModelVersion":
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        raise TrackingError(f"registered model '{name}' has no alias '{alias}'") from None


def _source(version: "ModelVersion") -> str:
    """The artifact URI a version points at (MLflow allows a version without one)."""
    if version.source is None:
        raise TrackingError(f"registered model '{version.name}' version {version.version} has no source URI; "
                            "register its model artifact again")
    return version.source


def version_metrics(version: "ModelVersion") -> dict[str, float]:
    """The gated metrics a version was registered with (its METRIC_TAG tags), by name."""
    return {k.removeprefix(METRIC_TAG): float(v) for k, v in sorted(version.tags.items()) if k.startswith(METRIC_TAG)}


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    aliases: list[str]
    source: str | None  # the model artifact's URI (None for a version registered without one)
    created_ms: int
    metrics: dict[str, float] = field(default_factory=dict)  # the gated metrics it was registered with


def list_versions(tracking_uri: str | None = None, name: str | None = None) -> list[RegisteredVersion]:
    """Every version of every registered model (or of `name`), by name then version."""
    client = tracking_client(tracking_uri)
    if name is None:
        models = _all_registered_models(client)
    else:
        _check_name(name)
        models = [_registered_model(client, name)]
        if models[0] is None:
            raise TrackingError(f"no registered model '{name}'; `llamaops model list` shows those there are")
    rows = []
    for model in models:
        aliases: dict[str, list[str]] = {}  # version -> aliases (version searches leave them out)
        for alias, version in model.aliases.items():
            aliases.setdefault(str(version), []).append(alias)
        for v in client.search_model_versions(f"name = '{model.name}'"):
            rows.append(RegisteredVersion(model.name, str(v.version), sorted(aliases.get(str(v.version), [])), v.source,
                                          int(v.creation_timestamp), version_metrics(v)))
    return sorted(rows, key=lambda row: (row.name, int(row.version)))


def _all_registered_models(client: "MlflowClient") -> list:
    models, token = [], None
    while True:
        page = client.search_registered_models(page_token=token)
        models += list(page)
        token = page.token
        if not token:
            return sorted(models, key=lambda model: model.name)
