"""`helm uninstall` leaves nothing of the release behind (runs last in the tier: it removes the release)."""
import pytest
from kubernetes import client
from pod_helpers import run, wait_until

pytestmark = [pytest.mark.pods, pytest.mark.slow]


def _left(kube, release) -> list[str]:
    sel = f"app.kubernetes.io/instance={release.name}"
    core, apps, rbac = client.CoreV1Api(kube), client.AppsV1Api(kube), client.RbacAuthorizationV1Api(kube)
    ns = release.namespace
    found = [f"pod/{p.metadata.name}" for p in core.list_namespaced_pod(ns, label_selector=sel).items]
    found += [f"deployment/{d.metadata.name}" for d in apps.list_namespaced_deployment(ns, label_selector=sel).items]
    found += [f"service/{s.metadata.name}" for s in core.list_namespaced_service(ns, label_selector=sel).items]
    found += [f"configmap/{c.metadata.name}" for c in core.list_namespaced_config_map(ns, label_selector=sel).items]
    found += [f"secret/{s.metadata.name}" for s in core.list_namespaced_secret(ns, label_selector=sel).items]
    found += [f"serviceaccount/{s.metadata.name}" for s in core.list_namespaced_service_account(ns, label_selector=sel).items]
    found += [f"clusterrole/{r.metadata.name}" for r in rbac.list_cluster_role(label_selector=sel).items]
    found += [f"clusterrolebinding/{r.metadata.name}" for r in rbac.list_cluster_role_binding(label_selector=sel).items]
    return found


def test_helm_uninstall_leaves_nothing_behind(kube, release, helm, node_cluster):
    assert _left(kube, release), "the release should have objects before uninstalling"
    run(helm, "uninstall", release.name, "-n", release.namespace, "--wait", "--timeout", "5m",
        env=node_cluster.env, timeout=400)
    wait_until("no object of the release left", lambda: (not _left(kube, release), _left(kube, release)), 180)
    releases = run(helm, "list", "-a", "-n", release.namespace, "-q", env=node_cluster.env).stdout.split()
    assert release.name not in releases
