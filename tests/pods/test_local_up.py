"""tests/cluster/local-up on a running cluster: nothing restarts, the same KUBECONFIG comes back."""
import subprocess

import pytest
from pod_helpers import CLUSTER_DIR

pytestmark = [pytest.mark.pods]


def test_local_up_again_is_a_no_op_that_prints_the_same_kubeconfig(node_cluster):
    pids = sorted(p.read_text() for p in (node_cluster.settings.state / "pids").glob("*.pid"))
    out = subprocess.run([str(CLUSTER_DIR / "local-up")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == f"export KUBECONFIG={node_cluster.kubeconfig}"
    assert "already up" in out.stderr
    assert sorted(p.read_text() for p in (node_cluster.settings.state / "pids").glob("*.pid")) == pids


def test_no_cluster_address_is_routed_off_the_machine(node_cluster):
    """Pod and service ranges go to the pod bridge; forwarding off the bridge is dropped."""
    s = node_cluster.settings
    for cidr in (s.pod_subnet, s.service_cidr):
        route = subprocess.run(["ip", "route", "get", cidr.split("/")[0].rsplit(".", 1)[0] + ".9"],
                               capture_output=True, text=True).stdout
        assert f"dev {s.pod_bridge}" in route, route
    rules = subprocess.run(["iptables", "-S", "LLAMAOPS-ISOLATE"], capture_output=True, text=True).stdout
    assert f"-i {s.pod_bridge} ! -o {s.pod_bridge} -j DROP" in rules, rules
