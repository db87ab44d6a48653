"""Where a preset runs: a named GPU node pool (declared in the Helm values) and its shape."""
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt

from .base import Config


class Resources(Config):
    node_pool: str  # must match a pool name in the chart's values (gpuPools[].name)
    accelerator: str  # e.g. nvidia-h100-80gb, or cpu for local runs
    accelerator_memory_gib: PositiveFloat  # usable memory of one accelerator
    peak_bf16_tflops: PositiveFloat  # dense bf16 peak per accelerator, for MFU and time estimates
    gpus_per_node: NonNegativeInt  # 0 on CPU-only pools
    nodes: PositiveInt

    @property
    def accelerators(self) -> int:
        return max(self.gpus_per_node, 1) * self.nodes
