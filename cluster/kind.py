"""A throwaway kind cluster with everything llamaops needs: KubeRay, Kubeflow Pipelines, the chart.

Each step is an argv list (see `up_commands`), so the plan is testable without Docker; kind and
Docker cannot run on every machine (no images can be pulled on the CI machines).
"""
import shutil
import subprocess
from pathlib import Path

# 1.5.1 was the first with RayJob authOptions (Ray token auth); from 1.6 the Ray pods' probes are HTTP
# GETs of Ray's agent for Ray >= 2.53 (1.5 execs wget, which python:3.11-slim images lack).
KUBERAY_CHART_VERSION = "1.7.0"
KFP_VERSION = "2.5.0"
KFP_MANIFESTS = "github.com/kubeflow/pipelines/manifests/kustomize"
CHART = Path(__file__).resolve().parent.parent / "charts" / "llamaops"
REQUIRED_TOOLS = ("docker", "kind", "kubectl", "helm")


class ClusterToolMissing(ValueError):
    """A tool `cluster up` drives is not installed."""


def missing_tools() -> list[str]:
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]


def up_commands(name: str, namespace: str = "llamaops", values: Path | None = None) -> list[list[str]]:
    context = f"kind-{name}"
    kubectl = ["kubectl", "--context", context]
    helm = ["helm", "--kube-context", context]
    # KFP (standalone) runs pipeline pods, and so the RayJobs and LlamaDeployments they create, in kubeflow.
    chart = [*helm, "upgrade", "--install", "llamaops", str(CHART), "--namespace", namespace,
             "--create-namespace", "--set", f"pipelines.namespaces={{{namespace},kubeflow}}", "--wait", "--timeout", "10m"]
    return [
        ["kind", "create", "cluster", "--name", name, "--wait", "180s"],
        [*helm, "repo", "add", "kuberay", "https://ray-project.github.io/kuberay-helm/", "--force-update"],
        [*helm, "upgrade", "--install", "kuberay-operator", "kuberay/kuberay-operator", "--version",
         KUBERAY_CHART_VERSION, "--namespace", "kuberay", "--create-namespace", "--wait"],
        [*kubectl, "apply", "-k", f"{KFP_MANIFESTS}/cluster-scoped-resources?ref={KFP_VERSION}"],
        [*kubectl, "wait", "--for", "condition=established", "--timeout", "120s", "crd/applications.app.k8s.io"],
        [*kubectl, "apply", "-k", f"{KFP_MANIFESTS}/env/platform-agnostic?ref={KFP_VERSION}"],
        [*kubectl, "-n", "kubeflow", "wait", "--for", "condition=available", "--timeout", "900s", "deployment/ml-pipeline"],
        chart + (["--values", str(values)] if values else []),
    ]


def cluster_exists(name: str) -> bool:
    out = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True, check=True)
    return name in out.stdout.split()


def up(name: str, namespace: str = "llamaops", values: Path | None = None, echo=print) -> None:
    missing = missing_tools()
    if missing:
        raise ClusterToolMissing(f"{', '.join(missing)} not found on PATH: `cluster up` needs Docker, kind, kubectl and helm")
    commands = up_commands(name, namespace, values)
    if cluster_exists(name):
        commands = commands[1:]  # reuse it: every later step is idempotent
    for argv in commands:
        echo("$ " + " ".join(argv))
        subprocess.run(argv, check=True)


def down(name: str) -> None:
    if shutil.which("kind") is None:
        raise ClusterToolMissing("kind not found on PATH")
    subprocess.run(["kind", "delete", "cluster", "--name", name], check=True)
