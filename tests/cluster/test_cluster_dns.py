"""The local cluster's DNS stand-in (localup/cluster_dns.py) answers Service names as CoreDNS would,
from the real API server, over a real UDP socket on 127.0.0.1."""
import socket
import struct
import threading

import pytest
from kubernetes import client
from localup.cluster_dns import ServiceAddresses, serve

pytestmark = pytest.mark.cluster


def _query(name: str, qtype: int = 1, query_id: int = 0x1234) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def _resolve(address: tuple, name: str, qtype: int = 1) -> tuple[int, list[str]]:
    """(response code, IPv4 addresses answered) for `name`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(_query(name, qtype), address)
        response = sock.recv(512)
    query_id, flags, _, answers, _, _ = struct.unpack("!HHHHHH", response[:12])
    assert query_id == 0x1234 and flags & 0x8000
    # Each answer ends with its 4-byte address (a name pointer, type, class, TTL and length before it).
    at, found = 12 + len(_query(name, qtype)) - 12, []
    for _ in range(answers):
        found.append(socket.inet_ntoa(response[at + 12: at + 16]))
        at += 16
    return flags & 0xF, found


@pytest.fixture
def dns(kube) -> tuple:
    def get(path: str):
        body = kube.call_api(path, "GET", response_type="object", auth_settings=["BearerToken"],
                             _return_http_data_only=True)
        return 200, body

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    threading.Thread(target=serve, args=(sock, ServiceAddresses(get)), daemon=True).start()
    yield sock.getsockname()
    sock.close()


def test_service_names_resolve_to_their_cluster_ip_and_nothing_else_resolves(kube, k8s_namespace, dns):
    core = client.CoreV1Api(kube)
    service = core.create_namespaced_service(k8s_namespace, {"metadata": {"name": "mlflow"}, "spec": {
        "ports": [{"port": 5000}], "selector": {"app": "mlflow"}}})
    name = f"mlflow.{k8s_namespace}.svc.cluster.local"
    assert _resolve(dns, name) == (0, [service.spec.cluster_ip])
    assert _resolve(dns, name.upper()) == (0, [service.spec.cluster_ip])  # names are case-blind
    assert _resolve(dns, name, qtype=28) == (0, [])  # AAAA: the name exists, with no IPv6 address
    assert _resolve(dns, f"other.{k8s_namespace}.svc.cluster.local")[0] == 3  # NXDOMAIN
    assert _resolve(dns, f"mlflow.{k8s_namespace}.svc.cluster.local.{k8s_namespace}.svc.cluster.local")[0] == 3
    assert _resolve(dns, "pypi.org")[0] == 3


def test_a_headless_service_resolves_to_its_ready_endpoints(kube, k8s_namespace, dns):
    core = client.CoreV1Api(kube)
    # No selector: the endpoints controller leaves this Service's Endpoints to us.
    core.create_namespaced_service(k8s_namespace, {"metadata": {"name": "head"}, "spec": {
        "clusterIP": "None", "ports": [{"port": 6379}]}})
    core.create_namespaced_endpoints(k8s_namespace, {"metadata": {"name": "head"}, "subsets": [
        {"addresses": [{"ip": "198.18.128.7"}], "ports": [{"port": 6379}]}]})
    assert _resolve(dns, f"head.{k8s_namespace}.svc.cluster.local") == (0, ["198.18.128.7"])


def test_a_malformed_query_gets_a_format_error():
    from localup.cluster_dns import answer

    response = answer(b"\x12\x34\x00", lambda name: None)
    assert response[:2] == b"\x12\x34" and response[3] & 0xF == 1
