"""Deploy a promoted model version as a LlamaDeployment and wait for the operator's verdict.

`deployment_manifest` checks the preset's deploy settings against the cluster contract (one
DeployError line per problem) and builds the custom resource, pinned to the registry version (an
alias would move under a running service). `apply_deployment` creates it, or patches the existing
one so a newly promoted version rolls the service forward; `wait_until_ready` follows the status
the operator writes (operators/status.py): Ready=True for the applied generation, Degraded=True
with the operator's reason, or a timeout.

platform never imports operators/, so the resource's names and the Secret keys the operator reads
are repeated here; tests/unit/deploy keep them equal to operators/spec.py and operators/manifests.py.
"""
import hashlib
import json
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llamaops.platform.config import ConfigError, Preset
from llamaops.platform.config.cluster import ClusterContract, NodePool
from llamaops.platform.config.pod_size import cpu_quantity, memory_quantity

from .registration import DeployError
from .serving import registry_uri

if TYPE_CHECKING:
    from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL, KIND = "llamaops.io", "v1alpha1", "llamadeployments", "LlamaDeployment"
API_VERSION = f"{GROUP}/{VERSION}"
PART_OF_LABEL, PART_OF = "app.kubernetes.io/part-of", "llamaops"
MODEL_VERSION_LABEL = "llamaops.io/model-version"
MODEL_ANNOTATION = "llamaops.io/model"
# The name is also its Deployment's and Service's: a DNS-1035 label (starts with a letter, <= 63).
MAX_NAME = 63
_DIGEST = 8
_REGISTRY_NAME = re.compile(r"^[A-Za-z0-9._-]+$")  # what the CRD's models:/ pattern admits
_VERSION = re.compile(r"^[0-9]+$")
POLL_SECONDS = 10.0


def deployment_name(model_name: str) -> str:
    """The LlamaDeployment's name for `model_name`: the name itself when it is a valid DNS-1035
    label, else a lower-cased, bounded form with a digest of the original (distinct names stay distinct)."""
    if re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", model_name) and len(model_name) <= MAX_NAME:
        return model_name
    digest = hashlib.sha256(model_name.encode()).hexdigest()[:_DIGEST]
    base = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")
    if not base[:1].isalpha():
        base = f"m-{base}".rstrip("-")
    return f"{base[:MAX_NAME - _DIGEST - 1].rstrip('-')}-{digest}"


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def serving_pool(contract: ClusterContract, preset: Preset) -> tuple[str, NodePool]:
    """The pool the model is served on (deploy.node_pool, else the training pool), checked to hold
    the engine: declared by the cluster; for vLLM, with at least tensor_parallel GPUs per node (the
    llamaops engine also serves on a pool without GPUs, on its CPUs)."""
    deploy = preset.deploy
    name = deploy.node_pool or preset.resources.node_pool
    field = "deploy.node_pool" if deploy.node_pool else "resources.node_pool (deploy.node_pool is unset)"
    try:
        pool = contract.pool(name, f"preset {preset.name}'s {field}")
    except ConfigError as error:
        raise DeployError(str(error)) from None
    if pool.gpusPerNode == 0 and deploy.engine == "vllm":
        raise DeployError(f"node pool '{name}' has no GPUs (gpusPerNode 0) and engine vllm serves on GPUs; set "
                          f"deploy.node_pool to a GPU pool, or deploy.engine=llamaops to serve on CPUs")
    if pool.gpusPerNode and pool.gpusPerNode < deploy.tensor_parallel:
        raise DeployError(f"deploy.tensor_parallel {deploy.tensor_parallel} needs that many GPUs on one node, but pool "
                          f"'{name}' has {pool.gpusPerNode} per node; lower it or set deploy.node_pool to a larger pool")
    return name, pool


def deployment_manifest(contract: ClusterContract, preset: Preset, model_name: str, version: str,
                        namespace: str) -> dict[str, Any]:
    """The LlamaDeployment serving version `version` of registered model `model_name`."""
    if not _REGISTRY_NAME.match(model_name):
        raise DeployError(f"model name '{model_name}' cannot be deployed: a LlamaDeployment's models:/ URI admits "
                          f"only letters, digits, '.', '_' and '-'")
    if not _VERSION.match(str(version)):
        raise DeployError(f"model version '{version}' is not a registry version number; pass the version "
                          f"the register step returned")
    pool_name, _ = serving_pool(contract, preset)
    deploy = preset.deploy
    name = deployment_name(model_name)
    spec = {
        "model": registry_uri(model_name, version),
        "nodePool": pool_name,
        "tensorParallelSize": deploy.tensor_parallel,
        "engine": deploy.engine,
        **({"quantization": deploy.quantization} if deploy.quantization else {}),
        "replicas": deploy.replicas,
        "servedModelName": deploy.served_model_name,
        "storageSecret": contract.s3Secret.name,
        "storageSecretKeys": {"accessKey": contract.s3Secret.userKey, "secretKey": contract.s3Secret.passwordKey},
    }
    if deploy.pod:
        spec["resources"] = {"cpu": cpu_quantity(deploy.pod.cpus), "memory": memory_quantity(deploy.pod.memoryGiB)}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {PART_OF_LABEL: PART_OF, MODEL_VERSION_LABEL: str(version)},
            "annotations": {MODEL_ANNOTATION: model_name},
        },
        "spec": spec,
    }


def _api_error(error: "ApiException", doing: str) -> DeployError:
    status, reason = error.status, error.reason
    hint = {403: "; the step's service account needs create/get/patch on llamadeployments.llamaops.io",
            404: "; is the LlamaDeployment CRD installed (the llamaops chart with operator.enabled)?",
            422: ""}.get(status, "")
    detail = ""
    if status == 422:  # the CRD's schema refused the spec: the server says which field
        try:
            detail = ": " + _one_line(json.loads(error.body).get("message", ""))
        except (TypeError, ValueError, AttributeError):
            detail = ""
    return DeployError(f"cannot {doing}: HTTP {status} {reason}{detail}{hint}")


def apply_deployment(api, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create the LlamaDeployment, or patch the existing one (a new version rolls the service
    forward); returns the object as stored. A merge patch keeps fields someone added that the step
    does not set (an apiKeySecret, autoscaling, resources)."""
    from kubernetes.client.exceptions import ApiException

    meta = manifest["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    try:
        return api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    except ApiException as error:
        if error.status != 409:
            raise _api_error(error, f"create LlamaDeployment {namespace}/{name}") from None
    patch = {"metadata": {"labels": meta.get("labels", {}), "annotations": meta.get("annotations", {})},
             "spec": manifest["spec"]}
    try:
        return api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
    except ApiException as error:
        raise _api_error(error, f"update LlamaDeployment {namespace}/{name}") from None


def _conditions(status: dict[str, Any]) -> dict[str | None, dict[str, Any]]:  # None: a condition without a type
    return {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}


def wait_until_ready(api, namespace: str, name: str, timeout_s: float, poll_s: float = POLL_SECONDS,
                     clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                     *, generation: int | None = None) -> dict[str, Any]:
    """Poll until the operator reports Ready=True for `generation` (default: the object's current
    generation), i.e. status.observedGeneration has reached it; return the object. Raises DeployError
    when the operator reports Degraded=True for that generation (its reason and message), when the
    object disappears, or after `timeout_s`."""
    from kubernetes.client.exceptions import ApiException

    describe = f"kubectl -n {namespace} describe llamadeployment {name}"
    deadline = clock() + timeout_s
    while True:
        try:
            obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                raise DeployError(f"LlamaDeployment {namespace}/{name} was deleted while the deploy step "
                                  f"waited for it to become Ready") from None
            raise _api_error(error, f"read LlamaDeployment {namespace}/{name}") from None
        wanted = generation if generation is not None else (obj.get("metadata") or {}).get("generation", 0)
        status = obj.get("status") or {}
        observed = status.get("observedGeneration")
        if observed is not None and observed >= wanted:
            conditions = _conditions(status)
            degraded, ready = conditions.get("Degraded") or {}, conditions.get("Ready") or {}
            if degraded.get("status") == "True":
                raise DeployError(f"LlamaDeployment {namespace}/{name} is Degraded: "
                                  f"{_one_line(degraded.get('reason') or 'Unknown')}: "
                                  f"{_one_line(degraded.get('message') or '')}; {describe}")
            if ready.get("status") == "True":
                return obj
            where = (f"Ready={ready.get('status', 'unknown')} {_one_line(ready.get('reason') or '')}: "
                     f"{_one_line(ready.get('message') or '')}") if ready else "no Ready condition yet"
        else:
            where = f"the operator has not reconciled generation {wanted} yet (is the llamaops operator running?)"
        now = clock()
        if now >= deadline:
            raise DeployError(f"LlamaDeployment {namespace}/{name} is not Ready after {timeout_s:.0f} s ({where}); "
                              f"{describe}")
        sleep(max(0.0, min(poll_s, deadline - now)))
