"""Every address, name and path of the local single-node cluster, in one place.

Addresses never leave the machine: the node IP sits on a port-less bridge the script makes
(a stand-in for a dummy interface: this kernel has no dummy module), pods live on their own CNI
bridge, and the pod and service ranges come from the benchmarking block 198.18.0.0/15.
"""
import os
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("LLAMAOPS_K8S_CACHE", Path.home() / ".cache/llamaops/k8s"))
DOCKER_LOCK = CACHE / ".docker.lock"  # held by whoever runs a dockerd on the image store


@dataclass(frozen=True)
class Settings:
    state: Path = Path(os.environ.get("LLAMAOPS_LOCALUP_DIR", "/var/tmp/llamaops-localup"))
    docker_root: Path = CACHE / "docker"  # images survive local-down: they are a cache
    node_name: str = "llamaops-node"
    node_ip: str = os.environ.get("LLAMAOPS_NODE_IP", "192.0.2.200")
    node_link: str = "llamaops-node"  # holds node_ip
    pod_bridge: str = "llamaops-cni0"
    pod_subnet: str = "198.18.128.0/24"
    pod_gateway: str = "198.18.128.1"
    cluster_cidr: str = "198.18.128.0/17"
    service_cidr: str = "198.19.0.0/16"
    service_ip: str = "198.19.0.1"  # the `kubernetes` Service: first address of service_cidr
    pause_image: str = "llamaops/pause:local"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def docker_sock(self) -> Path:
        return self.state / "docker.sock"

    def path(self, *parts: str) -> Path:
        return self.state.joinpath(*parts)
