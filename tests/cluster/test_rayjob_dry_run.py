"""The RayJobs `llamaops pipeline submit` would create, server-side dry-run against the real
kube-apiserver: the RayJob through a MINIMAL ray.io/v1 CRD written for these tests (no package
ships KubeRay's CRDs; conftest's `rayjob_crd`), and each head/worker pod template as a Pod through
the core API (full Kubernetes validation of containers, resources, volumes, tolerations)."""
import pytest

from llamaops.pipelines.dry_run import dry_run_manifests
from llamaops.platform.config import load_preset

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("preset_name", ["8b", "405b"])
def test_every_rayjob_and_its_pods_pass_server_side_dry_run(kube, k8s_namespace, rayjob_crd, preset_name):
    from kubernetes import client

    custom, core = client.CustomObjectsApi(kube), client.CoreV1Api(kube)
    jobs = [doc for doc in dry_run_manifests(load_preset(preset_name), "run-1", k8s_namespace) if doc.get("kind") == "RayJob"]
    rounds = load_preset(preset_name).post_training.rounds
    assert len(jobs) == 5 + 4 * rounds  # data; pretrain, long_context, anneal, safety; 4 per post-training round
    assert jobs[0]["metadata"]["labels"]["llamaops.io/step"] == "data"
    for job in jobs:
        created = custom.create_namespaced_custom_object("ray.io", "v1", k8s_namespace, "rayjobs", job, dry_run="All")
        assert created["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] >= 1
        # The dashboard (which runs submitted code) and the GCS take only KubeRay's per-cluster token.
        assert created["spec"]["rayClusterSpec"]["authOptions"] == {"mode": "token"}
        cluster = job["spec"]["rayClusterSpec"]
        for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "dry-", **group["template"]["metadata"]},
                   "spec": group["template"]["spec"]}
            core.create_namespaced_pod(k8s_namespace, pod, dry_run="All")
    assert custom.list_namespaced_custom_object("ray.io", "v1", k8s_namespace, "rayjobs")["items"] == []


def test_the_server_rejects_a_rayjob_without_an_entrypoint(kube, k8s_namespace, rayjob_crd):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    (job,) = [doc for doc in dry_run_manifests(load_preset("8b"), "run-2", k8s_namespace)
              if doc.get("kind") == "RayJob" and doc["metadata"]["labels"]["llamaops.io/step"] == "round1-sft"]
    del job["spec"]["entrypoint"]
    with pytest.raises(ApiException) as error:
        client.CustomObjectsApi(kube).create_namespaced_custom_object(
            "ray.io", "v1", k8s_namespace, "rayjobs", job, dry_run="All")
    assert error.value.status == 422 and "entrypoint" in error.value.body
