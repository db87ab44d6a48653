"""Where a preset runs: a named GPU node pool (declared in the Helm values), its shape, and how its
long jobs ride out interruptions."""
import math

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from .base import Config

# The model-FLOPs utilisation time plans assume: the paper's 405B pretraining ran at 38-43%.
PLANNING_MFU = 0.4
# CPUs (torch threads) of one training rank on a CPU pool; its pod offers Ray exactly these, so
# Ray Train places one rank per pod.
CPU_RANK_THREADS = 1


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


# The Llama 3 paper: 466 job interruptions in a 54-day snapshot of 405B pretraining on 16,384 GPUs.
PAPER_INTERRUPTIONS_PER_GPU_DAY = 466 / (54 * 16_384)


class Restarts(Config):
    """Retry budgets, from the innermost: Ray Train restarts a training stage's worker group from its
    last checkpoint (a lost rank, node or pod); KubeRay recreates a RayJob's whole Ray cluster (a
    lost head, or the worker-group budget spent); KFP retries the step pod that launched the RayJob
    (it re-attaches to the RayJob if that still runs)."""

    interruptions_per_gpu_day: NonNegativeFloat = PAPER_INTERRUPTIONS_PER_GPU_DAY
    # Worker-group restarts a stage may use: `margin` times the interruptions expected over its
    # planned days on its GPUs, and never fewer than `min_worker_group`.
    margin: float = Field(default=2.0, ge=1.0)
    min_worker_group: NonNegativeInt = 2
    rayjob: NonNegativeInt = 0  # the RayJob's backoffLimit
    launcher: NonNegativeInt = 0  # KFP retries of a RayJob step's launcher pod

    def worker_group(self, gpus: int, days: float) -> int:
        expected = self.interruptions_per_gpu_day * gpus * days
        return max(self.min_worker_group, math.ceil(self.margin * expected))
