"""Command lines and config files of etcd and the five Kubernetes components (v1.20 flags)."""
import json
import socket
import sys
from pathlib import Path

from .settings import Settings


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def etcd(bin_dir: Path, s: Settings, client_port: int) -> list[str]:
    peer = free_port()
    return [
        str(bin_dir / "etcd"), "--data-dir", str(s.path("etcd")), "--name", "local",
        "--listen-client-urls", f"http://127.0.0.1:{client_port}",
        "--advertise-client-urls", f"http://127.0.0.1:{client_port}",
        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-cluster", f"local=http://127.0.0.1:{peer}", "--unsafe-no-fsync",
    ]


def apiserver(bin_dir: Path, s: Settings, etcd_port: int, port: int) -> list[str]:
    pki = s.path("pki")
    return [
        str(bin_dir / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        # Bound to the node IP: pods reach it there (via the `kubernetes` Service), so does the host.
        f"--bind-address={s.node_ip}", f"--advertise-address={s.node_ip}",
        f"--secure-port={port}", "--insecure-port=0", "--allow-privileged=true",
        f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={s.service_cidr}",
        "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--cert-dir={s.path('apiserver-certs')}",
    ]


def controller_manager(bin_dir: Path, s: Settings) -> list[str]:
    kc, pki = s.path("kcm.kubeconfig"), s.path("pki")
    return [
        str(bin_dir / "kube-controller-manager"), f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--port=0",
        "--leader-elect=false", "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-cidr={s.cluster_cidr}", f"--service-cluster-ip-range={s.service_cidr}",
        f"--cert-dir={s.path('kcm-certs')}",
    ]


def scheduler(bin_dir: Path, s: Settings) -> list[str]:
    kc = s.path("scheduler.kubeconfig")
    return [
        str(bin_dir / "kube-scheduler"), f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}", "--bind-address=127.0.0.1",
        f"--secure-port={free_port()}", "--port=0", "--leader-elect=false",
    ]


def kubelet_config(s: Settings) -> Path:
    pki = s.path("pki")
    cfg = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": s.node_ip, "port": free_port(s.node_ip), "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": free_port(),
        "tlsCertFile": str(pki / "kubelet.crt"), "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "authentication": {"x509": {"clientCAFile": str(pki / "ca.crt")},
                           "webhook": {"enabled": False}, "anonymous": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},  # only x509 clients signed by our CA get in
        "cgroupDriver": "cgroupfs", "cgroupsPerQOS": True, "enforceNodeAllocatable": ["pods"],
        "failSwapOn": False, "makeIPTablesUtilChains": False, "hairpinMode": "hairpin-veth",
        "oomScoreAdj": 0,  # a negative score needs CAP_SYS_RESOURCE, which root lacks here
        # Images here cannot be pulled again: never garbage-collect them, never evict for disk.
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "resolvConf": "", "serializeImagePulls": False, "maxPods": 50,
        # Pods resolve Service names through cluster_dns.py on the node's address.
        "clusterDNS": [s.node_ip], "clusterDomain": "cluster.local",
    }
    path = s.path("kubelet-config.json")
    path.write_text(json.dumps(cfg, indent=1))
    return path


def cni_config(s: Settings) -> Path:
    d = s.path("cni")
    d.mkdir(exist_ok=True)
    conf = {"cniVersion": "0.4.0", "name": "llamaops", "plugins": [{
        "type": "bridge", "bridge": s.pod_bridge, "isGateway": True, "ipMasq": False,
        "hairpinMode": True,
        "ipam": {"type": "host-local", "dataDir": str(s.path("cni-ipam")),
                 "ranges": [[{"subnet": s.pod_subnet, "gateway": s.pod_gateway}]],
                 "routes": [{"dst": "0.0.0.0/0"}]},
    }]}
    (d / "10-llamaops.conflist").write_text(json.dumps(conf, indent=1))
    return d


def kubelet(bin_dir: Path, s: Settings) -> list[str]:
    return [
        str(bin_dir / "kubelet"), f"--config={kubelet_config(s)}",
        f"--kubeconfig={s.path('kubelet.kubeconfig')}",
        "--container-runtime=docker", f"--docker-endpoint=unix://{s.docker_sock}",
        f"--container-runtime-endpoint=unix://{s.path('dockershim.sock')}",
        f"--experimental-dockershim-root-directory={s.path('dockershim')}",
        f"--pod-infra-container-image={s.pause_image}",
        "--network-plugin=cni", "--cni-bin-dir=/usr/lib/cni", f"--cni-conf-dir={cni_config(s)}",
        f"--cni-cache-dir={s.path('cni-cache')}",
        f"--node-ip={s.node_ip}", f"--hostname-override={s.node_name}",
        f"--root-dir={s.path('kubelet')}", f"--cert-dir={s.path('kubelet-certs')}", "--v=1",
    ]


def cluster_dns(s: Settings) -> list[str]:
    return [sys.executable, "-m", "localup.cluster_dns", str(s.state), s.node_ip]


def kube_proxy(bin_dir: Path, s: Settings) -> list[str]:
    return [
        str(bin_dir / "kube-proxy"), f"--kubeconfig={s.path('kube-proxy.kubeconfig')}",
        f"--hostname-override={s.node_name}", "--proxy-mode=iptables",
        f"--cluster-cidr={s.cluster_cidr}", f"--bind-address={s.node_ip}",
        f"--healthz-bind-address=127.0.0.1:{free_port()}",
        f"--metrics-bind-address=127.0.0.1:{free_port()}", "--oom-score-adj=0",
        # 0 = leave the host's conntrack table size and timeouts as they are.
        "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0",
        "--conntrack-tcp-timeout-close-wait=0",
    ]
