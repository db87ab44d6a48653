"""The REAL operator process (`kopf run --standalone`) against the real kube-apiserver.

There is no kubelet, so pods stay Pending and Ready stays False: the tests check what the
operator owns (objects, ownerReferences, status conditions, observedGeneration), not serving.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.dynamic import DynamicClient

from llamaops.operators.pools import POOLS_CONFIGMAP, POOLS_KEY
from llamaops.operators.spec import GROUP, PLURAL, VERSION, crd

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
KOPF = Path(sys.executable).parent / "kopf"
POOLS = "h100:\n  nodeSelector: {llamaops.io/pool: h100}\n  gpusPerNode: 8\n"


def wait_for(what, fn, timeout=45.0):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except client.ApiException as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


class Operator:
    def __init__(self, kubeconfig, namespace, log: Path):
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "LLAMAOPS_OPERATOR_NAMESPACE": namespace,
                    "LLAMAOPS_RESYNC_SECONDS": "2"}
        self.log, self.proc = log, None

    def start(self):
        self.proc = subprocess.Popen(
            [str(KOPF), "run", "--standalone", "--all-namespaces", "-m", "llamaops.operators.handlers"],
            env=self.env, stdout=open(self.log, "a"), stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self) -> bool:
        return self.proc.poll() is None


@pytest.fixture(scope="module")
def operator(kube, k8s_cluster, tmp_path_factory):
    ext = client.ApiextensionsV1Api(kube)
    try:
        ext.create_custom_resource_definition(crd())
    except client.ApiException as e:
        if e.status != 409:  # already there (the chart test installs it too)
            raise
    wait_for("CRD established", lambda: any(
        c.type == "Established" and c.status == "True"
        for c in ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}").status.conditions or []))
    core = client.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": "llamaops"}})
    core.create_namespaced_config_map("llamaops", {"metadata": {"name": POOLS_CONFIGMAP}, "data": {POOLS_KEY: POOLS}})
    op = Operator(k8s_cluster.kubeconfig, "llamaops", tmp_path_factory.mktemp("op") / "kopf.log")
    op.start()
    yield op
    op.stop()
    print(op.log.read_text()[-3000:])


@pytest.fixture
def crs(kube, k8s_namespace):
    api = client.CustomObjectsApi(kube)

    class CRs:
        def create(self, name, spec):
            return api.create_namespaced_custom_object(GROUP, VERSION, k8s_namespace, PLURAL,
                                                       {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LlamaDeployment",
                                                        "metadata": {"name": name}, "spec": spec})

        def get(self, name):
            return api.get_namespaced_custom_object(GROUP, VERSION, k8s_namespace, PLURAL, name)

        def patch(self, name, spec):
            return api.patch_namespaced_custom_object(GROUP, VERSION, k8s_namespace, PLURAL, name, {"spec": spec})

        def delete(self, name):
            api.delete_namespaced_custom_object(GROUP, VERSION, k8s_namespace, PLURAL, name)

        def condition(self, name, kind):
            for c in (self.get(name).get("status") or {}).get("conditions") or []:
                if c["type"] == kind:
                    return c
            return None

    return CRs()


SPEC = {"model": "s3://models/llama-8b", "nodePool": "h100", "tensorParallelSize": 2}


@pytest.mark.parametrize("bad", [
    {"model": "s3://models/x"},                                   # no nodePool
    {**SPEC, "replicas": -1},
    {**SPEC, "engine": "tgi"},
    {**SPEC, "model": "http://example.com/model"},
    {**SPEC, "autoscaling": {"minReplicas": 1}},                  # no maxReplicas
])
def test_api_server_rejects_invalid_specs(crs, operator, bad):
    with pytest.raises(client.ApiException) as e:
        crs.create("bad", bad)
    assert e.value.status in (400, 422)


def test_operator_reconciles_updates_and_cleans_up(kube, crs, operator, k8s_namespace):
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    cr = crs.create("llama", SPEC)
    dep = wait_for("Deployment", lambda: apps.read_namespaced_deployment("llama", k8s_namespace))
    assert dep.metadata.owner_references[0].uid == cr["metadata"]["uid"]
    assert dep.spec.template.spec.node_selector == {"llamaops.io/pool": "h100"}
    assert dep.spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"] == "2"
    svc = wait_for("Service", lambda: core.read_namespaced_service("llama", k8s_namespace))
    assert svc.metadata.owner_references[0].name == "llama"
    wait_for("status", lambda: crs.condition("llama", "Progressing"))
    status = crs.get("llama")["status"]
    assert status["observedGeneration"] == 1
    by = {c["type"]: c for c in status["conditions"]}
    # No kubelet here: the pods stay Pending, so the rollout is in progress and not Ready.
    assert (by["Ready"]["status"], by["Progressing"]["status"], by["Degraded"]["status"]) == ("False", "True", "False")

    # Idempotent: resyncs (every 2 s) re-apply the same spec, so its generation stays put
    # (the controller-manager may still bump resourceVersion with status updates).
    time.sleep(5)
    assert apps.read_namespaced_deployment("llama", k8s_namespace).metadata.generation == dep.metadata.generation

    crs.patch("llama", {"autoscaling": {"minReplicas": 2, "maxReplicas": 4}})
    dyn = DynamicClient(kube)
    hpa_res = dyn.resources.get(api_version="autoscaling/v2beta2", kind="HorizontalPodAutoscaler")
    hpa = wait_for("HPA", lambda: dyn.get(hpa_res, name="llama", namespace=k8s_namespace))
    assert (hpa.spec.minReplicas, hpa.spec.maxReplicas) == (2, 4)
    wait_for("observedGeneration 2", lambda: crs.get("llama")["status"].get("observedGeneration") == 2)

    crs.delete("llama")  # the garbage collector (kube-controller-manager) removes the children
    wait_for("Deployment gone", lambda: not apps.list_namespaced_deployment(k8s_namespace).items)
    wait_for("Service gone", lambda: not core.list_namespaced_service(k8s_namespace).items)
    assert operator.alive()


@pytest.mark.parametrize("spec, reason", [
    ({**SPEC, "nodePool": "a100"}, "UnknownNodePool"),
    ({**SPEC, "model": "file:///nonexistent/llama-8b"}, "ModelNotFound"),
    ({**SPEC, "tensorParallelSize": 16}, "PoolTooSmall"),
])
def test_unusable_spec_is_degraded_not_a_crash_loop(kube, crs, operator, k8s_namespace, spec, reason):
    crs.create("llama", spec)
    degraded = wait_for("Degraded", lambda: crs.condition("llama", "Degraded"))
    assert degraded["status"] == "True" and degraded["reason"] == reason
    assert not client.AppsV1Api(kube).list_namespaced_deployment(k8s_namespace).items
    time.sleep(3)  # several resyncs later it is still alive and still Degraded
    assert operator.alive() and crs.condition("llama", "Degraded")["reason"] == reason
    crs.patch("llama", {"nodePool": "h100", "model": SPEC["model"], "tensorParallelSize": 2})
    wait_for("recovered", lambda: crs.condition("llama", "Degraded")["status"] == "False")


def test_operator_survives_restart_and_catches_up(kube, crs, operator, k8s_namespace):
    apps = client.AppsV1Api(kube)
    crs.create("llama", {**SPEC, "replicas": 1})
    wait_for("Deployment", lambda: apps.read_namespaced_deployment("llama", k8s_namespace))
    operator.stop()
    crs.patch("llama", {"replicas": 3})  # changed while the operator is down
    operator.start()
    wait_for("replicas 3", lambda: apps.read_namespaced_deployment("llama", k8s_namespace).spec.replicas == 3)
    wait_for("observedGeneration 2", lambda: crs.get("llama")["status"].get("observedGeneration") == 2)
