"""Where llamaops keeps local state: LLAMAOPS_HOME (default ~/.llamaops)."""
import os
from pathlib import Path


def home() -> Path:
    path = Path(os.environ.get("LLAMAOPS_HOME", Path.home() / ".llamaops")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_uri(run_id: str, stage: str, root: str | None = None) -> str:
    """The artifact URI of one stage of one pipeline run, under `root` (default: file://HOME/artifacts)."""
    base = root or (home() / "artifacts").as_uri()
    return f"{base.rstrip('/')}/{run_id}/{stage}"
