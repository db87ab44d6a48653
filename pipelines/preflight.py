"""Checks before any compute of a local run; each failure is one line saying what to do."""
from llamaops.platform.config import Preset
from llamaops.platform.data.sources import check_sources
from llamaops.platform.store import check_access
from llamaops.platform.tracking import check_tracking

from .errors import PipelineError
from .resources import uses_gpus


def preflight(preset: Preset, tracking_uri: str, artifact_root: str) -> None:
    if uses_gpus(preset):
        raise PipelineError(
            f"preset {preset.name} trains on the {preset.resources.node_pool} GPU pool through KubeRay, and --local "
            f"runs CPU presets only; compile it for a cluster (`llamaops pipeline compile {preset.name} -o FILE`)"
        )
    check_tracking(tracking_uri)
    check_access(artifact_root)
    check_sources(preset.data.sources)
