"""Every pod llamaops makes, whoever makes it (the chart, the operator, a RayJob from a pipeline
step), is Pod Security "restricted" and selected by a NetworkPolicy that lets in only what it
needs. The chart is rendered with helm; the operator's and the pipeline's pods come from their own
builders; traffic is judged by pod_policies.ingress_allowed and egress_allowed (NetworkPolicy
semantics)."""
import pytest
from chart_render import render
from pod_policies import Pod, egress_allowed, ingress_allowed, policies_for, restricted_violations

from llamaops.operators.manifests import deployment
from llamaops.operators.spec import DeploymentSpec
from llamaops.pipelines.dry_run import dry_run_manifests
from llamaops.pipelines.pod_config import STEP_POD_LABELS
from llamaops.platform.config import load_preset
from llamaops.platform.config.cluster import NodePool
from llamaops.platform.deploy.serving import SERVING_PORT
from llamaops.platform.eval.sandbox import SandboxLimits
from llamaops.platform.eval.sandbox_pod_manifests import pod as code_sandbox_pod

RELEASE_NS, SERVED_NS = "llamaops", "team-a"


@pytest.fixture(scope="module")
def made(helm):
    """(pods: name -> (Pod, pod spec or None), NetworkPolicies) for a release serving SERVED_NS."""
    r = render(helm, "llamaops", RELEASE_NS, {"pipelines": {"namespaces": [SERVED_NS]}})
    policies = [{**d, "metadata": {**d["metadata"], "namespace": r.ns(d)}} for d in r.docs if d["kind"] == "NetworkPolicy"]
    pods = {}

    def add(name, namespace, template):
        spec = template["spec"]
        ports = {p["name"]: p["containerPort"] for c in spec["containers"] for p in c.get("ports", []) if "name" in p}
        pods[name] = (Pod(namespace, template["metadata"].get("labels", {}), ports), spec)

    for d in r.docs:
        if "template" in d.get("spec", {}):
            add(d["metadata"]["labels"].get("app.kubernetes.io/component", d["metadata"]["name"]), r.ns(d), d["spec"]["template"])
        elif d["kind"] == "Pod":
            add("helm-test", r.ns(d), d)
    add("code-sandbox", SERVED_NS, code_sandbox_pod("cs", SERVED_NS, "llamaops:1", ["cs-0"], 164, SandboxLimits()))
    spec = DeploymentSpec(model="s3://models/llama-8b", nodePool="h100")
    add("server", SERVED_NS, deployment("m", SERVED_NS, "uid", spec, NodePool(gpusPerNode=8))["spec"]["template"])
    docs = dry_run_manifests(load_preset("8b"), "run-1", SERVED_NS)
    for job in (d for d in docs if d.get("kind") == "RayJob"):
        step = job["metadata"]["labels"]["llamaops.io/step"]
        cluster = job["spec"]["rayClusterSpec"]
        add(f"{step}-head", SERVED_NS, cluster["headGroupSpec"]["template"])
        add(f"{step}-worker", SERVED_NS, cluster["workerGroupSpecs"][0]["template"])
        add(f"{step}-submitter", SERVED_NS, job["spec"]["submitterPodTemplate"])
    # KFP builds step pods from the compiled platform spec: their labels are all llamaops decides.
    executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name, config in executors.items():
        assert config["podMetadata"]["labels"] == STEP_POD_LABELS, name
    pods["step"] = (Pod(SERVED_NS, STEP_POD_LABELS), None)
    return pods, policies


def test_every_pod_is_restricted_and_selected_by_an_ingress_policy(made):
    pods, policies = made
    assert {"operator", "mlflow", "minio", "postgresql", "helm-test", "llamaops-minio-setup", "server", "data-head",
            "pretrain-worker", "safety-submitter", "step", "code-sandbox"} <= set(pods)
    for name, (pod, spec) in pods.items():
        if spec is not None:
            assert restricted_violations(spec) == [], name
        assert policies_for(policies, pod), f"no NetworkPolicy selects the {name} pod"


def test_the_restricted_check_finds_what_the_profile_forbids():
    ok = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
          "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": False,
                                                           "capabilities": {"drop": ["ALL"]}}}]}
    assert restricted_violations(ok) == []
    assert restricted_violations({**ok, "hostNetwork": True, "volumes": [{"name": "h", "hostPath": {"path": "/"}}]}) == [
        "host namespace hostNetwork", "volume h of a type restricted forbids"]
    root = {**ok, "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}
    assert restricted_violations(root) == ["c: runAsNonRoot is not true"]


OUTSIDER = Pod("other-team", {"app": "anything"})
KUBERAY = Pod("ray-system", {"app.kubernetes.io/name": "kuberay-operator"})
NEIGHBOUR = Pod(SERVED_NS, {"app": "not-llamaops"})


@pytest.mark.parametrize(("source", "target", "port", "allowed"), [
    ("mlflow", "postgresql", 5432, True),
    ("step", "postgresql", 5432, False),
    ("pretrain-worker", "postgresql", 5432, False),
    ("step", "minio", 9000, True),
    ("pretrain-worker", "minio", 9000, True),
    ("server", "minio", 9000, True),
    ("llamaops-minio-setup", "minio", 9000, True),
    ("llamaops-minio-setup", "mlflow", 5000, True),
    (OUTSIDER, "llamaops-minio-setup", 8080, False),
    ("helm-test", "mlflow", 5000, True),
    ("step", "mlflow", 5000, True),
    (OUTSIDER, "minio", 9000, False),
    (OUTSIDER, "mlflow", 5000, False),
    (NEIGHBOUR, "mlflow", 5000, False),
    ("step", "operator", 8080, False),
    (OUTSIDER, "step", 8080, False),
    ("pretrain-worker", "pretrain-head", 6379, True),
    ("pretrain-submitter", "pretrain-head", 8265, True),
    (KUBERAY, "pretrain-head", 8265, True),
    (KUBERAY, "pretrain-head", 6379, False),
    (OUTSIDER, "pretrain-head", 8265, False),
    (NEIGHBOUR, "pretrain-head", 8265, False),
    (OUTSIDER, "server", SERVING_PORT, True),
    (OUTSIDER, "server", SERVING_PORT + 1, False),
    ("step", "code-sandbox", 8080, False),
    ("pretrain-head", "code-sandbox", 8080, False),
    ("server", "code-sandbox", 8080, False),
    (OUTSIDER, "code-sandbox", 8080, False),
], ids=lambda v: v.namespace if isinstance(v, Pod) else str(v))
def test_each_pod_takes_only_the_traffic_it_needs(made, source, target, port, allowed):
    pods, policies = made
    source_pod = source if isinstance(source, Pod) else pods[source][0]
    assert ingress_allowed(policies, source_pod, pods[target][0], port) is allowed


@pytest.mark.parametrize(("target", "port"), [("minio", 9000), ("mlflow", 5000), ("pretrain-head", 8265),
                                              ("server", SERVING_PORT), ("operator", 8080)])
def test_the_code_sandbox_reaches_nothing(made, target, port):
    pods, policies = made
    assert egress_allowed(policies, pods["step"][0], pods[target][0], port)  # other pods' egress stays open
    assert not egress_allowed(policies, pods["code-sandbox"][0], pods[target][0], port)


def test_the_code_sandbox_policy_denies_all_traffic_both_ways(made):
    pods, policies = made
    # No rules at all: nor DNS, nor the API server, nor any address outside the cluster.
    [policy] = [p for p in policies_for(policies, pods["code-sandbox"][0]) if "Egress" in p["spec"]["policyTypes"]]
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in policy["spec"] and "egress" not in policy["spec"]
