"""The objects of one code-sandbox run (sandbox_pod.py creates them): ConfigMaps holding the
programs, one key per program, and the Pod that runs them all with sandbox_batch.py.

The Pod is Pod Security "restricted", mounts no service-account token, gets none of the caller's
environment, sees no Services, and carries the label the chart's deny-all NetworkPolicy selects.
It runs as a uid of its own, so the process limit counts its processes alone.
"""
import json
import math
import random
from typing import Any

from llamaops.platform.config.pod_security import container_security, pod_security, tmp_mount, tmp_volume

from .sandbox import SandboxLimits
from .sandbox_host import SANDBOX_UIDS

COMPONENT = "code-sandbox"
LABELS = {"app.kubernetes.io/part-of": "llamaops", "llamaops.io/component": COMPONENT}
CONFIG_MAP_BYTES = 900 << 10  # under the API server's 1 MiB per object, with room for metadata
PROGRAMS_DIR = "/programs"
# Besides the programs' wall limits: the image pull (the deadline counts from before it) and the interpreter.
START_SECONDS = 600
DRAIN_SECONDS = 2  # sandbox_batch.DRAIN_SECONDS, per program that runs out of time
MEMORY_HEADROOM = 256 << 20  # the batch process and the page cache, besides one program's address space


def program_key(index: int) -> str:
    return f"{index:06d}.py"  # sorted by name = the order of the programs


def config_maps(name: str, namespace: str, sources: list[str]) -> list[dict[str, Any]]:
    """The programs in as few ConfigMaps as keep each under CONFIG_MAP_BYTES."""
    chunks: list[dict[str, str]] = [{}]
    size = 0
    for index, source in enumerate(sources):
        key, length = program_key(index), len(program_key(index)) + len(source.encode("utf-8"))
        if length > CONFIG_MAP_BYTES:
            raise ValueError(f"program {index} is {length} bytes, more than a ConfigMap holds ({CONFIG_MAP_BYTES})")
        if size + length > CONFIG_MAP_BYTES:
            chunks.append({})
            size = 0
        chunks[-1][key] = source
        size += length
    return [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": f"{name}-{i}", "namespace": namespace, "labels": dict(LABELS)}, "data": data}
            for i, data in enumerate(chunks)]


def deadline_seconds(programs: int, limits: SandboxLimits) -> int:
    """activeDeadlineSeconds: every program running to its wall limit, one after another."""
    return START_SECONDS + math.ceil(programs * (limits.wall_seconds + DRAIN_SECONDS))


def pod(name: str, namespace: str, image: str, config_map_names: list[str], programs: int,
        limits: SandboxLimits) -> dict[str, Any]:
    memory = str(limits.memory_bytes + MEMORY_HEADROOM)
    uid = random.randrange(*SANDBOX_UIDS)
    container = {
        "name": "sandbox",
        "image": image,
        "command": ["python3", "-I", "-m", "llamaops.platform.eval.sandbox_batch", PROGRAMS_DIR,
                    json.dumps(limits.model_dump(mode="json"))],
        "env": [{"name": "HOME", "value": "/tmp"}],  # the image's PATH, nothing of the caller's
        "resources": {"requests": {"cpu": "1", "memory": memory},
                      "limits": {"cpu": "1", "memory": memory, "ephemeral-storage": "1Gi"}},
        "securityContext": container_security(),
        "volumeMounts": [tmp_mount(), {"name": "programs", "mountPath": PROGRAMS_DIR, "readOnly": True}],
    }
    sources = [{"configMap": {"name": cm}} for cm in config_map_names]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(LABELS)},
        "spec": {
            "containers": [container],
            "restartPolicy": "Never",
            "activeDeadlineSeconds": deadline_seconds(programs, limits),
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,  # no *_SERVICE_HOST variables naming the cluster's services
            "securityContext": {**pod_security(), "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid},
            "volumes": [tmp_volume(), {"name": "programs", "projected": {"sources": sources, "defaultMode": 0o444}}],
        },
    }
