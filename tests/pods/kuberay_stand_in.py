"""A stand-in for KubeRay's RayJob controller (K8sJobMode), for the pod tier.

KubeRay's operator cannot run here: no image can be pulled onto the local node. This thread does
with every RayJob (ray.io/v1) in the namespaces it watches what KubeRay's controllers do, from
nothing but the RayJob's spec: the Secret with the cluster's auth token, the head Services, the
Ray pods from the RayJob's own templates completed as KubeRay completes them (the `ray start`
command, environment, /dev/shm, the wait-gcs-ready init container, probes, labels), the submitter
Job, and the status: New -> Initializing -> Running -> Complete | Failed, through Retrying up to
spec.backoffLimit times, with the cluster deleted after the job when shutdownAfterJobFinishes.

It follows ray-operator/controllers/ray/{rayjob,raycluster}_controller.go and
common/{pod,job,service}.go of the KubeRay release given as `kuberay_version` (default 1.7.0).
Version-dependent: before 1.6 the probes exec `wget` in the Ray container; from 1.6 they are an
HTTP GET of the agent's /api/healthz for rayVersion >= 2.53. From 1.7 the submitter first waits
for the dashboard's /api/gcs_healthz.

Where it deviates from KubeRay:
- There is no RayCluster object: the pods, the cluster's head Service and its Secret belong to the
  RayJob directly (KubeRay: RayJob -> RayCluster -> them), so the garbage collector removes
  everything when the RayJob is deleted. No finalizer: a deleted RayJob's Ray job is not stopped
  through the dashboard first.
- The head Service is headless as KubeRay makes it, and every pod that addresses the head
  (workers, the submitter) also gets hostAliases mapping the head's FQDN and short Service name to
  the head pod's IP: the local cluster's DNS answers a headless Service with its ready endpoints
  only, and workers must reach the head before its readiness probe passes. So workers are created
  once the head pod has its IP (KubeRay creates them together).
- The Ray job's status is read from the host at http://<head pod IP>:8265 (KubeRay: the dashboard
  URL through cluster DNS), by polling every `poll_s` (KubeRay: watches plus a 3 s requeue).
- Not covered: suspend, activeDeadlineSeconds, clusterSelector, submission modes other than
  K8sJobMode, entrypointNumCpus/Gpus/Resources, runtimeEnvYAML, metadata, spec.jobId,
  submitterConfig, autoscaling, GCS fault tolerance, TLS, custom head Services, deletionStrategy,
  the RayCluster status fields, replacing a failed head, shortening names over 50 characters.
"""
import base64
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from datetime import datetime, timezone

from kuberay_objects import (
    DASHBOARD_PORT,
    GROUP,
    PLURAL,
    VERSION,
    head_service,
    owner_references,
    ray_pod,
    submitter_job,
)
from kubernetes import client
from kubernetes.client.exceptions import ApiException

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
log = logging.getLogger(__name__)


def _suffix() -> str:
    return "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))  # apimachinery's rand.String


def _now(seconds: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if seconds is None else seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ready(pod) -> bool:
    """CheckAllPodsRunning, for one pod: Running, and Ready when the kubelet says so."""
    return pod.status.phase == "Running" and all(c.status == "True" for c in pod.status.conditions or [] if c.type == "Ready")


def _desired(group: dict) -> int:
    low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
    return min(max(group.get("replicas", low), low), high)


class KubeRayStandIn:
    """Reconciles the RayJobs of `namespaces` every `poll_s` seconds on a daemon thread. What it did:
    `pods_created` (per RayJob), `timeline` (per RayJob: seconds after it was first seen, and what happened),
    `errors` (reconcile failures, retried on the next round)."""

    def __init__(self, api_client, namespaces, poll_s: float = 0.5, kuberay_version: tuple = (1, 7, 0)):
        self.custom, self.core = client.CustomObjectsApi(api_client), client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.namespaces, self.poll_s, self.kuberay = tuple(namespaces), poll_s, kuberay_version
        self.pods_created: dict[str, list[str]] = defaultdict(list)
        self.timeline: dict[str, list[tuple[float, str]]] = defaultdict(list)
        self.errors: list[str] = []
        self._seen: dict[str, float] = {}
        self._job_service: dict[str, str] = {}  # RayJob -> the cluster its head Service selects
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kuberay-stand-in", daemon=True)

    def start(self) -> "KubeRayStandIn":
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def seconds_to(self, key: str, what: str) -> float | None:
        """Seconds from first seeing RayJob `key` ("namespace/name") to the first `what` (a deployment status)."""
        return next((t for t, w in self.timeline[key] if w == what), None)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            for namespace in self.namespaces:
                try:
                    rayjobs = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
                except Exception as error:  # noqa: BLE001 (a controller keeps going; the next round retries)
                    self._failed(namespace, error)
                    continue
                for rayjob in rayjobs:
                    try:
                        self._reconcile(rayjob)
                    except Exception as error:  # noqa: BLE001
                        self._failed(f"{namespace}/{rayjob['metadata']['name']}", error)

    def _failed(self, what: str, error: Exception) -> None:
        self.errors.append(f"{what}: {error!r}"[:500])
        log.warning("kuberay stand-in, %s: %r", what, error)

    def _reconcile(self, rayjob: dict) -> None:
        key = f"{rayjob['metadata']['namespace']}/{rayjob['metadata']['name']}"
        self._seen.setdefault(key, time.monotonic())
        status = rayjob.setdefault("status", {})
        state = status.get("jobDeploymentStatus") or "New"
        step = {"New": self._on_new, "Initializing": self._on_initializing, "Running": self._on_running,
                "Retrying": self._on_retrying, "Complete": self._on_finished, "Failed": self._on_finished}[state]
        change = step(rayjob, status)
        if change and any(status.get(k) != v for k, v in change.items()):
            self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, rayjob["metadata"]["namespace"], PLURAL,
                                                              rayjob["metadata"]["name"], {"status": change})
            if change.get("jobDeploymentStatus", state) != state:
                self.timeline[key].append((time.monotonic() - self._seen[key], change["jobDeploymentStatus"] or "New"))

    def _on_new(self, rayjob: dict, status: dict) -> dict:
        name = rayjob["metadata"]["name"]
        return {"jobDeploymentStatus": "Initializing", "jobId": f"{name}-{_suffix()}", "rayClusterName": f"{name}-{_suffix()}",
                "startTime": _now(), "failed": status.get("failed", 0), "succeeded": status.get("succeeded", 0)}

    def _on_initializing(self, rayjob: dict, status: dict) -> dict | None:
        """Creates what is missing of the cluster; Running (with the submitter) once every pod is ready."""
        ns, cluster, spec = rayjob["metadata"]["namespace"], status["rayClusterName"], rayjob["spec"]["rayClusterSpec"]
        fqdn = f"{cluster}-head-svc.{ns}.svc.cluster.local"
        if (spec.get("authOptions") or {}).get("mode") == "token":
            self._create(self.core.create_namespaced_secret, ns, {"metadata": {
                "name": cluster, "labels": {"ray.io/cluster": cluster}, "ownerReferences": owner_references(rayjob)},
                "stringData": {"auth_token": base64.b64encode(os.urandom(32)).decode()}})
        self._create(self.core.create_namespaced_service, ns, head_service(rayjob, f"{cluster}-head-svc"))
        pods = self._pods(ns, cluster)
        heads = [p for p in pods if p.metadata.labels["ray.io/node-type"] == "head"]
        if not heads:
            self._create_pod(rayjob, ray_pod(rayjob, spec["headGroupSpec"], True, fqdn, None, self.kuberay))
            return None
        head_ip = heads[0].status.pod_ip
        if not head_ip:
            return None
        if self._replace_missing_workers(rayjob, pods, fqdn, head_ip) or not all(_ready(p) for p in pods):
            return None
        status["dashboardURL"] = f"{fqdn}:{DASHBOARD_PORT}"
        self._create(self.batch.create_namespaced_job, ns, submitter_job(rayjob, head_ip, fqdn, self.kuberay))
        return {"jobDeploymentStatus": "Running", "dashboardURL": status["dashboardURL"]}

    def _replace_missing_workers(self, rayjob: dict, pods: list, fqdn: str, head_ip: str) -> bool:
        """RayCluster's reconcilePods: each worker group back to its replicas (a pod deleted or
        evicted is replaced); True if a pod was created."""
        created = False
        for group in rayjob["spec"]["rayClusterSpec"].get("workerGroupSpecs") or []:
            have = sum(p.metadata.labels["ray.io/group"] == group["groupName"] for p in pods)
            for _ in range(_desired(group) - have):
                self._create_pod(rayjob, ray_pod(rayjob, group, False, fqdn, head_ip, self.kuberay))
                created = True
        return created

    def _on_running(self, rayjob: dict, status: dict) -> dict | None:
        """The Ray job's status from the dashboard; terminal once the submitter Job has finished too.
        Meanwhile the Ray cluster keeps its worker pods."""
        ns, name, cluster = rayjob["metadata"]["namespace"], rayjob["metadata"]["name"], status["rayClusterName"]
        if self._job_service.get(f"{ns}/{name}") != cluster:  # the RayJob's own, re-pointed at each new cluster
            service = head_service(rayjob, f"{name}-head-svc")
            if not self._create(self.core.create_namespaced_service, ns, service):
                self.core.patch_namespaced_service(service["metadata"]["name"], ns,
                                                   {"spec": {"selector": service["spec"]["selector"]}})
            self._job_service[f"{ns}/{name}"] = cluster
        conditions = {c.type: c for c in self.batch.read_namespaced_job(name, ns).status.conditions or [] if c.status == "True"}
        finished = "Complete" in conditions or "Failed" in conditions
        if "Failed" in conditions:
            if status.get("jobStatus") == "FAILED":
                return self._counted(rayjob, {"jobDeploymentStatus": "Failed", "reason": "AppFailed"})
            why = conditions["Failed"]
            return self._counted(rayjob, {"jobDeploymentStatus": "Failed", "reason": "SubmissionFailed", "message":
                                          f"Job submission has failed. Reason: {why.reason}. Message: {why.message}"})
        pods = self._pods(ns, cluster)
        heads = [p for p in pods if p.metadata.labels["ray.io/node-type"] == "head"]
        if heads and heads[0].status.pod_ip and not finished:
            self._replace_missing_workers(rayjob, pods, f"{cluster}-head-svc.{ns}.svc.cluster.local", heads[0].status.pod_ip)
        info = self._job_info(heads[0].status.pod_ip, status["jobId"], self._token(rayjob, cluster)) if heads else None
        if info is None:
            return self._counted(rayjob, {"jobDeploymentStatus": "Failed", "reason": "AppFailed", "message":
                                          "Submitter completed but Ray job not found in RayCluster."}) if finished else None
        deployment, reason = "Running", None
        if info["status"] in TERMINAL and finished:
            deployment, reason = ("Failed", "AppFailed") if info["status"] == "FAILED" else ("Complete", None)
        times = {field: _now(info[key] / 1000) for field, key in (("startTime", "start_time"), ("endTime", "end_time"))
                 if info.get(key)}
        return self._counted(rayjob, {"jobDeploymentStatus": deployment, "jobStatus": info["status"], "reason": reason,
                                      "message": info.get("message"), "rayJobInfo": times or None})

    def _counted(self, rayjob: dict, change: dict) -> dict:
        """checkBackoffLimitAndUpdateStatusIfNeeded, and updateRayJobStatus's endTime."""
        status, limit = rayjob["status"], rayjob["spec"].get("backoffLimit")
        failed = status.get("failed", 0) + (change["jobDeploymentStatus"] == "Failed")
        succeeded = status.get("succeeded", 0) + (change["jobDeploymentStatus"] == "Complete" and change.get("jobStatus") == "SUCCEEDED")
        change.update(failed=failed, succeeded=succeeded)
        if change["jobDeploymentStatus"] == "Failed" and limit is not None and failed < limit + 1:
            change["jobDeploymentStatus"] = "Retrying"
        if change["jobDeploymentStatus"] in ("Complete", "Failed"):
            change["endTime"] = _now()
        return change

    def _on_retrying(self, rayjob: dict, status: dict) -> dict | None:
        """Deletes the cluster and the submitter, then starts over (New) once they are gone."""
        ns, name = rayjob["metadata"]["namespace"], rayjob["metadata"]["name"]
        gone = self._delete_cluster(ns, status["rayClusterName"])
        gone &= self._delete(self.batch.delete_namespaced_job, name, ns, propagation_policy="Background")
        if not gone:
            return None
        return dict.fromkeys(("jobDeploymentStatus", "rayClusterName", "dashboardURL", "jobId", "message", "reason",
                              "rayJobInfo", "jobStatus"))

    def _on_finished(self, rayjob: dict, status: dict) -> None:
        """shutdownAfterJobFinishes: the cluster goes ttlSecondsAfterFinished after endTime; the submitter Job
        stays (its pod keeps the driver's logs), as does the RayJob's head Service."""
        key = f"{rayjob['metadata']['namespace']}/{rayjob['metadata']['name']}"
        if not rayjob["spec"].get("shutdownAfterJobFinishes") or self.seconds_to(key, "cluster deleted") is not None:
            return None
        ended = datetime.strptime(status["endTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
        if time.time() >= ended + rayjob["spec"].get("ttlSecondsAfterFinished", 0) and \
                self._delete_cluster(rayjob["metadata"]["namespace"], status["rayClusterName"]):
            self.timeline[key].append((time.monotonic() - self._seen[key], "cluster deleted"))
        return None

    def _pods(self, ns: str, cluster: str) -> list:
        return [p for p in self.core.list_namespaced_pod(ns, label_selector=f"ray.io/cluster={cluster}").items
                if p.metadata.deletion_timestamp is None]

    def _create_pod(self, rayjob: dict, pod: dict) -> None:
        made = self.core.create_namespaced_pod(rayjob["metadata"]["namespace"], pod)
        self.pods_created[f"{rayjob['metadata']['namespace']}/{rayjob['metadata']['name']}"].append(made.metadata.name)

    def _token(self, rayjob: dict, cluster: str) -> str | None:
        if (rayjob["spec"]["rayClusterSpec"].get("authOptions") or {}).get("mode") != "token":
            return None
        secret = self.core.read_namespaced_secret(cluster, rayjob["metadata"]["namespace"])
        return base64.b64decode(secret.data["auth_token"]).decode()

    @staticmethod
    def _job_info(head_ip: str | None, job_id: str, token: str | None) -> dict | None:
        """GET /api/jobs/<id> on the head's dashboard; None while the job is not there (or the head has no IP)."""
        if not head_ip:
            return None
        request = urllib.request.Request(f"http://{head_ip}:{DASHBOARD_PORT}/api/jobs/{job_id}",
                                         headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            if error.code in (400, 404):
                return None
            raise

    @staticmethod
    def _create(create, namespace: str, body: dict) -> bool:
        """Creates `body` unless it exists; True if it was created."""
        try:
            create(namespace, body)
            return True
        except ApiException as error:
            if error.status != 409:
                raise
            return False

    @staticmethod
    def _delete(delete, name: str, namespace: str, **kw) -> bool:
        """Asks for `name` to go; True once it is gone."""
        try:
            delete(name, namespace, **kw)
            return False
        except ApiException as error:
            if error.status != 404:
                raise
            return True

    def _delete_cluster(self, ns: str, cluster: str) -> bool:
        """KubeRay's deleteClusterResources (the RayCluster and what it owns); True once all of it is gone."""
        gone = self._delete(self.core.delete_namespaced_service, f"{cluster}-head-svc", ns)
        gone &= self._delete(self.core.delete_namespaced_secret, cluster, ns)
        pods = self.core.list_namespaced_pod(ns, label_selector=f"ray.io/cluster={cluster}").items
        for pod in pods:
            if pod.metadata.deletion_timestamp is None:
                self._delete(self.core.delete_namespaced_pod, pod.metadata.name, ns)
        return gone and not pods
