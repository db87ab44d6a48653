"""The cluster contract: every name that crosses the boundary between the Helm chart, the compiled
pipeline, the RayJobs it creates and the operator.

The chart renders this contract from its values into the ConfigMap `llamaops-cluster` (key
`cluster.json`), next to the objects it names; the pipeline compiler, the RayJob builders, the deploy
step and the operator read it. Field names are camelCase because they are the chart's value names.
The defaults are what the chart renders with its default values for a release named `llamaops`.
"""
import json
from pathlib import Path

from pydantic import Field, ValidationError

from ..store.paths import ARTIFACT_ROOT_ENV
from .base import Config
from .overrides import ConfigError
from .pod_size import PodSize

CLUSTER_CONFIGMAP = "llamaops-cluster"  # the one fixed name: where the others are found
CLUSTER_KEY = "cluster.json"
_DNS_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
_ENV_KEY = r"^[-._a-zA-Z0-9]{1,253}$"


# A pod that takes a whole GPU node when its pool does not say: about what an 8-GPU H100 node offers per GPU.
CPUS_PER_GPU, MEMORY_GIB_PER_GPU = 12, 160


class NodePool(Config):
    """A node pool as the chart declares it: how pods land on its nodes and what each node has."""

    nodeSelector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict] = Field(default_factory=list)
    gpusPerNode: int = Field(0, ge=0, le=16)
    gpuResource: str = "nvidia.com/gpu"
    # What a pod that takes one whole node asks for (its allocatable CPUs and memory, less the
    # node's daemons); None: CPUS_PER_GPU and MEMORY_GIB_PER_GPU per GPU.
    nodePod: PodSize | None = None

    def whole_node_pod(self, gpus: int) -> PodSize:
        """The size of a pod that takes one whole node with `gpus` GPUs of this pool."""
        return self.nodePod or PodSize(cpus=CPUS_PER_GPU * max(gpus, 1), memoryGiB=MEMORY_GIB_PER_GPU * max(gpus, 1))


class SecretRef(Config):
    """A Secret and the keys that hold the two halves of a credential."""

    name: str = Field(pattern=_DNS_NAME)
    userKey: str = Field(pattern=_ENV_KEY)
    passwordKey: str = Field(pattern=_ENV_KEY)


class Queueing(Config):
    """Kueue admission for RayJobs (off when both are empty)."""

    kueueQueue: str = ""
    priorityClass: str = ""


DEFAULT_POOLS = {
    "h100": NodePool(
        nodeSelector={"llamaops.io/pool": "h100"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        gpusPerNode=8,
    )
}


class ClusterContract(Config):
    image: str = ""  # empty: the released image of this llamaops version
    imagePullPolicy: str = Field("IfNotPresent", pattern="^(Always|IfNotPresent|Never)$")
    # The pipeline's pods and the RayJobs they create run as this service account (the chart's RBAC).
    serviceAccount: str = Field("llamaops-pipeline", pattern=_DNS_NAME)
    # S3 credentials: AWS_ACCESS_KEY_ID <- userKey, AWS_SECRET_ACCESS_KEY <- passwordKey.
    s3Secret: SecretRef = SecretRef(name="llamaops-s3", userKey="access-key", passwordKey="secret-key")
    # The MLflow account (the chart's tracking server always asks for one; None: a server without
    # auth): MLFLOW_TRACKING_USERNAME <- userKey, MLFLOW_TRACKING_PASSWORD <- passwordKey.
    mlflowSecret: SecretRef | None = SecretRef(name="llamaops-mlflow-auth", userKey="username", passwordKey="password")
    # Endpoints as environment: LLAMAOPS_S3_ENDPOINT, LLAMAOPS_ARTIFACT_ROOT, MLFLOW_TRACKING_URI.
    platformConfigMap: str = Field("llamaops-platform", pattern=_DNS_NAME)
    nodePoolsConfigMap: str = Field("llamaops-node-pools", pattern=_DNS_NAME)
    nodePools: dict[str, NodePool] = Field(default_factory=lambda: dict(DEFAULT_POOLS))
    # Where CPU pods (pipeline steps, RayJob heads, data workers) run: a pool name, or "" for any node.
    cpuPool: str = ""
    # A CPU pod's size: RayJob heads, data workers and CPU presets' ranks; the steps of GPU presets.
    cpuPod: PodSize = PodSize(cpus=4, memoryGiB=16)
    queueing: Queueing = Queueing()

    def pool(self, name: str, wanted_by: str) -> NodePool:
        """The pool `name`, or one ConfigError saying which pools the cluster declares."""
        if name not in self.nodePools:
            declared = ", ".join(sorted(self.nodePools)) or "none"
            raise ConfigError(f"{wanted_by} names node pool '{name}', which the cluster does not declare "
                              f"(declared: {declared}); add it to the chart's nodePools or change the preset")
        return self.nodePools[name]

    def cpu_nodes(self) -> NodePool | None:
        """Where CPU pods go: the declared cpuPool, or None for any node."""
        return self.pool(self.cpuPool, "the chart's pipelines.cpuNodePool") if self.cpuPool else None


# The environment every step pod and RayJob pod reads, and where it comes from.
S3_ENDPOINT_ENV, TRACKING_URI_ENV = "LLAMAOPS_S3_ENDPOINT", "MLFLOW_TRACKING_URI"
PLATFORM_ENV_KEYS = (S3_ENDPOINT_ENV, ARTIFACT_ROOT_ENV, TRACKING_URI_ENV)
S3_CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
MLFLOW_CREDENTIAL_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def secret_env(contract: ClusterContract) -> list[tuple[SecretRef, tuple[str, str]]]:
    """Each Secret a pod reads credentials from, with the two variables its keys become."""
    pairs = [(contract.s3Secret, S3_CREDENTIAL_ENV)]
    if contract.mlflowSecret:
        pairs.append((contract.mlflowSecret, MLFLOW_CREDENTIAL_ENV))
    return pairs


def parse_contract(text: str, source: str) -> ClusterContract:
    try:
        return ClusterContract.model_validate(json.loads(text))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{source} is not JSON ({error.msg} at line {error.lineno}); "
                          f"take it from the ConfigMap {CLUSTER_CONFIGMAP}, key {CLUSTER_KEY}") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(f"{source}: {where}: {first['msg']}") from None


def load_contract(path: Path | None) -> ClusterContract:
    """The contract in `path` (the `cluster.json` of a chart's ConfigMap), or the chart's defaults."""
    if path is None:
        return ClusterContract()
    if not path.is_file():
        raise ConfigError(f"cluster contract {path} does not exist; "
                          f"kubectl get configmap {CLUSTER_CONFIGMAP} -o jsonpath='{{.data.cluster\\.json}}' writes it")
    return parse_contract(path.read_text(), str(path))
