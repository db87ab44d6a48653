"""KubeRay RayJob manifests for the steps that run on Ray clusters of their own: one head pod (driver,
no GPUs) and a worker group; the job's entrypoint runs the step on the cluster.

Every name comes from the cluster contract: credentials as secretKeyRefs, endpoints as
configMapKeyRefs (references only, never values), the pools' node selectors and tolerations, Kueue's
queue label and the priority class when the cluster uses them."""
import hashlib
import re
from importlib.metadata import version
from typing import Any

from llamaops.platform.config import ParallelLayout, Preset
from llamaops.platform.config.cluster import PLATFORM_ENV_KEYS, ClusterContract, NodePool, secret_env
from llamaops.platform.config.pod_security import container_security, pod_security, tmp_mount, tmp_volume
from llamaops.platform.config.resources import CPU_RANK_THREADS, Restarts

from .resources import GPU_RESOURCE, PodShape, cpu_pod, nodes_for, rank_pod

RAYJOB_API_VERSION = "ray.io/v1"
STEP_ENV = "LLAMAOPS_STEP"  # JSON of run_step's arguments, read by llamaops.pipelines.stage_main
ENTRYPOINT = "python -m llamaops.pipelines.stage_main"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
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


def _referenced_env(contract: ClusterContract) -> list[dict[str, Any]]:
    env = [{"name": variable, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": key}}}
           for secret, variables in secret_env(contract)
           for variable, key in zip(variables, (secret.userKey, secret.passwordKey))]
    return env + [{"name": key, "valueFrom": {"configMapKeyRef": {"name": contract.platformConfigMap, "key": key}}}
                  for key in PLATFORM_ENV_KEYS]


def container(name: str, image: str, shape: PodShape, env: dict[str, str], contract: ClusterContract) -> dict[str, Any]:
    resources: dict[str, Any] = {
        "requests": {"cpu": shape.cpu, "memory": shape.memory},
        "limits": {"memory": shape.memory},
    }
    if shape.gpus:
        resources["requests"][GPU_RESOURCE] = str(shape.gpus)
        resources["limits"][GPU_RESOURCE] = str(shape.gpus)
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": contract.imagePullPolicy,
        "resources": resources,
        "env": [{"name": key, "value": value} for key, value in sorted(env.items())] + _referenced_env(contract),
        "securityContext": container_security(),
        "volumeMounts": [tmp_mount()],  # Ray's session files, HOME (the root filesystem is read-only)
    }


def pod_spec(containers: list[dict[str, Any]], pool: NodePool | None, contract: ClusterContract,
             shared_memory: bool = False) -> dict[str, Any]:
    """A Ray pod on `pool` (None: any node), Pod Security "restricted". Ray pods need no Kubernetes
    API: no token is mounted."""
    spec: dict[str, Any] = {"containers": containers, "automountServiceAccountToken": False,
                            "securityContext": pod_security(), "volumes": [tmp_volume()]}
    if shared_memory:
        # NCCL and Ray's object store move tensors through /dev/shm; the container default (64 MiB) is far too small.
        for item in containers:
            item["volumeMounts"] = [*item.get("volumeMounts", []), {"name": "dshm", "mountPath": "/dev/shm"}]
        spec["volumes"].append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
    if pool and pool.nodeSelector:
        spec["nodeSelector"] = dict(pool.nodeSelector)
    if pool and pool.tolerations:
        spec["tolerations"] = [dict(toleration) for toleration in pool.tolerations]
    if contract.queueing.priorityClass:
        spec["priorityClassName"] = contract.queueing.priorityClass
    return spec


def rayjob_manifest(
    name: str, namespace: str, labels: dict[str, str], entrypoint: str, head: dict[str, Any], workers: dict[str, Any],
    contract: ClusterContract, restarts: Restarts,
) -> dict[str, Any]:
    """A RayJob around a head pod that only drives and one worker group; KubeRay recreates the
    whole Ray cluster up to `restarts.rayjob` times when the Ray job fails."""
    job_labels = dict(labels)
    if contract.queueing.kueueQueue:
        job_labels[KUEUE_QUEUE_LABEL] = contract.queueing.kueueQueue
    return {
        "apiVersion": RAYJOB_API_VERSION,
        "kind": "RayJob",
        "metadata": {"name": name, "namespace": namespace, "labels": job_labels},
        "spec": {
            "entrypoint": entrypoint,
            "shutdownAfterJobFinishes": True,
            # The Ray cluster goes as soon as the job ends: the next step's RayJob waits for its
            # nodes. The driver's log stays in the submitter Job's pod, the step's in MLflow.
            "ttlSecondsAfterFinished": 0,
            "backoffLimit": restarts.rayjob,
            "rayClusterSpec": {
                "rayVersion": version("ray"),
                # Ray's token auth (Ray >= 2.52, KubeRay >= 1.5.1): the dashboard runs submitted code,
                # so every request to it and to the GCS carries a per-cluster token KubeRay
                # generates into a Secret and hands to the cluster's own containers only.
                "authOptions": {"mode": "token"},
                "headGroupSpec": {
                    # The head only drives: no CPUs or GPUs for Ray keeps every worker off it.
                    "rayStartParams": {"num-cpus": "0", "num-gpus": "0", "dashboard-host": "0.0.0.0"},
                    "template": {"metadata": {"labels": labels},
                                 "spec": pod_spec([head], contract.cpu_nodes(), contract)},
                },
                "workerGroupSpecs": [workers],
            },
            "submitterPodTemplate": _submitter(head["image"], labels, contract),
        },
    }


def _submitter(image: str, labels: dict[str, str], contract: ClusterContract) -> dict[str, Any]:
    """KubeRay's job submitter pod (it adds the `ray job submit` command), with the step's labels
    (the NetworkPolicy lets llamaops pods reach the dashboard) and the same pod security."""
    submitter = {"name": "ray-job-submitter", "image": image, "imagePullPolicy": contract.imagePullPolicy,
                 "resources": {"requests": {"cpu": "500m", "memory": "200Mi"}, "limits": {"memory": "1Gi"}},
                 "securityContext": container_security(), "volumeMounts": [tmp_mount()]}
    return {"metadata": {"labels": labels},
            "spec": {**pod_spec([submitter], contract.cpu_nodes(), contract), "restartPolicy": "Never"}}


def worker_group(name: str, replicas: int, start_params: dict[str, str], labels: dict[str, str],
                 pod_spec: dict[str, Any]) -> dict[str, Any]:
    """A fixed-size worker group: the job needs all its pods, and no more."""
    return {"groupName": name, "replicas": replicas, "minReplicas": replicas, "maxReplicas": replicas,
            "rayStartParams": start_params, "template": {"metadata": {"labels": labels}, "spec": pod_spec}}


def step_labels(run_id: str, step: str) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": "llamaops", "llamaops.io/run": rayjob_name(run_id, ""), "llamaops.io/step": step}


def build_rayjob(
    preset: Preset, layout: ParallelLayout, step: str, run_id: str, image: str, env: dict[str, str],
    contract: ClusterContract, namespace: str = "default",
) -> dict[str, Any]:
    """The RayJob that trains `step` of run `run_id` on nodes_for(layout) whole nodes of the preset's
    pool (on CPU presets: one pod per rank)."""
    nodes = nodes_for(preset, layout)
    worker = rank_pod(preset, contract)
    labels = step_labels(run_id, step)
    # CPU ranks are CPU pods: they go where the contract puts those.
    pool = contract.pool(preset.resources.node_pool, f"preset {preset.name}") if worker.gpus else contract.cpu_nodes()
    # Ray Train asks one GPU per rank, or CPU_RANK_THREADS CPUs: what each pod offers Ray fixes
    # how many ranks it hosts.
    offered = {"num-gpus": str(worker.gpus)} if worker.gpus else {"num-cpus": str(CPU_RANK_THREADS)}
    workers = worker_group("gpu-workers" if worker.gpus else "cpu-workers", nodes, offered, labels,
                           pod_spec([container("ray-worker", image, worker, env, contract)], pool, contract,
                                    shared_memory=True))
    head = container("ray-head", image, cpu_pod(contract), env, contract)
    return rayjob_manifest(rayjob_name(run_id, step), namespace, labels, ENTRYPOINT, head, workers, contract,
                           preset.restarts)
