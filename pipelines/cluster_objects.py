"""Before a run is submitted: the cluster objects its pods will read, checked where the cluster is
reachable from here (a kubeconfig or an in-cluster service account). KFP accepts any run; without this
check a missing Secret would surface as a pod stuck in CreateContainerConfigError hours later."""
from llamaops.platform.config.cluster import CLUSTER_CONFIGMAP, CLUSTER_KEY, ClusterContract, parse_contract
from llamaops.platform.deploy.kube import load_cluster_config

REQUEST_TIMEOUT_S = 5


def reachable_core_api():
    """The CoreV1Api of the current kubeconfig (or of this pod), or None when there is none."""
    from kubernetes import client, config

    try:
        load_cluster_config()
    except (config.ConfigException, OSError, TypeError):
        return None
    return client.CoreV1Api()


def _read(api, kind: str, namespace: str, name: str):
    """The object, None when it does not exist; raises ConnectionError when the API cannot be asked."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    reader = api.read_namespaced_secret if kind == "Secret" else api.read_namespaced_config_map
    try:
        return reader(name, namespace, _request_timeout=REQUEST_TIMEOUT_S)
    except ApiException as error:
        if error.status == 404:
            return None
        raise ConnectionError(f"HTTP {error.status}") from None  # 401/403: not ours to read, so not checked
    except (HTTPError, OSError) as error:
        raise ConnectionError(str(error)) from None


def contract_in(api, namespace: str) -> ClusterContract | None:
    """The contract the chart rendered into `namespace`, if it is there."""
    found = _read(api, "ConfigMap", namespace, CLUSTER_CONFIGMAP)
    if found is None or CLUSTER_KEY not in (found.data or {}):
        return None
    return parse_contract(found.data[CLUSTER_KEY], f"ConfigMap {namespace}/{CLUSTER_CONFIGMAP}")


def missing_objects(api, contract: ClusterContract, namespace: str) -> list[str]:
    """The Secrets (and their keys) and ConfigMaps the run's pods read that `namespace` lacks."""
    missing = []
    for secret in [contract.s3Secret] + ([contract.mlflowSecret] if contract.mlflowSecret else []):
        found = _read(api, "Secret", namespace, secret.name)
        if found is None:
            missing.append(f"Secret {secret.name}")
            continue
        missing += [f"key {key} of Secret {secret.name}" for key in (secret.userKey, secret.passwordKey)
                    if key not in (found.data or {})]
    if _read(api, "ConfigMap", namespace, contract.platformConfigMap) is None:
        missing.append(f"ConfigMap {contract.platformConfigMap}")
    return missing


def contract_for_run(contract: ClusterContract | None, namespace: str | None) -> tuple[ClusterContract, list[str]]:
    """The contract to compile with (`contract` if given, else the one in `namespace`, else the chart's
    defaults) and what `namespace` lacks of it; nothing is checked when the cluster is not reachable."""
    api = reachable_core_api() if namespace else None
    if api is None:
        return contract or ClusterContract(), []
    try:
        chosen = contract or contract_in(api, namespace) or ClusterContract()
        return chosen, missing_objects(api, chosen, namespace)
    except ConnectionError:
        return contract or ClusterContract(), []
