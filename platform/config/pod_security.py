"""Pod Security "restricted" for every pod llamaops makes (servers, Ray heads, workers and job
submitters): one definition, so no builder drifts from it. Each call returns fresh dicts (a
manifest that shares one object twice dumps as YAML anchors)."""
from typing import Any


def pod_security() -> dict[str, Any]:
    # An explicit non-root uid: images that default to root (vLLM's) then still pass runAsNonRoot.
    return {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"}}


def container_security(read_only_root: bool = True) -> dict[str, Any]:
    """A container's securityContext; a read-only root needs the writable /tmp of tmp_volume()."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": read_only_root}


def tmp_volume() -> dict[str, Any]:
    return {"name": "tmp", "emptyDir": {}}


def tmp_mount() -> dict[str, Any]:
    return {"name": "tmp", "mountPath": "/tmp"}
