"""`eval code --sandbox pod`: run a whole batch of generated programs in one code-sandbox pod
(sandbox_pod_manifests.py) through the Kubernetes API, for clusters whose pods may not create
user namespaces.

One run: create the ConfigMaps, then the Pod; poll it until it ends; read its log's final JSON
line (sandbox_batch.py); delete the Pod and the ConfigMaps whatever happened. Every failure is a
SandboxPodError with one line saying what happened and what to do.
"""
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from llamaops.platform.config.images import llamaops_image
from llamaops.platform.deploy.kube import current_namespace, load_cluster_config

from .sandbox import SandboxLimits, SandboxOutcome
from .sandbox_pod_manifests import config_maps, pod

RBAC = "create and delete on configmaps and pods, get on pods and pods/log"
PERMISSIONS = [(verb, resource, "") for resource in ("configmaps", "pods") for verb in ("create", "delete")] + [
    ("get", "pods", ""), ("get", "pods", "log")]
START_GRACE_SECONDS = 300  # scheduling and the image pull: activeDeadlineSeconds counts from the start
POLL_SECONDS = 2.0
REQUEST_SECONDS = 60
IMAGE_FAILURES = ("ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")


class SandboxPodError(RuntimeError):
    """The code-sandbox pod could not run the programs or report on them."""


class PodSandbox:
    """Callable as evaluate_humaneval's run_programs. `api` is a CoreV1Api and `authz` an
    AuthorizationV1Api (default: the cluster's, from the in-cluster config or the kubeconfig);
    with `authz`, the caller's permissions are checked here, before anything is generated."""

    def __init__(self, namespace: str | None = None, image: str | None = None, api: Any = None, authz: Any = None,
                 poll_seconds: float = POLL_SECONDS, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if api is None:
            api, authz = _cluster_apis()
        self.api = api
        self.namespace = namespace or current_namespace()
        self.image = image or llamaops_image()
        self.poll_seconds, self.clock, self.sleep = poll_seconds, clock, sleep
        if authz is not None:
            require_access(authz, self.namespace)

    def __call__(self, sources: list[str], limits: SandboxLimits) -> list[SandboxOutcome]:
        name = f"llamaops-code-sandbox-{secrets.token_hex(4)}"
        created: list[tuple[str, str]] = []  # (kind, name), in the order to delete them
        try:
            outcomes = self._run(name, sources, limits, created)
        except BaseException:
            self._delete(created)  # best effort: the error in flight is the one to report
            raise
        if left := self._delete(created):
            raise SandboxPodError(f"could not delete {', '.join(left)} in namespace {self.namespace}: "
                                  f"delete them with kubectl (the caller needs {RBAC})")
        return outcomes

    def _run(self, name: str, sources: list[str], limits: SandboxLimits, created: list) -> list[SandboxOutcome]:
        try:
            maps = config_maps(name, self.namespace, sources)
        except ValueError as exc:
            raise SandboxPodError(str(exc)) from None
        for body in maps:
            self._call("create configmaps", self.api.create_namespaced_config_map, self.namespace, body)
            created.append(("configmap", body["metadata"]["name"]))
        manifest = pod(name, self.namespace, self.image, [m["metadata"]["name"] for m in maps], len(sources), limits)
        self._call("create pods", self.api.create_namespaced_pod, self.namespace, manifest)
        created.insert(0, ("pod", name))
        ended = self._wait(name, manifest["spec"]["activeDeadlineSeconds"] + START_GRACE_SECONDS)
        if ended.status.phase == "Failed":
            try:
                last = repr(_last_line(self._log(name))[-200:])
            except SandboxPodError:  # a pod that never started has no log: its reason says enough
                last = "none"
            raise SandboxPodError(f"the code-sandbox pod {self.namespace}/{name} failed ({_why_failed(ended)}); "
                                  f"last log line: {last}; its events: kubectl get events -n {self.namespace}")
        return parse_outcomes(self._log(name), len(sources), f"{self.namespace}/{name}")

    def _wait(self, name: str, seconds: float) -> Any:
        deadline = self.clock() + seconds
        while True:
            current = self._call("get pods", self.api.read_namespaced_pod, name, self.namespace,
                                 _request_timeout=REQUEST_SECONDS)
            if current.status.phase in ("Succeeded", "Failed"):
                return current
            waiting = _waiting(current)
            if waiting and waiting[0] in IMAGE_FAILURES:
                raise SandboxPodError(f"the code-sandbox pod cannot start its image {self.image} ({waiting[0]}: "
                                      f"{waiting[1]}); give one this cluster can pull with --image")
            if self.clock() >= deadline:
                raise SandboxPodError(
                    f"the code-sandbox pod {self.namespace}/{name} did not finish within {seconds:.0f} s "
                    f"(phase {current.status.phase}{_pending_reason(current)}); check the namespace's nodes "
                    f"and quota (1 CPU, the memory limit), or evaluate fewer programs")
            self.sleep(self.poll_seconds)

    def _log(self, name: str) -> str:
        # Raw bytes: the client's str deserializer turns a JSON log into a Python repr.
        response = self._call("get pods/log", self.api.read_namespaced_pod_log, name, self.namespace,
                              container="sandbox", _preload_content=False, _request_timeout=REQUEST_SECONDS)
        return response.data.decode("utf-8", errors="replace")

    def _delete(self, created: list[tuple[str, str]]) -> list[str]:
        """Delete what was created; the objects that are left."""
        from kubernetes.client.exceptions import ApiException

        left = []
        for kind, name in created:
            delete = self.api.delete_namespaced_pod if kind == "pod" else self.api.delete_namespaced_config_map
            try:
                delete(name, self.namespace, grace_period_seconds=0, _request_timeout=REQUEST_SECONDS)
            except ApiException as exc:
                if exc.status != 404:
                    left.append(f"{kind} {name}")
            except Exception:  # noqa: BLE001 - the API unreachable: the object may well be left
                left.append(f"{kind} {name}")
        return left

    def _call(self, verb: str, method: Callable, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return method(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 403:
                raise SandboxPodError(
                    f"not allowed to {verb} in namespace {self.namespace} (Forbidden): the code-sandbox pod needs "
                    f"{RBAC} there; see the README's `eval code`") from None
            raise SandboxPodError(f"the Kubernetes API refused to {verb} in namespace {self.namespace}: "
                                  f"{exc.status} {exc.reason}: {_api_message(exc)}") from None
        except HTTPError as exc:
            raise SandboxPodError(f"cannot reach the Kubernetes API to {verb}: {' '.join(str(exc).split())[:300]}") from None


def require_access(authz: Any, namespace: str) -> None:
    """One line naming what the caller may not do of what a run needs (SelfSubjectAccessReview,
    which every authenticated user may ask); where the review itself is refused, the run will say."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    missing = []
    for verb, resource, subresource in PERMISSIONS:
        attributes = {"namespace": namespace, "verb": verb, "resource": resource, "subresource": subresource}
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes}}
        try:
            review = authz.create_self_subject_access_review(body, _request_timeout=REQUEST_SECONDS)
        except ApiException:
            return
        except HTTPError as exc:
            raise SandboxPodError(f"cannot reach the Kubernetes API: {' '.join(str(exc).split())[:300]}") from None
        if not review.status.allowed:
            missing.append(f"{verb} {resource}{'/' + subresource if subresource else ''}")
    if missing:
        raise SandboxPodError(f"not allowed to {', '.join(missing)} in namespace {namespace}: the code-sandbox pod "
                              f"needs {RBAC} there; see the README's `eval code`")


def parse_outcomes(log: str, count: int, where: str) -> list[SandboxOutcome]:
    """The final JSON line of sandbox_batch.py, as `count` outcomes in program order."""
    try:
        records = json.loads(_last_line(log))["outcomes"]
        outcomes = [SandboxOutcome(r["status"], r["exit_code"], float(r["seconds"]), r["output"]) for r in records]
    except (ValueError, KeyError, TypeError):
        outcomes = None
    if outcomes is None or len(outcomes) != count or \
            any(o.status not in ("passed", "failed", "timeout", "killed") for o in outcomes):
        raise SandboxPodError(f"the code-sandbox pod {where} did not report {count} outcomes: its log ends "
                              f"{_last_line(log)[-200:]!r}; check that --image runs this llamaops version")
    return outcomes


def _cluster_apis() -> tuple[Any, Any]:
    from kubernetes import client, config

    try:
        load_cluster_config()
    except (config.ConfigException, OSError) as exc:
        raise SandboxPodError(f"no Kubernetes cluster to run the code-sandbox pod in ({exc}): run in a pod, "
                              f"or set KUBECONFIG") from None
    return client.CoreV1Api(), client.AuthorizationV1Api()


def _last_line(log: str) -> str:
    lines = [line for line in log.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _waiting(current: Any) -> tuple[str, str] | None:
    for status in current.status.container_statuses or []:
        if status.state and status.state.waiting and status.state.waiting.reason:
            return status.state.waiting.reason, status.state.waiting.message or ""
    return None


def _pending_reason(current: Any) -> str:
    for condition in current.status.conditions or []:
        if condition.type == "PodScheduled" and condition.status != "True":
            return f", not scheduled: {condition.message or condition.reason}"
    return f", {waiting[0]}" if (waiting := _waiting(current)) else ""


def _why_failed(ended: Any) -> str:
    if ended.status.reason:  # the kubelet's: DeadlineExceeded, Evicted
        return f"{ended.status.reason}: {ended.status.message or 'no message'}"
    for status in ended.status.container_statuses or []:
        if status.state and status.state.terminated:
            done = status.state.terminated
            return f"{done.reason or 'exit'} {done.exit_code}" + (f": {done.message}" if done.message else "")
    return "no reason given"


def _api_message(exc: Any) -> str:
    try:
        return json.loads(exc.body)["message"].splitlines()[0]
    except (TypeError, ValueError, KeyError, AttributeError, IndexError):
        return str(exc.body or "")[:200]
