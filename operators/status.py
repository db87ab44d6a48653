"""Pure functions: what a LlamaDeployment's status says (Ready / Progressing / Degraded)."""
from collections.abc import Callable
from datetime import datetime, timezone

from pydantic import ValidationError

from .pools import NodePool
from .spec import DeploymentSpec


class Degraded(Exception):
    """A spec the operator cannot act on: reported in status, never retried in a crash loop."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(kind: str, ok: bool, reason: str, message: str = "") -> dict:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason,
            "message": message, "lastTransitionTime": _now()}


def merge_conditions(old: list[dict], new: list[dict]) -> list[dict]:
    """Keep lastTransitionTime when a condition's status did not change (so it means something)."""
    before = {c.get("type"): c for c in old or []}
    merged = []
    for c in new:
        prev = before.get(c["type"])
        if prev and prev.get("status") == c["status"]:
            c = {**c, "lastTransitionTime": prev.get("lastTransitionTime", c["lastTransitionTime"])}
        merged.append(c)
    return merged


def check_spec(raw: dict, pools: dict[str, NodePool], model_exists: Callable[[str], bool | None]) -> tuple[DeploymentSpec, NodePool]:
    """Validate a spec against the operator's world; raise Degraded with a reason otherwise.

    `model_exists` returns None when it cannot tell (registry aliases are resolved by the server).
    """
    try:
        spec = DeploymentSpec.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise Degraded("InvalidSpec", f"spec.{where}: {first['msg']}") from e
    pool = pools.get(spec.nodePool)
    if pool is None:
        known = ", ".join(sorted(pools)) or "none configured"
        raise Degraded("UnknownNodePool", f"node pool '{spec.nodePool}' is not configured (known: {known})")
    if pool.gpusPerNode and spec.tensorParallelSize > pool.gpusPerNode:
        raise Degraded("PoolTooSmall", f"tensorParallelSize {spec.tensorParallelSize} exceeds the "
                       f"{pool.gpusPerNode} GPUs per node of pool '{spec.nodePool}'")
    if spec.engine == "vllm" and not pool.gpusPerNode:
        raise Degraded("NoGPUs", f"engine vllm needs GPUs but pool '{spec.nodePool}' has none")
    if model_exists(spec.model) is False:
        raise Degraded("ModelNotFound", f"model {spec.model} does not exist or is unfinished (no _COMPLETE marker)")
    return spec, pool


def degraded_conditions(reason: str, message: str) -> list[dict]:
    return [condition("Ready", False, reason, message), condition("Progressing", False, reason, message),
            condition("Degraded", True, reason, message)]


# Container states that need a person (or a fix) rather than more waiting.
STUCK_CONTAINER_REASONS = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull",
                           "CreateContainerConfigError", "CreateContainerError", "InvalidImageName"}


def pod_problem(pods: list[dict]) -> tuple[str, str] | None:
    """Why the serving pods are not ready, from their own status: (reason, message) or None."""
    for pod in pods:
        for c in pod.get("status", {}).get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                return c.get("reason") or "Unschedulable", c.get("message") or "the pod cannot be scheduled"
    for pod in pods:
        for cs in pod.get("status", {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK_CONTAINER_REASONS:
                return waiting["reason"], f"container {cs.get('name')}: {waiting.get('message') or waiting['reason']}"
    return None


def rollout_conditions(deployment_status: dict | None, desired: int,
                       problem: tuple[str, str] | None = None, generation: int | None = None) -> list[dict]:
    """Conditions from the owned Deployment's status (`desired` = the replicas we asked for) and,
    while it is not ready, the reason its pods give (`problem`, from `pod_problem`). `generation`:
    the Deployment's metadata.generation; until its controller has observed it, the counts describe
    the previous pods, so a changed spec (a new model version) is not Ready yet."""
    st = deployment_status or {}
    observed = generation is None or (st.get("observedGeneration") or 0) >= generation
    ready = (st.get("readyReplicas") or 0) if observed else 0
    updated = (st.get("updatedReplicas") or 0) if observed else 0
    if desired == 0:
        return [condition("Ready", True, "ScaledToZero"), condition("Progressing", False, "ScaledToZero"),
                condition("Degraded", False, "AsExpected")]
    is_ready = ready >= desired and updated >= desired
    msg = f"{ready}/{desired} replicas ready"
    failed = [c for c in st.get("conditions") or [] if c.get("type") == "Progressing"
              and c.get("reason") == "ProgressDeadlineExceeded"]
    if failed:
        return [condition("Ready", is_ready, "ProgressDeadlineExceeded", msg),
                condition("Progressing", False, "ProgressDeadlineExceeded", failed[0].get("message", "")),
                condition("Degraded", True, "ProgressDeadlineExceeded", msg)]
    if problem and not is_ready:
        reason, detail = problem
        # Unschedulable may resolve itself (a node joins the pool); a stuck container needs a fix.
        return [condition("Ready", False, reason, f"{msg}: {detail}"),
                condition("Progressing", True, reason, detail),
                condition("Degraded", reason != "Unschedulable", reason if reason != "Unschedulable" else "AsExpected",
                          detail if reason != "Unschedulable" else "")]
    return [condition("Ready", is_ready, "ReplicasReady" if is_ready else "ReplicasUnavailable", msg),
            condition("Progressing", not is_ready, "RolloutInProgress" if not is_ready else "RolloutComplete", msg),
            condition("Degraded", False, "AsExpected")]
