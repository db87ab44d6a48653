"""A generic RayJob (nothing from llamaops but its image) run by the KubeRay stand-in on the local
node: a head and two workers from the RayJob's own templates, Ray's token auth, the submitter Job,
the status KubeRay writes, KubeRay's retries, and the cluster gone after the job."""
import shlex
from importlib.metadata import version

import pytest
from kuberay_objects import GROUP, PLURAL, VERSION
from kubernetes import client
from pod_helpers import REPORT, wait_until
from pod_policies import restricted_violations

pytestmark = [pytest.mark.pods, pytest.mark.slow]


# The driver runs on the head (num-cpus 0); a placement group that must spread one CPU over two
# nodes can only be placed on both workers (1 CPU each), once both have joined.
TWO_WORKERS = """
import ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
ray.init()
group = placement_group([{"CPU": 1}] * 2, strategy="STRICT_SPREAD")
ray.get(group.ready(), timeout=120)
@ray.remote(num_cpus=1)
def where():
    return ray.util.get_node_ip_address()
ips = ray.get([where.options(scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i))
               .remote() for i in range(2)])
print("worker node IPs:", sorted(ips))
assert len(set(ips)) == 2, ips
"""


def _container(name: str, image: str, memory: str) -> dict:
    return {"name": name, "image": image, "imagePullPolicy": "Never",
            "resources": {"requests": {"cpu": "250m", "memory": memory}, "limits": {"memory": memory}},
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                "readOnlyRootFilesystem": True},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}  # HOME and Ray's session files


def _pod(container: dict, **spec) -> dict:
    """Pod Security "restricted"; the image runs as uid 65532 with HOME=/tmp."""
    return {"metadata": {"labels": {"app": "stand-in-test"}},
            "spec": {"containers": [container], "automountServiceAccountToken": False,
                     "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                         "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                     "volumes": [{"name": "tmp", "emptyDir": {}}], **spec}}


def _rayjob(name: str, image: str, code: str, backoff_limit: int = 0) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RayJob", "metadata": {"name": name},
            "spec": {"entrypoint": shlex.join(["python", "-c", code]), "shutdownAfterJobFinishes": True,
                     "ttlSecondsAfterFinished": 0, "backoffLimit": backoff_limit,
                     "rayClusterSpec": {
                         "rayVersion": version("ray"), "authOptions": {"mode": "token"},
                         "headGroupSpec": {"rayStartParams": {"num-cpus": "0"},
                                           "template": _pod(_container("ray-head", image, "2Gi"))},
                         "workerGroupSpecs": [{"groupName": "workers", "replicas": 2, "minReplicas": 2, "maxReplicas": 2,
                                               "rayStartParams": {},
                                               "template": _pod(_container("ray-worker", image, "1Gi"))}]},
                     "submitterPodTemplate": _pod(_container("ray-job-submitter", image, "512Mi"), restartPolicy="Never")}}


def _status(kube, ns: str, name: str) -> dict:
    return client.CustomObjectsApi(kube).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name).get("status", {})


def _wait_for(kube, stand_in, ns: str, name: str, states: tuple[str, ...], timeout: float) -> dict:
    def probe():
        status = _status(kube, ns, name)
        return status.get("jobDeploymentStatus") in states, {"status": status, "stand-in errors": stand_in.errors[-3:]}
    return wait_until(f"RayJob {name} {'/'.join(states)}", probe, timeout=timeout)["status"]


def _cluster_objects(kube, ns: str, cluster: str) -> list[str]:
    core = client.CoreV1Api(kube)
    pods = [p.metadata.name for p in core.list_namespaced_pod(ns, label_selector=f"ray.io/cluster={cluster}").items]
    services = [s.metadata.name for s in core.list_namespaced_service(ns).items if s.metadata.name.startswith(cluster)]
    secrets = [s.metadata.name for s in core.list_namespaced_secret(ns).items if s.metadata.name == cluster]
    return pods + services + secrets


def _assert_restricted(pods: list) -> None:
    for pod in pods:
        violations = restricted_violations(client.ApiClient().sanitize_for_serialization(pod.spec))
        assert not violations, (pod.metadata.name, violations)


def test_a_rayjob_runs_on_a_head_and_two_workers_and_its_cluster_goes_afterwards(kube, llamaops_image, kuberay_stand_in):
    ns, name = kuberay_stand_in.namespaces[0], "spread"
    core, batch = client.CoreV1Api(kube), client.BatchV1Api(kube)
    client.CustomObjectsApi(kube).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL,
                                                                  _rayjob(name, llamaops_image, TWO_WORKERS))
    running = _wait_for(kube, kuberay_stand_in, ns, name, ("Running", "Complete", "Failed"), timeout=600)
    cluster = running["rayClusterName"]
    assert running["jobId"].startswith(f"{name}-") and cluster.startswith(f"{name}-") and running["jobId"] != cluster
    assert running["dashboardURL"] == f"{cluster}-head-svc.{ns}.svc.cluster.local:8265"
    # The pods as the API server took them: "restricted" still holds after KubeRay's additions.
    _assert_restricted(core.list_namespaced_pod(ns, label_selector=f"ray.io/cluster={cluster}").items)

    done = _wait_for(kube, kuberay_stand_in, ns, name, ("Complete", "Failed"), timeout=600)
    assert (done["jobDeploymentStatus"], done["jobStatus"]) == ("Complete", "SUCCEEDED"), done
    assert (done["succeeded"], done["failed"]) == (1, 0) and done["endTime"]
    created = kuberay_stand_in.pods_created[f"{ns}/{name}"]
    assert len(created) == 3 and sum("-head-" in p for p in created) == 1, created
    wait_until("the Ray cluster deleted (shutdownAfterJobFinishes)",
               lambda: (not _cluster_objects(kube, ns, cluster), _cluster_objects(kube, ns, cluster)), timeout=120)

    # As with KubeRay, the submitter Job stays after the shutdown: its pod has the driver's output.
    submitter = core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items
    _assert_restricted(submitter)
    logs = core.read_namespaced_pod_log(submitter[-1].metadata.name, ns)
    ips = next(line for line in logs.splitlines() if line.startswith("worker node IPs:"))
    print(f"\n{ips}")
    key = f"{ns}/{name}"
    figures = {"rayjob_pods_created": len(created),
               "rayjob_to_running_s": kuberay_stand_in.seconds_to(key, "Running"),
               "rayjob_to_complete_s": kuberay_stand_in.seconds_to(key, "Complete"),
               "rayjob_to_cluster_deleted_s": kuberay_stand_in.seconds_to(key, "cluster deleted")}
    print(figures)
    REPORT.update(figures)

    # Deleting the RayJob takes the rest with it (the submitter Job, the RayJob's head Service).
    client.CustomObjectsApi(kube).delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)

    def leftovers():
        left = [j.metadata.name for j in batch.list_namespaced_job(ns).items if j.metadata.name == name]
        left += [p.metadata.name for p in core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items]
        left += [s.metadata.name for s in core.list_namespaced_service(ns).items if s.metadata.name.startswith(name)]
        return not left, left
    wait_until("everything the RayJob had gone", leftovers, timeout=120)


def test_a_failing_rayjob_is_retried_backoff_limit_times_then_fails(kube, llamaops_image, kuberay_stand_in):
    ns, name = kuberay_stand_in.namespaces[0], "exits-1"
    client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, _rayjob(name, llamaops_image, "raise SystemExit(1)", backoff_limit=1))
    done = _wait_for(kube, kuberay_stand_in, ns, name, ("Complete", "Failed"), timeout=900)
    assert (done["jobDeploymentStatus"], done["jobStatus"], done["reason"]) == ("Failed", "FAILED", "AppFailed"), done
    assert (done["failed"], done["succeeded"]) == (2, 0)
    assert "Job entrypoint command failed with exit code 1" in done["message"], done["message"]
    key = f"{ns}/{name}"
    assert [w for _, w in kuberay_stand_in.timeline[key]][:6] == [
        "Initializing", "Running", "Retrying", "New", "Initializing", "Running"], kuberay_stand_in.timeline[key]
    assert len(kuberay_stand_in.pods_created[key]) == 6  # a new cluster for the retry
    REPORT["rayjob_retried_to_failed_s"] = kuberay_stand_in.seconds_to(key, "Failed")
    client.CustomObjectsApi(kube).delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
