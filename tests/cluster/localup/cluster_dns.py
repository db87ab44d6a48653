"""The local cluster's DNS, a stand-in for CoreDNS (whose image cannot be pulled here): the kubelet
points every pod's resolv.conf at it (KubeletConfiguration clusterDNS), and it answers what
CoreDNS's kubernetes plugin answers for Services:

  SERVICE.NAMESPACE.svc.CLUSTER_DOMAIN  A -> the Service's ClusterIP, or a headless Service's
                                            ready endpoint addresses

read from the API server (cached for a second). AAAA for such a name is an empty answer; any other
name is NXDOMAIN (nothing outside the machine is reachable anyway). UDP only, stdlib only.

  python3 -m localup.cluster_dns STATE_DIR ADDRESS
"""
import socket
import struct
import sys
import time
from pathlib import Path

from .api import Api

DOMAIN = "cluster.local"
TTL_S = 5
A, AAAA, IN = 1, 28, 1
NOERROR, FORMERR, NXDOMAIN = 0, 1, 3


def parse_question(packet: bytes) -> tuple[int, int, str, int, int]:
    """(id, flags, name, qtype, end of the question) of a query with one question."""
    query_id, flags, questions = struct.unpack("!HHH", packet[:6])
    if questions != 1:
        raise ValueError("one question per query")
    labels, at = [], 12
    while packet[at]:
        length = packet[at]
        if length & 0xC0:
            raise ValueError("compressed names do not appear in questions")
        labels.append(packet[at + 1: at + 1 + length].decode("ascii").lower())
        at += 1 + length
    qtype, _ = struct.unpack("!HH", packet[at + 1: at + 5])
    return query_id, flags, ".".join(labels), qtype, at + 5


def answer(packet: bytes, lookup) -> bytes:
    """The response to `packet`; `lookup(name)` gives the IPv4 addresses of a cluster name, or None."""
    try:
        query_id, flags, name, qtype, end = parse_question(packet)
    except (ValueError, IndexError, struct.error):
        return struct.pack("!HHHHHH", int.from_bytes(packet[:2], "big") if len(packet) >= 2 else 0,
                           0x8000 | FORMERR, 0, 0, 0, 0)
    addresses = lookup(name)
    code = NXDOMAIN if addresses is None else NOERROR
    records = addresses if qtype == A and addresses else []
    # QR, the query's opcode and RD, AA (we own the cluster's domain), RA
    header = struct.pack("!HHHHHH", query_id, 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | code, 1, len(records), 0, 0)
    body = packet[12:end]
    for address in records:
        body += struct.pack("!HHHIH", 0xC00C, A, IN, TTL_S, 4) + socket.inet_aton(address)
    return header + body


class ServiceAddresses:
    """Service name -> addresses, from the API server (`get(path)` -> (HTTP status, JSON)), refreshed
    at most once a second."""

    def __init__(self, get):
        self.get, self.at, self.names = get, 0.0, {}

    def __call__(self, name: str) -> list[str] | None:
        suffix = f".svc.{DOMAIN}"
        if not name.endswith(suffix) or name[: -len(suffix)].count(".") != 1:
            return None
        if time.monotonic() - self.at > 1:
            self.names, self.at = self._read(), time.monotonic()
        return self.names.get(name[: -len(suffix)])

    def _read(self) -> dict[str, list[str]]:
        names: dict[str, list[str]] = {}
        status, services = self.get("/api/v1/services")
        status_e, endpoints = self.get("/api/v1/endpoints")
        if status != 200 or status_e != 200:
            return self.names
        ready = {f"{e['metadata']['name']}.{e['metadata']['namespace']}":
                 [a["ip"] for subset in e.get("subsets") or [] for a in subset.get("addresses") or []]
                 for e in endpoints["items"]}
        for service in services["items"]:
            key = f"{service['metadata']['name']}.{service['metadata']['namespace']}"
            ip = service["spec"].get("clusterIP")
            names[key] = [ip] if ip and ip != "None" else ready.get(key, [])
        return names


def serve(sock: socket.socket, lookup) -> None:
    while True:
        packet, client = sock.recvfrom(512)
        sock.sendto(answer(packet, lookup), client)


def main(state: Path, address: str) -> None:
    api = Api((state / "server").read_text().strip(), state / "pki")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    serve(sock, ServiceAddresses(api.get))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
