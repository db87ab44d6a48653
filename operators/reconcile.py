"""One idempotent reconcile pass: read the node pools, check the spec, server-side-apply the
owned objects, and compute the status. Called by every kopf handler (create/update/resume/timer)."""
import os

from kubernetes import client
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

from . import manifests
from .pools import POOLS_CONFIGMAP, NodePool, PoolConfigError, parse_pools
from .spec import GROUP, PLURAL, VERSION
from .status import Degraded, check_spec, degraded_conditions, merge_conditions, pod_problem, rollout_conditions

FIELD_MANAGER = "llamaops-operator"


def operator_namespace() -> str:
    return os.environ.get("LLAMAOPS_OPERATOR_NAMESPACE", "llamaops")


def load_pools(api: client.ApiClient) -> dict[str, NodePool]:
    try:
        cm = client.CoreV1Api(api).read_namespaced_config_map(POOLS_CONFIGMAP, operator_namespace())
    except client.ApiException as e:
        if e.status == 404:
            return {}
        raise
    return parse_pools(cm.data)


def model_exists(uri: str) -> bool | None:
    """False only when we can see the model is missing; None when we cannot tell from here."""
    if not uri.startswith(("s3://", "file://")):
        return None  # registry aliases are resolved by the server at start-up
    from llamaops.platform.store.uri import ArtifactError, is_complete

    try:
        return is_complete(uri)
    except (ArtifactError, OSError):
        return None  # storage unreachable from the operator: let the server report it


def _apply(dyn: DynamicClient, body: dict) -> dict:
    res = dyn.resources.get(api_version=body["apiVersion"], kind=body["kind"])
    return dyn.server_side_apply(res, body=body, namespace=body["metadata"]["namespace"],
                                 field_manager=FIELD_MANAGER, force_conflicts=True).to_dict()


def _served_versions(dyn: DynamicClient) -> set[str]:
    return {f"{r.group}/{r.api_version}" for r in dyn.resources.search(kind="HorizontalPodAutoscaler")}


def _delete_hpa(dyn: DynamicClient, version: str, name: str, namespace: str) -> None:
    res = dyn.resources.get(api_version=version, kind="HorizontalPodAutoscaler")
    try:
        dyn.delete(res, name=name, namespace=namespace)
    except NotFoundError:
        pass


def _serving_pods(api: client.ApiClient, name: str, namespace: str) -> list[dict]:
    selector = ",".join(f"{k}={v}" for k, v in manifests.selector(name).items())
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector)
    return [api.sanitize_for_serialization(p) for p in pods.items]


def resync(api: client.ApiClient, name: str, namespace: str) -> None:
    """Recompute one LlamaDeployment's status now (a child changed); gone or deleting -> nothing."""
    custom = client.CustomObjectsApi(api)
    try:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except client.ApiException as e:
        if e.status == 404:
            return
        raise
    meta = obj["metadata"]
    if meta.get("deletionTimestamp"):
        return
    status = sync(api, name, namespace, meta["uid"], meta.get("generation", 0), obj.get("spec") or {},
                  obj.get("status") or {})
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status})


def sync(api: client.ApiClient, name: str, namespace: str, uid: str, generation: int,
         raw_spec: dict, old_status: dict) -> dict:
    """Returns the new `.status`. Never raises for a bad spec: that is Degraded in the status."""
    old = (old_status or {}).get("conditions") or []
    try:
        spec, pool = check_spec(raw_spec, load_pools(api), model_exists)
    except (Degraded, PoolConfigError) as d:
        reason, message = (d.reason, d.message) if isinstance(d, Degraded) else ("InvalidNodePools", str(d))
        # Existing children stay as they are: a bad edit must not take a serving model down.
        return {"observedGeneration": generation, "conditions": merge_conditions(old, degraded_conditions(reason, message))}
    dyn = DynamicClient(api)
    hpa_version = manifests.hpa_api_version(_served_versions(dyn))
    applied, *_ = [_apply(dyn, body) for body in manifests.owned_objects(name, namespace, uid, spec, pool, hpa_version)]
    if spec.autoscaling is None:
        _delete_hpa(dyn, hpa_version, name, namespace)
    desired = spec.autoscaling.minReplicas if spec.autoscaling else spec.replicas
    ready = (applied.get("status") or {}).get("readyReplicas") or 0
    problem = None if ready >= desired else pod_problem(_serving_pods(api, name, namespace))
    conditions = rollout_conditions(applied.get("status"), desired, problem,
                                    (applied.get("metadata") or {}).get("generation"))
    return {"observedGeneration": generation, "conditions": merge_conditions(old, conditions),
            "deployment": name, "service": name, "hpa": hpa_version if spec.autoscaling else None}
