"""Pod sizes of pipeline steps, derived from preset.resources.

Resources carries the accelerator shape of the pool but not its CPU/memory per node, so the
host-side requests below are llamaops's choices (about what an 8-GPU H100 node offers per GPU).
"""
import math
from dataclasses import dataclass

from llamaops.platform.config import ParallelLayout, Preset

from .stages import stage_kind

GPU_RESOURCE = "nvidia.com/gpu"
CPUS_PER_GPU = 12
MEMORY_GIB_PER_GPU = 160
CPU_STEP_CPUS = 4  # data prep, registration, RayJob launchers
CPU_STEP_MEMORY_GIB = 16


@dataclass(frozen=True)
class PodShape:
    cpus: int
    memory_gib: int
    gpus: int  # nvidia.com/gpu limit; 0 for CPU pods

    @property
    def memory(self) -> str:
        return f"{self.memory_gib}Gi"


def uses_gpus(preset: Preset) -> bool:
    return preset.resources.gpus_per_node > 0


def cpu_pod() -> PodShape:
    return PodShape(CPU_STEP_CPUS, CPU_STEP_MEMORY_GIB, 0)


def gpu_node_pod(preset: Preset) -> PodShape:
    """One whole node of the preset's pool."""
    gpus = preset.resources.gpus_per_node
    return PodShape(CPUS_PER_GPU * gpus, MEMORY_GIB_PER_GPU * gpus, gpus)


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
