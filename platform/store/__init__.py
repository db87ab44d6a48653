"""Artifacts by URI: file:// locally (under LLAMAOPS_HOME by default), s3:// on clusters.

Stages never touch storage directly: they read inputs through `fetched(uri)` (a local directory)
and write outputs through `staged_output(uri)` (a local directory published to the URI only when
the block succeeds, with a completion marker written last). A URI without the marker is an
unfinished artifact and is never read.
"""
from .paths import home, run_uri
from .uri import COMPLETE_MARKER, ArtifactError, check_access, check_output, fetched, is_complete, staged_output

__all__ = [
    "COMPLETE_MARKER", "ArtifactError", "check_access", "check_output", "fetched", "home", "is_complete", "run_uri", "staged_output",
]
