"""Where the MLflow tracking store is, whether it answers, and a client bound to it."""
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from ..store import home

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_HEALTH_TIMEOUT_S = 3.0


class TrackingError(ValueError):
    """The MLflow tracking store is misconfigured, unreachable, or lacks a run or model asked for."""


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """`explicit`, else MLFLOW_TRACKING_URI, else sqlite under LLAMAOPS_HOME."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / 'mlflow.db'}"


def redacted(uri: str) -> str:
    """`uri` without any user:password part, for messages."""
    parsed = urlparse(uri)
    if parsed.password is None and parsed.username is None:
        return uri
    # Only the user:password@ that starts the netloc goes: host and port stay as written, and a URI
    # without a host (postgresql://user:pw@/db?host=/socket) has none to keep.
    return uri.replace(parsed.netloc, parsed.netloc.rpartition("@")[2], 1)


def sqlite_path(uri: str) -> Path:
    """The database file of a sqlite:///relative or sqlite:////absolute tracking URI."""
    return Path(uri[len("sqlite:///"):]).resolve()


def check_tracking(uri: str) -> None:
    """Fail fast with one line if the tracking store at `uri` cannot be used."""
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        _check_server(uri)
    elif scheme == "sqlite":
        if not uri.startswith("sqlite:///"):
            raise TrackingError(f"tracking URI '{uri}' must look like sqlite:///path/to/mlflow.db")
        folder = sqlite_path(uri).parent
        if not folder.is_dir():
            raise TrackingError(f"tracking database folder {folder} does not exist; create it or pick another path")
    elif scheme not in _DATABASE_SCHEMES:
        raise TrackingError(
            f"unsupported tracking URI '{redacted(uri)}'; use http(s)://host:port or sqlite:///path/to/mlflow.db"
        )


def _check_server(uri: str) -> None:
    health = f"{uri.rstrip('/')}/health"
    try:
        with urllib.request.urlopen(health, timeout=_HEALTH_TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingError(
            f"MLflow tracking server {redacted(uri)} does not answer ({reason}); "
            "start it or set MLFLOW_TRACKING_URI to a reachable server"
        ) from None
    if status != 200:
        raise TrackingError(f"{redacted(uri)} answered /health with HTTP {status}; is it an MLflow tracking server?")


def _configure_mlflow_environment() -> None:
    # mlflow's HTTP defaults (7 retries, backoff factor 2) turn an outage into minutes.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def tracking_client(uri: str | None = None) -> "MlflowClient":
    """A checked MlflowClient for tracking and the model registry at `uri` (resolved as above)."""
    resolved = resolve_tracking_uri(uri)
    check_tracking(resolved)
    _configure_mlflow_environment()
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=resolved, registry_uri=resolved)
