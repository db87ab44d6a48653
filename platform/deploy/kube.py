"""The cluster a step runs in: its API client and its namespace.

In a pod: the service account's in-cluster config and namespace. Outside (a developer's shell, the
cluster tests): the kubeconfig named by KUBECONFIG (else ~/.kube/config) and its current context's
namespace. The kubernetes package is imported lazily: importing this module stays cheap.
"""
import os
from pathlib import Path

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_NAMESPACE = "default"


def load_cluster_config() -> None:
    """Point the kubernetes client's default configuration at this cluster."""
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        # Read KUBECONFIG now: the client reads it only once, at import.
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))


def custom_objects_api():
    """The CustomObjectsApi of the cluster this pod runs in (outside a pod: the current kubeconfig)."""
    from kubernetes import client

    load_cluster_config()
    return client.CustomObjectsApi()


def current_namespace(service_account_file: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """This pod's namespace; outside a pod the kubeconfig's current context's, else `default`."""
    if service_account_file.is_file():
        namespace = service_account_file.read_text().strip()
        if namespace:
            return namespace
    from kubernetes import config

    try:
        _, context = config.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG"))
    except (config.ConfigException, OSError):
        return DEFAULT_NAMESPACE
    return ((context or {}).get("context") or {}).get("namespace") or DEFAULT_NAMESPACE
