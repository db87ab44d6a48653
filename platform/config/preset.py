"""A preset: every number of one run of the lifecycle, from model shape to promotion gate."""
from pydantic import model_validator

from .base import Config
from .deploy import DeployConfig
from .eval import EvalConfig
from .model import ModelConfig
from .parallel import ParallelLayout
from .resources import Resources, Restarts
from .stages import AnnealConfig, DataConfig, EvalGate, LongContextConfig, PostTrainingConfig, PretrainConfig


class Preset(Config):
    name: str
    description: str
    model: ModelConfig
    resources: Resources
    restarts: Restarts = Restarts()  # worker-group, RayJob and launcher retry budgets
    data: DataConfig
    pretrain: PretrainConfig
    long_context: LongContextConfig
    anneal: AnnealConfig
    post_training: PostTrainingConfig
    eval_gate: EvalGate
    eval: EvalConfig = EvalConfig()
    deploy: DeployConfig = DeployConfig()  # off unless the preset says where and how to serve

    def layouts(self) -> dict[str, ParallelLayout]:
        return {
            "pretrain": self.pretrain.layout,
            "long_context": self.long_context.layout,
            "sft": self.post_training.sft.layout,
            "dpo": self.post_training.dpo.layout,
        }

    @model_validator(mode="after")
    def _check_layouts_fit_model_and_pool(self) -> "Preset":
        m = self.model
        for stage, layout in self.layouts().items():
            where = f"{stage}.layout"
            if m.n_kv_heads % layout.tp:
                raise ValueError(f"{where}: tp {layout.tp} must divide n_kv_heads {m.n_kv_heads}")
            if layout.pp > m.n_layers:
                raise ValueError(f"{where}: pp {layout.pp} exceeds n_layers {m.n_layers}")
            if layout.world_size > self.resources.accelerators:
                raise ValueError(
                    f"{where}: {layout.describe()} needs more accelerators than the pool's "
                    f"{self.resources.accelerators}"
                )
        for where, tp in (("deploy.tensor_parallel", self.deploy.tensor_parallel),
                          ("post_training.rejection_sampling.tp", self.post_training.sampling_tp)):
            if m.n_heads % tp or (m.n_kv_heads % tp and tp % m.n_kv_heads):
                raise ValueError(f"{where} {tp} must divide n_heads {m.n_heads} and divide or be a "
                                 f"multiple of n_kv_heads {m.n_kv_heads}")
        for stage in ("sft", "dpo"):  # rejection sampling and safety's rates generate on their ranks
            world = self.layouts()[stage].world_size
            if world % self.post_training.sampling_tp:
                raise ValueError(f"post_training.rejection_sampling.tp {self.post_training.sampling_tp} must divide "
                                 f"the {stage} layout's {world} ranks, which generate with it")
        if self.long_context.seq_lens[-1] > m.max_seq_len:
            raise ValueError(
                f"long_context.seq_lens ends at {self.long_context.seq_lens[-1]}, beyond model.max_seq_len {m.max_seq_len}"
            )
        if self.pretrain.seq_len > self.long_context.seq_lens[0]:
            raise ValueError("long_context.seq_lens must start above the pretraining seq_len")
        short = self.long_context.gate.seq_len or self.pretrain.seq_len
        if short > self.long_context.seq_lens[0]:
            raise ValueError(
                f"long_context.gate.seq_len {short} is longer than the first stage length {self.long_context.seq_lens[0]};"
                " the gate checks a short context: use the pretraining length"
            )
        return self
