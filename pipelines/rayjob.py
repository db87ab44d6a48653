"""KubeRay RayJob manifests for training steps on GPU pools: one head pod (driver, no GPUs) and
a worker group of whole GPU nodes; the job's entrypoint runs the same pipeline step on the cluster."""
import hashlib
import re
from importlib.metadata import version
from typing import Any

from llamaops.platform.config import ParallelLayout, Preset

from .resources import GPU_RESOURCE, PodShape, cpu_pod, gpu_node_pod, node_pool_tolerations, node_selector, nodes_for

RAYJOB_API_VERSION = "ray.io/v1"
STEP_ENV = "LLAMAOPS_STEP"  # JSON of run_step's arguments, read by llamaops.pipelines.stage_main
ENTRYPOINT = "python -m llamaops.pipelines.stage_main"
_DNS_LABEL = re.compile(r"[^a-z0-9-]+")
_MAX_NAME = 40


def rayjob_name(run_id: str, step: str) -> str:
    """A DNS-1123 name, short enough for the pods KubeRay derives from it; a cut name ends in a hash
    of the whole one, so steps that differ only past the cut (round1-reward_model,
    round1-rejection_sampling) still get their own RayJobs."""
    name = _DNS_LABEL.sub("-", f"{run_id}-{step}".lower()).strip("-")
    if len(name) <= _MAX_NAME:
        return name
    return f"{name[:_MAX_NAME - 7].rstrip('-')}-{hashlib.sha256(name.encode()).hexdigest()[:6]}"


def container(name: str, image: str, shape: PodShape, env: dict[str, str], secret: str | None) -> dict[str, Any]:
    resources: dict[str, Any] = {
        "requests": {"cpu": str(shape.cpus), "memory": shape.memory},
        "limits": {"memory": shape.memory},
    }
    if shape.gpus:
        resources["requests"][GPU_RESOURCE] = str(shape.gpus)
        resources["limits"][GPU_RESOURCE] = str(shape.gpus)
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "resources": resources,
        "env": [{"name": key, "value": value} for key, value in sorted(env.items())],
    }
    if secret:
        container["envFrom"] = [{"secretRef": {"name": secret, "optional": True}}]
    return container


def rayjob_manifest(
    name: str, namespace: str, labels: dict[str, str], entrypoint: str, head: dict[str, Any], workers: dict[str, Any],
) -> dict[str, Any]:
    """A RayJob around a head container that only drives and one worker group."""
    return {
        "apiVersion": RAYJOB_API_VERSION,
        "kind": "RayJob",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "entrypoint": entrypoint,
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 600,
            "backoffLimit": 0,
            "rayClusterSpec": {
                "rayVersion": version("ray"),
                "headGroupSpec": {
                    # The head only drives: num-gpus 0 keeps training workers off it.
                    "rayStartParams": {"num-gpus": "0", "dashboard-host": "0.0.0.0"},
                    "template": {"metadata": {"labels": labels}, "spec": {"containers": [head]}},
                },
                "workerGroupSpecs": [workers],
            },
        },
    }


def worker_group(name: str, replicas: int, start_params: dict[str, str], labels: dict[str, str],
                 pod_spec: dict[str, Any]) -> dict[str, Any]:
    """A fixed-size worker group: the job needs all its pods, and no more."""
    return {"groupName": name, "replicas": replicas, "minReplicas": replicas, "maxReplicas": replicas,
            "rayStartParams": start_params, "template": {"metadata": {"labels": labels}, "spec": pod_spec}}


def step_labels(run_id: str, step: str) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": "llamaops", "llamaops.io/run": rayjob_name(run_id, ""), "llamaops.io/step": step}


def build_rayjob(
    preset: Preset, layout: ParallelLayout, step: str, run_id: str, image: str, env: dict[str, str],
    namespace: str = "default", env_secret: str | None = None,
) -> dict[str, Any]:
    """The RayJob that trains `step` of run `run_id` on nodes_for(layout) whole nodes of the preset's pool."""
    nodes = nodes_for(preset, layout)
    worker = gpu_node_pod(preset)
    labels = step_labels(run_id, step)
    workers = worker_group("gpu-workers", nodes, {"num-gpus": str(worker.gpus)}, labels, {
        "containers": [{**container("ray-worker", image, worker, env, env_secret),
                        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]}],
        # NCCL moves tensors through /dev/shm; the container default (64 MiB) is far too small.
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
        "nodeSelector": node_selector(preset),
        "tolerations": node_pool_tolerations(preset),
    })
    head = container("ray-head", image, cpu_pod(), env, env_secret)
    return rayjob_manifest(rayjob_name(run_id, step), namespace, labels, ENTRYPOINT, head, workers)
