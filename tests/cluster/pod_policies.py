"""Two checks the local cluster cannot make for us (its Kubernetes 1.20 has no Pod Security
admission, and its bridge CNI enforces no NetworkPolicy), written from the Kubernetes docs:
- `restricted_violations`: the Pod Security Standards' "restricted" profile (v1.27+) for one pod spec;
- `ingress_allowed`: NetworkPolicy ingress semantics (podSelector, namespaceSelector, ports by
  number or by a container port's name; a pod no policy selects takes all traffic);
- `egress_allowed`: the same for egress (a pod no Egress policy selects may send anywhere)."""
from dataclasses import dataclass, field

RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def restricted_violations(spec: dict) -> list[str]:
    """What in the pod spec breaks the restricted profile; [] if nothing does."""
    found = [f"host namespace {key}" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    found += [f"volume {v['name']} of a type restricted forbids" for v in spec.get("volumes", [])
              if not set(v) - {"name"} <= RESTRICTED_VOLUMES]
    pod = spec.get("securityContext", {})
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        sc, name = c.get("securityContext", {}), c["name"]
        if sc.get("privileged"):
            found.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        if sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
            found.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser", pod.get("runAsUser")) == 0:
            found.append(f"{name}: runAsUser 0")
        seccomp = sc.get("seccompProfile", pod.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile {seccomp}")
        capabilities = sc.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            found.append(f"{name}: capabilities not dropped (ALL)")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities {capabilities['add']}")
        found += [f"{name}: hostPort {p['hostPort']}" for p in c.get("ports", []) if p.get("hostPort")]
    return found


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict
    ports: dict = field(default_factory=dict)  # container port name -> number
    namespace_labels: dict = field(default_factory=dict)  # besides kubernetes.io/metadata.name

    def ns_labels(self) -> dict:
        return {"kubernetes.io/metadata.name": self.namespace, **self.namespace_labels}


def selects(selector: dict, labels: dict) -> bool:
    """A LabelSelector ({} selects everything)."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if not {"In": present and labels[key] in values, "NotIn": not present or labels[key] not in values,
                "Exists": present, "DoesNotExist": not present}[operator]:
            return False
    return True


def _peer_matches(peer: dict, source: Pod, policy_namespace: str) -> bool:
    """Whether `source` (the peer pod: the sender for ingress, the receiver for egress) matches."""
    if "ipBlock" in peer:
        return False  # pods are not addressed by IP blocks here
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], source.ns_labels()):
            return False
    elif source.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector", {}), source.labels)


def _port_matches(rule_ports: list[dict] | None, port: int, target: Pod) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        wanted = entry.get("port")
        if wanted is None or wanted == port or target.ports.get(wanted) == port:
            return True
    return False


def policies_for(policies: list[dict], target: Pod) -> list[dict]:
    """The ingress policies that select `target`."""
    return [p for p in policies if p["metadata"]["namespace"] == target.namespace
            and "Ingress" in p["spec"].get("policyTypes", ["Ingress"]) and selects(p["spec"]["podSelector"], target.labels)]


def ingress_allowed(policies: list[dict], source: Pod, target: Pod, port: int) -> bool:
    return _allowed(policies_for(policies, target), "ingress", "from", source, target, port)


def egress_allowed(policies: list[dict], source: Pod, target: Pod, port: int) -> bool:
    selecting = [p for p in policies if p["metadata"]["namespace"] == source.namespace
                 and "Egress" in p["spec"].get("policyTypes", []) and selects(p["spec"]["podSelector"], source.labels)]
    return _allowed(selecting, "egress", "to", target, target, port)


def _allowed(selecting: list[dict], rules: str, peers_key: str, peer: Pod, target: Pod, port: int) -> bool:
    """Whether a rule of the selecting policies lets `peer` in (ingress) or out to it (egress)."""
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(rules, []):
            peers = rule.get(peers_key)
            if (not peers or any(_peer_matches(p, peer, policy["metadata"]["namespace"]) for p in peers)) \
                    and _port_matches(rule.get("ports"), port, target):
                return True
    return False
