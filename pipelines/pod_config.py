"""What a step's pod needs on a cluster, set the KFP way (kfp-kubernetes): it lands in the compiled
IR's Kubernetes platform spec, so the KFP backend builds the pod with it and nothing else has to.

Credentials come from the contract's Secrets and endpoints from its platform ConfigMap, as
references: no value of either is ever written into the IR. KFP's local runner ignores the
platform spec, so `--local` runs are unaffected."""
from kfp import dsl, kubernetes

from llamaops.platform.config.cluster import PLATFORM_ENV_KEYS, ClusterContract, NodePool, secret_env

SHM_VOLUME = "dshm"
# What the chart's NetworkPolicies pick step pods by: llamaops pods may reach S3 and MLflow; a step
# pod takes no ingress.
STEP_POD_LABELS = {"app.kubernetes.io/part-of": "llamaops", "llamaops.io/component": "pipeline-step"}


def configure_step_pod(task: dsl.PipelineTask, contract: ClusterContract, pool: NodePool | None,
                       shared_memory: bool) -> dsl.PipelineTask:
    """Secrets and ConfigMap as env, the pool's node selector and tolerations (`pool` None: any
    node), the pull policy, llamaops' pod labels, and a memory-backed /dev/shm when ranks exchange
    tensors through it."""
    for secret, (user_env, password_env) in secret_env(contract):
        kubernetes.use_secret_as_env(task, secret.name, {secret.userKey: user_env, secret.passwordKey: password_env})
    kubernetes.use_config_map_as_env(task, contract.platformConfigMap, {key: key for key in PLATFORM_ENV_KEYS})
    for label, value in (pool.nodeSelector if pool else {}).items():
        kubernetes.add_node_selector(task, label, value)
    for toleration in pool.tolerations if pool else []:
        kubernetes.add_toleration(task, key=toleration.get("key"), operator=toleration.get("operator"),
                                  value=toleration.get("value"), effect=toleration.get("effect"),
                                  toleration_seconds=toleration.get("tolerationSeconds"))
    kubernetes.set_image_pull_policy(task, contract.imagePullPolicy)
    for label, value in STEP_POD_LABELS.items():
        kubernetes.add_pod_label(task, label, value)
    if shared_memory:
        # The container default /dev/shm (64 MiB) is far too small for gloo/NCCL and DataLoader workers.
        kubernetes.empty_dir_mount(task, SHM_VOLUME, "/dev/shm", medium="Memory")
    return task

