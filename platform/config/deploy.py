"""How the pipeline's deploy step serves a promoted model: a LlamaDeployment on a node pool."""
from typing import Literal

from pydantic import Field, PositiveInt

from .base import Config
from .pod_size import PodSize


class DeployConfig(Config):
    # Off: the deploy step deploys nothing and reports the `llamaops serve` command instead.
    enabled: bool = False
    node_pool: str | None = Field(None, min_length=1, max_length=63)  # None: the preset's resources.node_pool
    engine: Literal["llamaops", "vllm"] = "llamaops"
    tensor_parallel: PositiveInt = 1  # GPUs of one pod, on one node (the CPU processes of one on a CPU pool)
    # fp8: feed-forward weights in FP8, row-wise, as Llama 3 served 405B on one node (either engine's
    # `--quantization fp8`); `llamaops model serve-plan PRESET` shows what fits.
    quantization: Literal["fp8"] | None = None
    replicas: PositiveInt = 1
    served_model_name: str = Field("llama", pattern=r"^[A-Za-z0-9._-]{1,63}$")  # the OpenAI API's model name
    pod: PodSize | None = None  # each serving pod's CPUs and memory; None: the operator's default (2 CPUs, 8 GiB)
    ready_timeout_s: PositiveInt = 1800  # loading weights takes minutes; a rollout that never gets Ready fails the step
