"""GPU node pools the operator may schedule onto, read from the ConfigMap the chart writes."""
import yaml
from pydantic import ValidationError

from llamaops.platform.config.cluster import NodePool

POOLS_CONFIGMAP = "llamaops-node-pools"  # the cluster contract's default nodePoolsConfigMap
POOLS_KEY = "pools.yaml"
__all__ = ["NodePool", "POOLS_CONFIGMAP", "POOLS_KEY", "PoolConfigError", "parse_pools"]


class PoolConfigError(ValueError):
    """The node-pool ConfigMap is malformed (a chart/values problem, not a user spec problem)."""


def parse_pools(data: dict[str, str] | None) -> dict[str, NodePool]:
    """ConfigMap `.data` -> pools by name; a missing ConfigMap or key means no pools."""
    text = (data or {}).get(POOLS_KEY, "")
    try:
        raw = yaml.safe_load(text) or {}
        if not isinstance(raw, dict):
            raise PoolConfigError(f"{POOLS_KEY} must map pool names to pool settings")
        return {str(name): NodePool.model_validate(pool or {}) for name, pool in raw.items()}
    except (yaml.YAMLError, ValidationError) as e:
        raise PoolConfigError(f"{POOLS_KEY} in ConfigMap {POOLS_CONFIGMAP} is invalid: {e}") from e
