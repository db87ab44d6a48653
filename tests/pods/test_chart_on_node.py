"""`helm install` of the chart on a node that runs pods: every pod Ready, `helm test` passes."""
import pytest
from kubernetes import client
from pod_helpers import run

pytestmark = [pytest.mark.pods, pytest.mark.slow]


def test_operator_and_mlflow_pods_are_ready_on_the_llamaops_image(kube, release, llamaops_image):
    pods = client.CoreV1Api(kube).list_namespaced_pod(
        release.namespace, label_selector=f"app.kubernetes.io/instance={release.name}").items
    by_component = {p.metadata.labels["app.kubernetes.io/component"]: p for p in pods}
    assert set(by_component) == {"operator", "mlflow"}
    for component, pod in by_component.items():
        ready = {c.type: c.status for c in pod.status.conditions}["Ready"]
        assert ready == "True", f"{component} not Ready: {pod.status}"
        assert pod.spec.containers[0].image == llamaops_image
        assert pod.status.container_statuses[0].restart_count == 0, component


def test_helm_test_hooks_pass(kube, helm, release, node_cluster):
    """The hook pod asserts MLflow answers and the S3 credentials open the bucket; it is deleted
    once it succeeds (so uninstall leaves nothing), hence no --logs: a failed one's log is read here."""
    out = run(helm, "test", release.name, "-n", release.namespace, "--timeout", "5m",
              env=node_cluster.env, timeout=400, check=False)
    if out.returncode != 0:
        log = client.CoreV1Api(kube).read_namespaced_pod_log(f"{release.name}-llamaops-test-platform", release.namespace)
        raise AssertionError(f"helm test failed:\n{out.stdout[-1500:]}\n{out.stderr[-1000:]}\nhook pod log:\n{log[-3000:]}")
    suite = out.stdout.split("TEST SUITE:", 1)[1]
    assert f"{release.name}-llamaops-test-platform" in suite and "Phase:          Succeeded" in suite, out.stdout
