"""Pod sizes of pipeline steps: CPU pods from the cluster contract's cpuPod, whole GPU nodes from
the preset's pool (its nodePod, or a size per GPU), ranks of CPU presets one per CPU pod."""
import math
from dataclasses import dataclass

from llamaops.platform.config import ParallelLayout, Preset
from llamaops.platform.config.cluster import ClusterContract
from llamaops.platform.config.pod_size import PodSize, cpu_quantity, memory_quantity

from .stages import stage_kind

GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class PodShape:
    cpus: float
    memory_gib: float
    gpus: int  # nvidia.com/gpu limit; 0 for CPU pods

    @classmethod
    def of(cls, size: PodSize, gpus: int = 0) -> "PodShape":
        return cls(size.cpus, size.memoryGiB, gpus)

    @property
    def cpu(self) -> str:
        return cpu_quantity(self.cpus)

    @property
    def memory(self) -> str:
        return memory_quantity(self.memory_gib)

    @property
    def whole_cpus(self) -> int:
        """CPUs a process may count on (a fraction of one still runs one process)."""
        return max(1, int(self.cpus))


def uses_gpus(preset: Preset) -> bool:
    return preset.resources.gpus_per_node > 0


def cpu_pod(contract: ClusterContract) -> PodShape:
    """RayJob heads, data workers, CPU ranks, and the CPU steps of GPU presets."""
    return PodShape.of(contract.cpuPod)


def gpu_node_pod(preset: Preset, contract: ClusterContract) -> PodShape:
    """One whole node of the preset's pool."""
    gpus = preset.resources.gpus_per_node
    pool = contract.pool(preset.resources.node_pool, f"preset {preset.name}")
    return PodShape.of(pool.whole_node_pod(gpus), gpus)


def rank_pod(preset: Preset, contract: ClusterContract) -> PodShape:
    """A training worker pod: a whole GPU node (one rank per GPU), or on CPU presets one CPU pod per rank."""
    return gpu_node_pod(preset, contract) if uses_gpus(preset) else cpu_pod(contract)


def nodes_for(preset: Preset, layout: ParallelLayout) -> int:
    """Whole nodes a layout's world size occupies on the preset's pool."""
    per_node = max(preset.resources.gpus_per_node, 1)
    return max(1, math.ceil(layout.world_size / per_node))


def training_layout(preset: Preset, step: str) -> ParallelLayout:
    """The parallel layout a training step runs with (anneal continues long-context's; safety DPO's;
    a round's reward model and rejection sampling SFT's)."""
    layouts = {
        "pretrain": preset.pretrain.layout,
        "long_context": preset.long_context.layout,
        "anneal": preset.long_context.layout,
        "reward_model": preset.post_training.sft.layout,
        "rejection_sampling": preset.post_training.sft.layout,
        "sft": preset.post_training.sft.layout,
        "dpo": preset.post_training.dpo.layout,
        "safety": preset.post_training.dpo.layout,
    }
    return layouts[stage_kind(step)]


def trains_on_rayjob(preset: Preset, step: str) -> bool:
    """Whether training step `step` gets a RayJob of its own on a cluster: on GPU pools, and wherever
    its ranks span more than one pod (a CPU preset's ranks take one pod each)."""
    return uses_gpus(preset) or nodes_for(preset, training_layout(preset, step)) > 1
