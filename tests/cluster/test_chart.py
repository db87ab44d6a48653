"""charts/llamaops: lint, offline schema validation for 1.27-1.33, the cluster contract it renders,
and helm install / upgrade / uninstall on the real kube-apiserver (no kubelet: pods stay Pending, so
no --wait)."""
import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from chart_render import Render, fail_line, render
from kubernetes import client

from llamaops.operators.spec import crd
from llamaops.platform.config.cluster import (
    CLUSTER_CONFIGMAP,
    CLUSTER_KEY,
    PLATFORM_ENV_KEYS,
    ClusterContract,
    NodePool,
    parse_contract,
)

HERE = Path(__file__).resolve().parent
CHART = HERE.parents[1] / "charts" / "llamaops"
BIN = Path(sys.executable).parent


def run(*argv, check=True, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"{argv[:3]} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out


def test_chart_lints_strict(helm):
    assert "0 chart(s) failed" in run(helm, "lint", "--strict", CHART).stdout


# Every new value away from its default: release `ml`, two served namespaces, an existing S3 Secret
# with its own key names, a CPU pool, Kueue, an external MLflow with basic auth.
CUSTOM = {
    "s3": {"existingSecret": "s3-creds", "secretKeys": {"accessKey": "AWS_ACCESS_KEY_ID", "secretKey": "AWS_SECRET_ACCESS_KEY"}},
    "pipelines": {"namespaces": ["team-a", "team-b"], "cpuNodePool": "cpu"},
    "nodePools": {"cpu": {"nodeSelector": {"llamaops.io/pool": "cpu"}, "gpusPerNode": 0}},
    "queueing": {"kueueQueue": "team-queue", "priorityClass": "high"},
    "mlflow": {"enabled": False, "externalUri": "https://mlflow.example.com", "credentialsSecret": "mlflow-auth"},
}
GENERATED_SECRET = {**CUSTOM, "s3": {"secretKeys": CUSTOM["s3"]["secretKeys"]}}
PIPELINE_RULES = [
    {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
    {"apiGroups": ["llamaops.io"], "resources": ["llamadeployments"],
     "verbs": ["create", "get", "list", "watch", "patch", "update", "delete"]},
]


def _values_args(values: dict, tmp_path: Path) -> list:
    if not values:
        return []
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    return ["-f", path]


@pytest.mark.parametrize("values", [[], ["--set", "s3.external.enabled=true", "--set", "s3.external.endpoint=https://s3.example.com",
                                         "--set", "s3.existingSecret=s3-creds", "--set", "mlflow.database.existingSecret=db"],
                                    "custom", "generated-secret"])
def test_rendered_manifests_validate_strict_for_1_27_to_1_33(helm, tmp_path, values):
    if isinstance(values, str):
        values = _values_args(CUSTOM if values == "custom" else GENERATED_SECRET, tmp_path)
    rendered = tmp_path / "all.yaml"
    rendered.write_text(run(helm, "template", "r", CHART, "-n", "llamaops", *values).stdout)
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    for d in docs:
        for c in d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["limits"], c["name"]
            if d["kind"] != "Job":  # a Job's pod runs to completion: nothing to probe
                assert c["livenessProbe"] and c["readinessProbe"], c["name"]
            for env in c.get("env", []):  # credentials only through Secrets
                assert not any(w in env["name"] for w in ("PASSWORD", "SECRET")) or "valueFrom" in env
    for minor in range(27, 34):
        out = run(BIN / "kubernetes-validate", "--strict", "-k", f"1.{minor}.0", rendered, check=False)
        assert out.returncode == 0, f"1.{minor}: {out.stdout[-2000:]}{out.stderr[-2000:]}"


def test_chart_crd_is_the_operator_crd():
    shipped = yaml.safe_load((CHART / "crds" / "llamadeployments.yaml").read_text())
    assert shipped == crd()


@pytest.mark.cluster
@pytest.mark.slow
def test_install_upgrade_uninstall_on_the_api_server(helm, kube, k8s_cluster, k8s_namespace):
    # --no-hooks: no kubelet runs pods here, so the MinIO set-up Job (a post-install hook) would never end.
    kc = ["--kubeconfig", k8s_cluster.kubeconfig, "-n", k8s_namespace, "--no-hooks"]
    bad = run(helm, "install", "bad", CHART, *kc, "--set", "s3.bucket=NO_SUCH", check=False)
    assert bad.returncode != 0 and "values don't meet the specifications of the schema" in bad.stderr
    assert "s3.bucket" in bad.stderr or "bucket" in bad.stderr

    run(helm, "install", "r", CHART, *kc)
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    assert {d.metadata.name for d in apps.list_namespaced_deployment(k8s_namespace).items} == {"r-llamaops-operator", "r-llamaops-mlflow"}
    assert {s.metadata.name for s in apps.list_namespaced_stateful_set(k8s_namespace).items} == {"r-llamaops-minio", "r-llamaops-postgresql"}
    pools = core.read_namespaced_config_map("llamaops-node-pools", k8s_namespace).data["pools.yaml"]
    assert "h100" in yaml.safe_load(pools)
    secret = core.read_namespaced_secret("r-llamaops-s3", k8s_namespace).data
    client.ApiextensionsV1Api(kube).read_custom_resource_definition("llamadeployments.llamaops.io")

    run(helm, "upgrade", "r", CHART, *kc, "--set", "nodePools.a100.gpusPerNode=8",
        "--set", "nodePools.a100.nodeSelector.llamaops\\.io/pool=a100")
    pools = core.read_namespaced_config_map("llamaops-node-pools", k8s_namespace).data["pools.yaml"]
    assert set(yaml.safe_load(pools)) == {"h100", "a100"}
    # Generated credentials survive the upgrade (read back with lookup).
    assert core.read_namespaced_secret("r-llamaops-s3", k8s_namespace).data == secret

    run(helm, "uninstall", "r", *kc)
    assert not apps.list_namespaced_deployment(k8s_namespace).items
    assert not apps.list_namespaced_stateful_set(k8s_namespace).items


# --- the cluster contract (helm template only: no cluster) ---

def _secret_refs(r: Render) -> list[dict]:
    """Every secretKeyRef of every container the chart renders."""
    refs = []
    for d in r.docs:
        spec = d.get("spec", {})
        pod = spec.get("template", {}).get("spec", spec)
        for c in pod.get("containers", []):
            refs += [e["valueFrom"]["secretKeyRef"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
    return refs


def test_default_values_render_the_contract_defaults(helm):
    r = render(helm, "llamaops", "llamaops")
    contract = r.contract()
    assert contract.image == "ghcr.io/llamaops/llamaops:0.1.0"
    assert contract.model_copy(update={"image": ""}) == ClusterContract()
    # The names it gives exist in the release namespace, where the pipeline runs by default.
    made = r.objects("llamaops")
    assert contract.s3Secret.name in made["Secret"] and contract.platformConfigMap in made["ConfigMap"]
    assert {CLUSTER_CONFIGMAP, contract.nodePoolsConfigMap} <= made["ConfigMap"]
    assert contract.serviceAccount in made["ServiceAccount"]
    secret = r.get("Secret", contract.s3Secret.name)["data"]
    assert set(secret) == {contract.s3Secret.userKey, contract.s3Secret.passwordKey}
    platform = r.get("ConfigMap", contract.platformConfigMap)["data"]
    assert platform["LLAMAOPS_S3_ENDPOINT"] == "http://llamaops-minio.llamaops.svc:9000"
    assert platform["LLAMAOPS_ARTIFACT_ROOT"] == "s3://llamaops/runs"
    assert platform["MLFLOW_TRACKING_URI"] == "http://llamaops-mlflow.llamaops.svc:5000"
    assert {"KFP_ENDPOINT", "KUBERAY_NAMESPACE", "RAY_VERSION", "LLAMAOPS_S3_BUCKET"} <= set(platform)
    # No `llamaops-llamaops-*`: the release name already says llamaops.
    assert not any("llamaops-llamaops" in d["metadata"]["name"] for d in r.docs)


@pytest.mark.parametrize(("release", "fullname"), [("r", "r-llamaops"), ("my-llamaops", "my-llamaops"),
                                                   ("llamaops-" + "x" * 44, "llamaops-" + "x" * 41)])
def test_fullname_is_the_release_name_when_it_says_llamaops(helm, release, fullname):
    r = render(helm, release, "ns")
    assert r.contract().platformConfigMap == f"{fullname}-platform"
    assert r.contract().s3Secret.name == f"{fullname}-s3"
    assert f"{fullname}-operator" in r.objects("ns")["Deployment"]


@pytest.mark.parametrize("values", [CUSTOM, GENERATED_SECRET], ids=["existing-secret", "generated-secret"])
def test_custom_values_render_one_contract_whose_names_exist_in_every_served_namespace(helm, values):
    r = render(helm, "ml", "ml", values)
    contract = r.contract()
    assert contract.image == "ghcr.io/llamaops/llamaops:0.1.0" and contract.imagePullPolicy == "IfNotPresent"
    assert contract.serviceAccount == "llamaops-pipeline"
    assert contract.s3Secret.userKey == "AWS_ACCESS_KEY_ID" and contract.s3Secret.passwordKey == "AWS_SECRET_ACCESS_KEY"
    assert contract.s3Secret.name == (values["s3"].get("existingSecret") or "ml-llamaops-s3")
    assert contract.mlflowSecret.model_dump() == {"name": "mlflow-auth", "userKey": "username", "passwordKey": "password"}
    assert contract.platformConfigMap == "ml-llamaops-platform"
    assert contract.queueing.kueueQueue == "team-queue" and contract.queueing.priorityClass == "high"
    assert contract.cpuPool == "cpu" and contract.pool("cpu", "test") == NodePool(nodeSelector={"llamaops.io/pool": "cpu"})
    assert set(contract.nodePools) == {"h100", "cpu"}
    # The operator's node pools: in the release namespace, the same pools the contract carries.
    pools = yaml.safe_load(r.get("ConfigMap", contract.nodePoolsConfigMap)["data"]["pools.yaml"])
    assert {name: NodePool(**pool) for name, pool in pools.items()} == contract.nodePools
    # Every key that reads the S3 Secret uses the configured key names.
    for ref in _secret_refs(r):
        if ref["name"] == contract.s3Secret.name:
            assert ref["key"] in {contract.s3Secret.userKey, contract.s3Secret.passwordKey}, ref

    secrets = []
    for ns in ["ml", "team-a", "team-b"]:
        made = r.objects(ns)
        assert r.contract(ns) == contract, ns  # one contract, wherever it is read
        assert {CLUSTER_CONFIGMAP, contract.platformConfigMap} <= made["ConfigMap"], ns
        platform = r.get("ConfigMap", contract.platformConfigMap, ns)["data"]
        assert set(PLATFORM_ENV_KEYS) <= set(platform)
        assert platform["MLFLOW_TRACKING_URI"] == "https://mlflow.example.com"
        assert platform["LLAMAOPS_S3_ENDPOINT"] == "http://ml-llamaops-minio.ml.svc:9000"  # resolvable from any namespace
        if "existingSecret" in values["s3"]:
            assert "Secret" not in made or contract.s3Secret.name not in made["Secret"], ns  # the user provides it
        else:
            secret = r.get("Secret", contract.s3Secret.name, ns)["data"]
            assert set(secret) == {contract.s3Secret.userKey, contract.s3Secret.passwordKey}
            secrets.append(secret)
    assert all(s == secrets[0] for s in secrets), "the copies must hold the same credentials"

    # The pipeline's service account and its Role in each served namespace, and only there.
    for ns in ["team-a", "team-b"]:
        made = r.objects(ns)
        assert contract.serviceAccount in made["ServiceAccount"], ns
        assert r.get("Role", "ml-llamaops-pipeline", ns)["rules"] == PIPELINE_RULES
        binding = r.get("RoleBinding", "ml-llamaops-pipeline", ns)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ml-llamaops-pipeline"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": contract.serviceAccount, "namespace": ns}]
    assert contract.serviceAccount not in r.objects("ml").get("ServiceAccount", set())  # ml is not served
    for d in r.cluster_scoped():  # nothing cluster-wide for the pipeline
        assert all(s["name"] != contract.serviceAccount for s in d.get("subjects", [])), d["metadata"]["name"]


def test_an_existing_service_account_is_bound_not_created(helm):
    r = render(helm, "r", "ml", {"pipelines": {"createServiceAccount": False, "serviceAccount": "runner"}})
    assert "runner" not in r.objects("ml")["ServiceAccount"]
    assert r.get("RoleBinding", "r-llamaops-pipeline", "ml")["subjects"][0]["name"] == "runner"
    assert r.contract().serviceAccount == "runner"


@pytest.mark.parametrize(("values", "line"), [
    ({"pipelines": {"cpuNodePool": "cpu"}}, 'pipelines.cpuNodePool "cpu" is not a pool in nodePools (declared: h100)'),
    ({"nodePools": {"a100": {"gpusPerNode": 8}}},
     "nodePools.a100 has gpusPerNode 8 but no nodeSelector: GPU pods would land on any node; set nodePools.a100.nodeSelector"),
    ({"mlflow": {"enabled": False}},
     "mlflow.externalUri is required when mlflow.enabled is false (pipelines need an MLflow tracking server)"),
    ({"s3": {"secretKeys": {"accessKey": "k", "secretKey": "k"}}},
     's3.secretKeys.accessKey and s3.secretKeys.secretKey are both "k": the Secret needs two different keys'),
])
def test_bad_values_fail_with_one_line(helm, values, line):
    assert fail_line(helm, values).endswith("): " + line)


def test_new_values_are_in_the_schema(helm):
    for values in ({"pipelines": {"nope": 1}}, {"queueing": {"nope": 1}}, {"s3": {"secretKeys": {"accessKey": "a", "nope": "b"}}},
                   {"mlflow": {"externalUri": "mlflow:5000"}}, {"pipelines": {"namespaces": ["Team_A"]}},
                   {"image": {"digest": "latest"}}, {"operator": {"watchNamespaces": ["Apps"]}},
                   {"pipelines": {"cpuPod": {"cpus": 0, "memoryGiB": 1}}}, {"pipelines": {"cpuPod": {"cpus": "1"}}},
                   {"nodePools": {"h100": {"nodePod": {"cpus": 8, "memoryGiB": 64, "gpus": 8}}}}):
        assert "don't meet the specifications of the schema" in fail_line(helm, values), values


def test_digests_pin_every_image_and_reach_the_pipelines_and_servers(helm):
    def containers(r):
        for d in r.docs:
            spec = d.get("spec", {}).get("template", {}).get("spec") or (d["spec"] if d["kind"] == "Pod" else None)
            for c in (spec or {}).get("containers", []):
                yield d["metadata"]["name"], c

    plain = render(helm, "ml", "platform")
    assert all(":" in c["image"] and not c["image"].endswith(":latest") for _, c in containers(plain))
    assert all("@" not in c["image"] for _, c in containers(plain))

    pins = {name: "sha256:" + str(i) * 64 for i, name in enumerate(("llamaops", "minio", "postgres"), start=1)}
    r = render(helm, "ml", "platform", {"image": {"digest": pins["llamaops"]},
                                        "s3": {"minio": {"image": {"repository": "quay.io/minio/minio", "tag": "x",
                                                                   "digest": pins["minio"]}}},
                                        "mlflow": {"database": {"postgresql": {"image": {"repository": "postgres", "tag": "16.4",
                                                                                          "digest": pins["postgres"]}}}}})
    images = {name: c["image"] for name, c in containers(r)}
    assert images["ml-llamaops-operator"] == f"ghcr.io/llamaops/llamaops:0.1.0@{pins['llamaops']}"
    assert images["ml-llamaops-mlflow"] == images["ml-llamaops-operator"] == images["ml-llamaops-test-platform"]
    assert images["ml-llamaops-minio"].endswith("@" + pins["minio"])
    assert images["ml-llamaops-postgresql"].endswith("@" + pins["postgres"])
    # Pipeline steps and RayJobs (the contract) and the operator's servers run the pinned image too.
    assert r.contract().image == images["ml-llamaops-operator"]
    operator_env = {e["name"]: e.get("value") for _, c in containers(r) for e in c.get("env", []) if _ == "ml-llamaops-operator"}
    assert operator_env["LLAMAOPS_IMAGE"] == images["ml-llamaops-operator"]


# --- the pipeline's RBAC on the real API server ---

def _can(auth, namespace: str, verb: str, group: str, resource: str, user: str) -> bool:
    review = auth.create_subject_access_review({"spec": {"user": user, "resourceAttributes": {
        "namespace": namespace, "verb": verb, "group": group, "resource": resource}}})
    return review.status.allowed


@pytest.mark.cluster
@pytest.mark.slow
def test_pipeline_service_account_may_run_rayjobs_and_deploy_only_where_served(helm, kube, k8s_cluster, k8s_namespace):
    """helm install with two served namespaces: the RBAC authorizer (the API server runs
    --authorization-mode=RBAC) lets the pipeline's SA do its work there and nothing else."""
    core, auth = client.CoreV1Api(kube), client.AuthorizationV1Api(kube)
    served = [f"{k8s_namespace}-team-a", f"{k8s_namespace}-team-b"]
    for ns in served:
        core.create_namespace({"metadata": {"name": ns}})
    # --no-hooks: no kubelet runs pods here, so the MinIO set-up Job (a post-install hook) would never end.
    kc = ["--kubeconfig", k8s_cluster.kubeconfig, "-n", k8s_namespace, "--no-hooks"]
    try:
        out = run(helm, "install", "llamaops", CHART, *kc, "--set", f"pipelines.namespaces={{{','.join(served)}}}")
        assert f"Pipelines run as service account llamaops-pipeline in: {', '.join(served)}" in out.stdout
        released = core.read_namespaced_secret("llamaops-s3", k8s_namespace).data
        for ns in served:
            sa = f"system:serviceaccount:{ns}:llamaops-pipeline"
            for verb in ("create", "get", "watch", "delete"):
                assert _can(auth, ns, verb, "ray.io", "rayjobs", sa), (ns, verb)
            for verb in ("create", "get", "patch", "update", "delete"):
                assert _can(auth, ns, verb, "llamaops.io", "llamadeployments", sa), (ns, verb)
            # Not in a namespace the chart does not serve (here: the release namespace itself).
            assert not _can(auth, k8s_namespace, "create", "ray.io", "rayjobs", sa)
            assert not _can(auth, k8s_namespace, "patch", "llamaops.io", "llamadeployments", sa)
            # Nothing cluster-wide, no secrets, no pods.
            assert not _can(auth, "", "list", "", "secrets", sa)
            assert not _can(auth, ns, "get", "", "secrets", sa)
            assert not _can(auth, ns, "create", "", "pods", sa)
            assert not _can(auth, ns, "patch", "llamaops.io", "llamadeployments/status", sa)
            # The operator serves the LlamaDeployments of the served namespaces, and writes nowhere else.
            operator = f"system:serviceaccount:{k8s_namespace}:llamaops-operator"
            assert _can(auth, ns, "create", "apps", "deployments", operator)
            assert _can(auth, ns, "patch", "llamaops.io", "llamadeployments/status", operator)
            assert not _can(auth, k8s_namespace, "create", "apps", "deployments", operator)
            assert not _can(auth, "", "list", "apps", "deployments", operator)
            assert not _can(auth, "", "list", "", "namespaces", operator)
            assert not _can(auth, ns, "get", "", "secrets", operator)
            # What the pipeline reads in its namespace: the contract, the endpoints, the credentials.
            contract = parse_contract(core.read_namespaced_config_map(CLUSTER_CONFIGMAP, ns).data[CLUSTER_KEY], ns)
            assert contract.model_copy(update={"image": ""}) == ClusterContract()
            assert core.read_namespaced_config_map(contract.platformConfigMap, ns).data["MLFLOW_TRACKING_URI"] == \
                f"http://llamaops-mlflow.{k8s_namespace}.svc:5000"
            assert core.read_namespaced_secret(contract.s3Secret.name, ns).data == released
            core.read_namespaced_service_account(contract.serviceAccount, ns)
        # An unserved namespace has no copy.
        assert not core.list_namespaced_service_account(k8s_namespace, field_selector="metadata.name=llamaops-pipeline").items

        # Upgrade keeps the generated credentials in every copy; dropping a namespace removes its objects.
        run(helm, "upgrade", "llamaops", CHART, *kc, "--set", f"pipelines.namespaces={{{served[0]}}}")
        assert core.read_namespaced_secret("llamaops-s3", served[0]).data == released
        assert base64.b64decode(released["access-key"])
        assert not core.list_namespaced_secret(served[1], label_selector="app.kubernetes.io/instance=llamaops").items
        assert not _can(auth, served[1], "create", "ray.io", "rayjobs", f"system:serviceaccount:{served[1]}:llamaops-pipeline")

        run(helm, "uninstall", "llamaops", *kc)
        for ns in served:
            assert not core.list_namespaced_config_map(ns, label_selector="app.kubernetes.io/instance=llamaops").items
            assert not _can(auth, ns, "create", "ray.io", "rayjobs", f"system:serviceaccount:{ns}:llamaops-pipeline")
    finally:
        run(helm, "uninstall", "llamaops", *kc, check=False)
        for ns in served:
            core.delete_namespace(ns)


def test_operator_watches_its_namespaces_or_every_one_when_asked(helm):
    def kopf_args(r) -> list[str]:
        return r.get("Deployment", "ml-llamaops-operator")["spec"]["template"]["spec"]["containers"][0]["command"]

    r = render(helm, "ml", "platform", {"pipelines": {"namespaces": ["team-a"]}, "operator": {"watchNamespaces": ["apps"]}})
    assert [a for a in kopf_args(r) if a.startswith("--") and "namespace" in a] == ["--namespace=team-a", "--namespace=apps"]
    assert {d["metadata"]["namespace"] for d in r.docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-serving")} \
        == {"team-a", "apps"}
    (cluster_role,) = [d for d in r.cluster_scoped() if d["kind"] == "ClusterRole"]
    assert [rule["resources"] for rule in cluster_role["rules"]] == [["customresourcedefinitions"]]  # read-only
    assert {verb for rule in cluster_role["rules"] for verb in rule["verbs"]} == {"get", "list", "watch"}

    everywhere = render(helm, "ml", "platform", {"operator": {"watchNamespaces": ["*"]}})
    assert "--all-namespaces" in kopf_args(everywhere)
    assert "deployments" in {res for d in everywhere.cluster_scoped() if d["kind"] == "ClusterRole"
                             for rule in d["rules"] for res in rule["resources"]}


def test_pod_sizes_in_the_values_are_the_contracts(helm):
    """Clusters whose nodes are smaller (or larger) than the defaults say so once, in the values."""
    assert render(helm, "r", "ml", {}).contract().cpuPod.model_dump() == {"cpus": 4, "memoryGiB": 16}
    values = {"pipelines": {"cpuPod": {"cpus": 0.5, "memoryGiB": 1.5}},
              "nodePools": {"h100": {"nodeSelector": {"pool": "h100"}, "gpusPerNode": 8,
                                     "nodePod": {"cpus": 200, "memoryGiB": 1900}}}}
    contract = render(helm, "r", "ml", values).contract()
    assert contract.cpuPod.model_dump() == {"cpus": 0.5, "memoryGiB": 1.5}
    assert contract.pool("h100", "test").whole_node_pod(8).model_dump() == {"cpus": 200, "memoryGiB": 1900}
