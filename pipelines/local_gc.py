"""`llamaops gc`: removes old local runs (their record, run folder and file:// artifacts), never one
that still runs, and never the artifacts of a model version the run's registry holds."""
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from .runs import RunRecord, list_runs, run_dir, runs_dir


@dataclass(frozen=True)
class RunCleanup:
    run_id: str
    paths: list[Path] = field(default_factory=list)  # what goes
    bytes: int = 0
    kept_because: str | None = None  # what stays, and why: registered models come from it


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _local_artifacts(record: RunRecord) -> Path | None:
    parsed = urlparse(record.artifact_root)
    return Path(parsed.path) / record.run_id if parsed.scheme == "file" else None


def _registered_sources(tracking_uri: str) -> list[tuple[Path, str]] | str:
    """Every file:// source in the registry at `tracking_uri` with its version's label, or why the
    registry cannot say."""
    try:
        from llamaops.platform.tracking import tracking_client

        client = tracking_client(tracking_uri)
        versions = client.search_model_versions("")
        aliases = {}  # (name, version) -> aliases; search results do not carry them
        for name in {version.name for version in versions}:
            for alias, number in client.get_registered_model(name).aliases.items():
                aliases.setdefault((name, str(number)), []).append(alias)
    except Exception as error:  # an unreachable or broken registry: keep what it might still reference
        return f"its registry at {tracking_uri} cannot be read ({type(error).__name__})"
    sources = []
    for version in versions:
        source = urlparse(version.source or "")
        if source.scheme == "file":
            named = aliases.get((version.name, str(version.version)))
            sources.append((Path(source.path), f"{version.name} version {version.version}"
                            + (f" ({', '.join(sorted(named))})" if named else "")))
    return sources


def _held(sources: list[tuple[Path, str]], artifacts: Path) -> dict[Path, list[str]]:
    """The run's artifact folders registered versions come from: folder -> their labels."""
    held: dict[Path, list[str]] = {}
    for path, label in sources:
        if path.is_relative_to(artifacts) and path != artifacts:
            held.setdefault(artifacts / path.relative_to(artifacts).parts[0], []).append(label)
    return held


def plan_cleanup(keep_last: int, older_than_days: float | None = None, now: float | None = None) -> list[RunCleanup]:
    """What `gc` would do: every run but the newest `keep_last` (and, with `older_than_days`, only
    runs that ended before that), oldest first. A run a registered model version comes from keeps
    that model's folder and its record; the rest goes."""
    now = time.time() if now is None else now
    finished = [record for record in list_runs() if record.shown_status != "running"]
    candidates = finished[: max(len(finished) - keep_last, 0)]
    if older_than_days is not None:
        candidates = [r for r in candidates if (r.ended_at or r.started_at) < now - older_than_days * 86400]
    registries: dict[str, list[tuple[Path, str]] | str] = {}  # each registry read once
    plans = []
    for record in candidates:
        artifacts = _local_artifacts(record)
        held: dict[Path, list[str]] = {}
        paths: list[Path] = []
        if artifacts is not None and artifacts.is_dir():
            if record.tracking_uri not in registries:
                registries[record.tracking_uri] = _registered_sources(record.tracking_uri)
            sources = registries[record.tracking_uri]
            if isinstance(sources, str):
                plans.append(RunCleanup(record.run_id, kept_because=sources))
                continue
            held = _held(sources, artifacts)
            paths = sorted(child for child in artifacts.iterdir() if child not in held) if held else [artifacts]
        if run_dir(record.run_id).exists():
            paths.append(run_dir(record.run_id))
        if not held:
            paths.append(runs_dir() / f"{record.run_id}.json")
        kept = "; ".join(f"{folder.name} ({', '.join(names)})" for folder, names in held.items()) or None
        plans.append(RunCleanup(record.run_id, paths, sum(_size(p) for p in paths), kept))
    return plans


def apply_cleanup(plans: list[RunCleanup]) -> int:
    """Removes what the plans name, the record last (a run half-removed is still listed); returns bytes freed."""
    freed = 0
    for plan in plans:
        for path in plan.paths:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        freed += plan.bytes
    return freed
