"""What serving a model takes per GPU: its weight shard at TP, the KV cache for a batch and
context, the gathered logits, in the model's bf16 and with FP8 feed-forward weights (fp8.py); and
how many tokens of KV cache the rest of the GPU holds. The weight bytes are the ones a rank of
`serve --tensor-parallel` holds (tests/integration/serve pins them equal)."""
from dataclasses import dataclass

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model.sizing import GenerationMemory, generation_memory

from .fp8 import fp8_layers

GIB = 2**30
# Held back from each GPU's memory: the CUDA context, NCCL's buffers and a prefill chunk's activations.
RUNTIME_RESERVE_BYTES = 4 * GIB
BF16_BYTES = 2


@dataclass(frozen=True)
class ServingFit:
    weights: str  # "bf16" or "fp8"
    memory: GenerationMemory
    gpu_bytes: int

    @property
    def fits(self) -> bool:
        return self.memory.total_bytes + RUNTIME_RESERVE_BYTES <= self.gpu_bytes

    @property
    def kv_tokens_free(self) -> int:
        """Tokens of KV cache (over all requests) the GPU holds beside its weights and the reserve."""
        per_token = self.memory.kv_cache_bytes // max(1, self.memory.rows * self.memory.context)
        spare = self.gpu_bytes - RUNTIME_RESERVE_BYTES - self.memory.weights_bytes - self.memory.logits_bytes
        return max(0, spare // per_token)


def serving_fits(cfg: ModelConfig, tp: int, batch: int, context: int, gpu_bytes: int) -> list[ServingFit]:
    """bf16 and FP8 weights, each at `batch` requests of `context` tokens on `tp` GPUs."""
    return [ServingFit(weights, generation_memory(cfg, tp, batch, context, BF16_BYTES, layers), gpu_bytes)
            for weights, layers in (("bf16", 0), ("fp8", len(fp8_layers(cfg))))]
