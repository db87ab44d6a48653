"""Where llamaops keeps local state: LLAMAOPS_HOME (default ~/.llamaops)."""
import os
from pathlib import Path


def home() -> Path:
    path = Path(os.environ.get("LLAMAOPS_HOME", Path.home() / ".llamaops")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


ARTIFACT_ROOT_ENV = "LLAMAOPS_ARTIFACT_ROOT"  # a cluster's default root (the chart's platform ConfigMap)


def run_uri(run_id: str, stage: str, root: str | None = None) -> str:
    """The artifact URI of one stage of one pipeline run, under `root` (default: LLAMAOPS_ARTIFACT_ROOT,
    else file://HOME/artifacts)."""
    base = root or os.environ.get(ARTIFACT_ROOT_ENV) or (home() / "artifacts").as_uri()
    return f"{base.rstrip('/')}/{run_id}/{stage}"
