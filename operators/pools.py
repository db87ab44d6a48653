"""GPU node pools the operator may schedule onto, read from the ConfigMap the chart writes."""
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

POOLS_CONFIGMAP = "llamaops-node-pools"
POOLS_KEY = "pools.yaml"


class NodePool(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    nodeSelector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict] = Field(default_factory=list)
    gpusPerNode: int = Field(0, ge=0, le=16)
    gpuResource: str = "nvidia.com/gpu"


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
