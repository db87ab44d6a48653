"""One cluster contract: every Secret (and key), ConfigMap (and key), node label, taint, node pool and
service account that a compiled pipeline's Kubernetes platform spec, a RayJob or the LlamaDeployment
names must be something the chart renders, for every preset, with default and with custom values.
The contract is read from the rendered chart itself (ConfigMap llamaops-cluster), as `submit` reads
it from a cluster. Needs only helm (`helm template`); no cluster.

Then every RayJob and LlamaDeployment the dry run prints is validated: the custom resources against
their CRD schemas (the operator's own LlamaDeployment CRD; KubeRay's CRD ships in no package here, so
the test's MINIMAL ray.io/v1 CRD stands in for it), and every pod template as a Pod with
kubernetes-validate --strict."""
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from chart_render import Render, render

from llamaops.operators.spec import crd as llamadeployment_crd
from llamaops.pipelines.dry_run import dry_run_manifests
from llamaops.platform.config import PRESETS, load_preset
from llamaops.platform.config.cluster import ClusterContract

HERE = Path(__file__).resolve().parent
SERVED = "team-a"
VALUES = {
    "default": ("llamaops", SERVED, {}),
    "custom": ("ml", "ml", {
        "pipelines": {"namespaces": [SERVED], "serviceAccount": "runner", "cpuNodePool": "cpu"},
        "s3": {"secretKeys": {"accessKey": "id", "secretKey": "key"}},
        "queueing": {"kueueQueue": "research", "priorityClass": "high"},
        "nodePools": {"h100": {"nodeSelector": {"example.com/gpu": "h100"}, "gpusPerNode": 8,
                               "tolerations": [{"key": "example.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
                      "cpu": {"nodeSelector": {"example.com/cpu": "general"}}},
    }),
}


def _pods(doc: dict) -> list[dict]:
    if doc.get("kind") != "RayJob":
        return []
    cluster = doc["spec"]["rayClusterSpec"]
    return [group["template"]["spec"] for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]]


def named_by(docs: list[dict], contract: ClusterContract) -> set[tuple]:
    """What the run's manifests name: ("Secret", name, key), ("ConfigMap", name, key), ("label", key, value),
    ("toleration", json), ("pool", name), ("ServiceAccount", name)."""
    names: set[tuple] = {("ServiceAccount", contract.serviceAccount)}  # what `submit` runs the pipeline as
    platform = next(doc for doc in docs if "platforms" in doc)["platforms"]["kubernetes"]["deploymentSpec"]
    for executor in platform["executors"].values():
        names |= {("Secret", s["secretName"], k["secretKey"]) for s in executor.get("secretAsEnv", []) for k in s["keyToEnv"]}
        names |= {("ConfigMap", c["configMapName"], k["configMapKey"])
                  for c in executor.get("configMapAsEnv", []) for k in c["keyToEnv"]}
        names |= {("label", *item) for item in executor.get("nodeSelector", {}).get("labels", {}).items()}
        names |= {("toleration", json.dumps(t, sort_keys=True)) for t in executor.get("tolerations", [])}
    for pod in [pod for doc in docs for pod in _pods(doc)]:
        for env in [env for container in pod["containers"] for env in container.get("env", [])]:
            for kind, ref in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                if ref in env.get("valueFrom", {}):
                    names.add((kind, env["valueFrom"][ref]["name"], env["valueFrom"][ref]["key"]))
        names |= {("label", *item) for item in pod.get("nodeSelector", {}).items()}
        names |= {("toleration", json.dumps(t, sort_keys=True)) for t in pod.get("tolerations", [])}
        if "serviceAccountName" in pod:
            names.add(("ServiceAccount", pod["serviceAccountName"]))
    for doc in docs:
        if doc.get("kind") == "LlamaDeployment":
            names.add(("pool", doc["spec"]["nodePool"]))
            if doc["spec"].get("storageSecret"):
                names |= {("Secret", doc["spec"]["storageSecret"], key) for key in doc["spec"]["storageSecretKeys"].values()}
    return names


def rendered(chart: Render, namespace: str) -> set[tuple]:
    """What the chart provides to pods in `namespace`, and the pools (labels, taints) the operator knows."""
    names: set[tuple] = set()
    for doc in chart.docs:
        if chart.ns(doc) != namespace:
            continue
        if doc["kind"] in ("Secret", "ConfigMap"):
            names |= {(doc["kind"], doc["metadata"]["name"], key) for key in {**doc.get("data", {}), **doc.get("stringData", {})}}
        if doc["kind"] == "ServiceAccount":
            names.add(("ServiceAccount", doc["metadata"]["name"]))
    pools_map = chart.contract().nodePoolsConfigMap
    pools = yaml.safe_load(chart.get("ConfigMap", pools_map)["data"]["pools.yaml"])
    for name, pool in pools.items():
        names.add(("pool", name))
        names |= {("label", *item) for item in pool.get("nodeSelector", {}).items()}
        names |= {("toleration", json.dumps(t, sort_keys=True)) for t in pool.get("tolerations", [])}
    return names


@pytest.fixture(scope="module", params=list(VALUES))
def chart(request, helm) -> tuple[Render, str]:
    release, namespace, values = VALUES[request.param]
    return render(helm, release, namespace, values), SERVED if values else namespace


@pytest.mark.parametrize("preset_name", list(PRESETS))
def test_every_name_a_run_uses_exists_in_the_rendered_chart(chart, preset_name):
    chart_render, namespace = chart
    contract = chart_render.contract(namespace)  # as `submit` reads it from the namespace
    docs = dry_run_manifests(load_preset(preset_name), "run-1", namespace, "s3://bucket/runs", "", contract)
    missing = named_by(docs, contract) - rendered(chart_render, namespace)
    assert not missing, f"{preset_name} names what the chart does not render in {namespace}: {sorted(missing)}"


def _rayjob_crd_schema() -> dict:
    return yaml.safe_load((HERE / "crds" / "rayjob-minimal.yaml").read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("preset_name", ["8b", "full-405b"])
def test_dry_run_custom_resources_match_their_crds_and_their_pods_validate(chart, preset_name, tmp_path):
    chart_render, namespace = chart
    docs = dry_run_manifests(load_preset(preset_name), "run-1", namespace, "s3://bucket/runs", "",
                             chart_render.contract(namespace))
    schemas = {"RayJob": _rayjob_crd_schema(),
               "LlamaDeployment": llamadeployment_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]}
    resources = [doc for doc in docs if doc.get("kind") in schemas]
    assert {doc["kind"] for doc in resources} == set(schemas)
    pods = []
    for doc in resources:
        jsonschema.validate(doc, schemas[doc["kind"]])
        pods += [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod-{len(pods)}"}, "spec": spec}
                 for spec in _pods(doc)]
    (tmp_path / "pods.yaml").write_text(yaml.safe_dump_all(pods))
    validate = subprocess.run([str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet",
                               "-k", "1.30.0", str(tmp_path / "pods.yaml")], capture_output=True, text=True)
    assert validate.returncode == 0, validate.stdout[-2000:] + validate.stderr[-2000:]
