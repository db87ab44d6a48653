"""Pure functions: a LlamaDeployment (+ its node pool) -> the Deployment, Service and HPA it owns.

No cluster access here, so every rule is unit-testable; the kopf handlers only apply these.
"""
import os

from llamaops.platform.config.cluster import MLFLOW_CREDENTIAL_ENV
from llamaops.platform.config.images import llamaops_image, vllm_image
from llamaops.platform.config.pod_security import container_security, pod_security, tmp_mount, tmp_volume
from llamaops.platform.deploy.serving import GRACEFUL_DRAIN_S, HF_DIR, HF_ROOT, READY_PATH, export_command

from .pools import NodePool
from .serving_argv import PORT, server_argv
from .spec import GROUP, KIND, VERSION, DeploymentSpec

MANAGED_BY = "llamaops-operator"
ENDPOINT_DELAY_SECONDS = 5


def owner_reference(name: str, uid: str) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": name, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}


def labels(name: str) -> dict[str, str]:
    # part-of: the chart's NetworkPolicies let llamaops pods reach S3 and MLflow.
    return {"app.kubernetes.io/name": "llama-server", "app.kubernetes.io/instance": name,
            "app.kubernetes.io/managed-by": MANAGED_BY, "app.kubernetes.io/part-of": "llamaops"}


def selector(name: str) -> dict[str, str]:
    """The labels that pick a LlamaDeployment's serving pods."""
    return {"app.kubernetes.io/instance": name, "app.kubernetes.io/name": "llama-server"}


def _meta(name: str, namespace: str, uid: str | None) -> dict:
    """uid None: objects rendered for review or GitOps, owned by no LlamaDeployment."""
    meta = {"name": name, "namespace": namespace, "labels": labels(name)}
    if uid is not None:
        meta["ownerReferences"] = [owner_reference(name, uid)]
    return meta


PASSED_ON_ENV = ("LLAMAOPS_S3_ENDPOINT", "MLFLOW_TRACKING_URI")
API_KEY_ENV = {"llamaops": "LLAMAOPS_API_KEY", "vllm": "VLLM_API_KEY"}
MLFLOW_ACCOUNT_ENV = "LLAMAOPS_MLFLOW_ACCOUNT"  # the Secret (username, password) of the MLflow account


def image_for(engine: str) -> str:
    return vllm_image() if engine == "vllm" else llamaops_image()


def _resources(spec: DeploymentSpec, pool: NodePool) -> dict:
    amounts = {"cpu": spec.resources.cpu, "memory": spec.resources.memory}
    limits = dict(amounts)
    if pool.gpusPerNode:
        # Tensor parallelism runs inside one pod: it needs TP GPUs on one node.
        limits[pool.gpuResource] = str(spec.tensorParallelSize)
    return {"requests": amounts, "limits": limits}


def _secret_env(name: str, secret: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _env(spec: DeploymentSpec, serving: bool = True) -> list[dict]:
    """serving False: the model export's environment (the model's storage, no API key)."""
    # A writable HOME and model cache on the /tmp emptyDir: the root filesystem is read-only.
    env = [{"name": "HOME", "value": "/tmp"}, {"name": "LLAMAOPS_HOME", "value": "/tmp/llamaops"}]
    if spec.apiKeySecret and serving:
        # Each engine reads its key from its own variable (vLLM's api_server: VLLM_API_KEY).
        env.append(_secret_env(API_KEY_ENV[spec.engine], spec.apiKeySecret, "api-key"))
    # The platform's object store and model registry (the chart sets both on the operator).
    env += [{"name": name, "value": os.environ[name]} for name in PASSED_ON_ENV if os.environ.get(name)]
    if spec.storageSecret:
        keys = spec.storageSecretKeys
        env += [_secret_env("AWS_ACCESS_KEY_ID", spec.storageSecret, keys.accessKey),
                _secret_env("AWS_SECRET_ACCESS_KEY", spec.storageSecret, keys.secretKey)]
    if os.environ.get(MLFLOW_ACCOUNT_ENV):
        # The registry's account, by reference; optional: a namespace without the Secret still
        # serves s3:// and file:// models, and a models:/ one then fails with MLflow's 401.
        for name, key in zip(MLFLOW_CREDENTIAL_ENV, ("username", "password")):
            item = _secret_env(name, os.environ[MLFLOW_ACCOUNT_ENV], key)
            item["valueFrom"]["secretKeyRef"]["optional"] = True
            env.append(item)
    return env


def _container(spec: DeploymentSpec, pool: NodePool) -> dict:
    # Readiness waits for the loaded weights (a TCP check would route requests to a loading server).
    ready = {"httpGet": {"path": READY_PATH[spec.engine], "port": "http"}, "periodSeconds": 5}
    alive = {"tcpSocket": {"port": "http"}, "periodSeconds": 10}
    return {
        "name": "server",
        "image": image_for(spec.engine),
        "command": server_argv(spec, pool),
        # SSA on <1.21 needs protocol explicitly (it is a list-map key there).
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": _env(spec),
        "resources": _resources(spec, pool),
        # Loading weights takes minutes: readiness gates traffic, startup covers the load.
        "startupProbe": {**alive, "failureThreshold": 90},
        "readinessProbe": ready,
        "livenessProbe": {**alive, "failureThreshold": 6},
        "securityContext": container_security(read_only_root=spec.engine == "llamaops"),
        # Endpoints drop a terminating pod a moment after SIGTERM: keep serving until they have, then
        # the server refuses new requests and drains the ones in flight (up to GRACEFUL_DRAIN_S).
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(ENDPOINT_DELAY_SECONDS)]}}},
        "volumeMounts": [tmp_mount(), *([SHM_MOUNT] if _shares_memory(spec) else []),
                         *([{**HF_MOUNT, "readOnly": True}] if spec.engine == "vllm" else [])],
    }


# vLLM reads Hugging Face directories only: an init container of the llamaops image resolves the
# model (models:/, s3://, file://) and writes its export to a volume the server then reads.
HF_VOLUME = {"name": "hf-model", "emptyDir": {}}
HF_MOUNT = {"name": "hf-model", "mountPath": HF_ROOT}


def _export_container(spec: DeploymentSpec) -> dict:
    return {
        "name": "export-hf",
        "image": llamaops_image(),
        "command": export_command(spec.model, HF_DIR),
        "env": _env(spec, serving=False),
        "resources": {"requests": {"cpu": spec.resources.cpu, "memory": spec.resources.memory},
                      "limits": {"cpu": spec.resources.cpu, "memory": spec.resources.memory}},
        "securityContext": container_security(read_only_root=True),
        "volumeMounts": [tmp_mount(), HF_MOUNT],
    }


# Ranks on one node talk through /dev/shm (NCCL's intra-node transport, vLLM's worker queue); a
# container's own /dev/shm is 64 MiB. Memory-backed: it counts against the container's memory.
SHM_VOLUME = {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}
SHM_MOUNT = {"name": "dshm", "mountPath": "/dev/shm"}


def _shares_memory(spec: DeploymentSpec) -> bool:
    return spec.tensorParallelSize > 1 or spec.engine == "vllm"


def deployment(name: str, namespace: str, uid: str | None, spec: DeploymentSpec, pool: NodePool) -> dict:
    pod_spec = {"containers": [_container(spec, pool)], "nodeSelector": dict(pool.nodeSelector),
                "terminationGracePeriodSeconds": GRACEFUL_DRAIN_S + ENDPOINT_DELAY_SECONDS + 30,
                "tolerations": list(pool.tolerations), "securityContext": pod_security(),
                "automountServiceAccountToken": False,
                "volumes": [tmp_volume(), *([SHM_VOLUME] if _shares_memory(spec) else []),
                            *([HF_VOLUME] if spec.engine == "vllm" else [])]}
    if spec.engine == "vllm":
        pod_spec["initContainers"] = [_export_container(spec)]
    body = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, namespace, uid),
        "spec": {
            "selector": {"matchLabels": selector(name)},
            # A new version's pod is Ready (weights loaded) before an old one goes: never zero ready.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": labels(name)}, "spec": pod_spec},
        },
    }
    if spec.autoscaling is None:
        # With an HPA the replica count belongs to the HPA; don't fight it on every reconcile.
        body["spec"]["replicas"] = spec.replicas
    return body


def service(name: str, namespace: str, uid: str | None) -> dict:
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(name, namespace, uid),
        "spec": {"selector": selector(name),
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
    }


def hpa_api_version(served: set[str]) -> str:
    """autoscaling/v2 where the server has it (>=1.23), else v2beta2 (1.20-1.25)."""
    for version in ("autoscaling/v2", "autoscaling/v2beta2"):
        if version in served:
            return version
    raise ValueError("the API server serves neither autoscaling/v2 nor autoscaling/v2beta2")


def hpa(name: str, namespace: str, uid: str | None, spec: DeploymentSpec, api_version: str) -> dict | None:
    if spec.autoscaling is None:
        return None
    a = spec.autoscaling
    return {
        "apiVersion": api_version, "kind": "HorizontalPodAutoscaler", "metadata": _meta(name, namespace, uid),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": a.minReplicas, "maxReplicas": a.maxReplicas,
            "metrics": [_load_metric(a)],
            # Up at once (a queue grows fast); down only after 5 calm minutes (a GPU pod loads for minutes).
            "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0},
                         "scaleDown": {"stabilizationWindowSeconds": 300,
                                       "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}},
        },
    }


LOAD_METRIC = "llamaops_requests_in_flight"  # the chart's metrics-adapter rules serve it for both engines


def _load_metric(a) -> dict:
    if a.targetRequestsInFlight is None:
        return {"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": a.targetCPUUtilization}}}
    return {"type": "Pods", "pods": {"metric": {"name": LOAD_METRIC},
                                     "target": {"type": "AverageValue", "averageValue": str(a.targetRequestsInFlight)}}}


def owned_objects(name: str, namespace: str, uid: str | None, spec: DeploymentSpec, pool: NodePool,
                  hpa_version: str) -> list[dict]:
    """Everything a LlamaDeployment owns: its Deployment first, then its Service and (autoscaled) HPA."""
    objects = [deployment(name, namespace, uid, spec, pool), service(name, namespace, uid)]
    autoscaler = hpa(name, namespace, uid, spec, hpa_version)
    return objects + ([autoscaler] if autoscaler else [])
