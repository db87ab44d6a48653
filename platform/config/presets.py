"""The named presets. Every number of the Llama 3.1 recipe lives here and nowhere else.

Sources: Llama 3 paper (arXiv:2407.21783) for shapes, optimizer, batch ramp, token budgets and the
405B layouts (its Table 4); Meta's Llama 3.1 configs for RoPE scaling. Where the paper gives no
number, the value is llamaops's choice and the comment says so.
"""
from collections.abc import Callable

from .deploy import DeployConfig
from .model import ModelConfig, RopeScaling
from .parallel import ParallelLayout as Layout
from .preset import Preset
from .resources import Resources, Restarts
from .stages import (
    AnnealConfig,
    BatchRampStep,
    DataConfig,
    DPOConfig,
    EvalGate,
    LongContextConfig,
    Optimizer,
    PostTrainingConfig,
    PretrainConfig,
    RejectionSamplingConfig,
    RewardModelConfig,
    SafetyConfig,
    SFTConfig,
    ShortContextGate,
)

LLAMA_3_1_8B = ModelConfig(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, ffn_hidden_dim=14336)
LLAMA_3_1_70B = ModelConfig(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, ffn_hidden_dim=28672)
LLAMA_3_1_405B = ModelConfig(dim=16384, n_layers=126, n_heads=128, n_kv_heads=8, ffn_hidden_dim=53248)


def _h100_pool(nodes: int) -> Resources:
    return Resources(
        node_pool="h100",
        accelerator="nvidia-h100-80gb",
        accelerator_memory_gib=80.0,
        peak_bf16_tflops=989.0,  # dense bf16, H100 SXM
        gpus_per_node=8,
        nodes=nodes,
    )


_PAPER_DATA = DataConfig(
    sources=["s3://llamaops-data/web", "s3://llamaops-data/code", "s3://llamaops-data/math"],
    workers=64,  # llamaops's choice: 16 CPU pods of the data RayJob
)
# A stage's worker group gets twice the paper's interruption rate over its planned days (Restarts'
# defaults). llamaops's choice for the rest: 3 new Ray clusters per RayJob (a lost head pod: one
# node of hundreds, rarely hit) and 2 retries of a launcher pod (node drains on the CPU pool).
_PAPER_RESTARTS = Restarts(rayjob=3, launcher=2)
_PAPER_GATE = EvalGate(
    max_validation_perplexity=10.0,  # llamaops's choice: a sane 405B-scale ceiling
    min_multiple_choice_accuracy=0.6,
    max_violation_rate=0.05,
    max_false_refusal_rate=0.1,
    max_worsening_vs_production=0.02,  # llamaops's choice: two points of any rate
)


# One 8-GPU node, as the paper served 405B: bf16 weights are 812 GB, more than 8 x 80 GB; with FP8
# feed-forward weights a GPU holds 60.2 GiB and the KV cache of 263K tokens (`model serve-plan 405b`).
_DEPLOY_405B = DeployConfig(enabled=True, engine="vllm", tensor_parallel=8, quantization="fp8")


def _bf16(**layout) -> Layout:
    """A GPU training layout: bf16 compute on fp32 master weights (FSDP2 mixed precision), the
    Llama 3 recipe. The paper presets run one sequence a forward pass (pipeline microbatches, or
    gradient accumulation without PP). Each stage's `llamaops train plan PRESET --stage STAGE`
    fits 80 GB without activation checkpointing (at most 68.5 GiB counted, before CUDA context
    and NCCL buffers), except the 405B long-context stages: selective checkpointing, 48.9 GiB."""
    return Layout(param_dtype="bf16", **layout)


# Six context-extension stages up to 128K (the paper gives the count, not the lengths).
_PAPER_CONTEXT_STAGES = [16_384, 32_768, 49_152, 65_536, 98_304, 131_072]


def _paper_recipe(
    name: str,
    description: str,
    model: ModelConfig,
    resources: Resources,
    peak_lr: float,
    min_lr: float,
    pretrain_layout: Layout,
    long_context_layout: Layout,
    post_training_layout: Layout,
    deploy: DeployConfig,
    sampling_tp: int | None = None,
) -> Preset:
    """Llama 3 paper's schedule: 15.6T tokens at 8K, ~800B tokens of context extension, 40M
    annealing tokens, six post-training rounds."""
    return Preset(
        name=name,
        description=description,
        model=model,
        resources=resources,
        restarts=_PAPER_RESTARTS,
        data=_PAPER_DATA,
        pretrain=PretrainConfig(
            layout=pretrain_layout,
            total_tokens=15_600_000_000_000,
            batch_ramp=[
                BatchRampStep(after_tokens=0, seq_len=4096, global_batch_tokens=4 * 2**20),
                BatchRampStep(after_tokens=252_000_000, seq_len=8192, global_batch_tokens=8 * 2**20),
                BatchRampStep(after_tokens=2_870_000_000_000, seq_len=8192, global_batch_tokens=16 * 2**20),
            ],
            optimizer=Optimizer(peak_lr=peak_lr, min_lr=min_lr, warmup_steps=8000, decay_steps=1_200_000),
        ),
        long_context=LongContextConfig(
            layout=long_context_layout,
            seq_lens=_PAPER_CONTEXT_STAGES,
            total_tokens=800_000_000_000,
            global_batch_tokens=16 * 2**20,
            lr=peak_lr / 10,  # llamaops's choice: the paper does not state it
            # The paper trains each stage "until" short-context performance has "recovered completely";
            # llamaops's bound: back within 0.01 nats (1% perplexity) of the 8K model on 512K validation
            # tokens, with up to 2,000 extra steps (33B tokens, a quarter of a stage) checked every 500.
            gate=ShortContextGate(windows=64, batch_size=1, max_short_context_loss_increase=0.01,
                                  max_extra_steps_per_stage=2000, check_every_extra_steps=500,
                                  needle_depths=[0.0, 0.25, 0.5, 0.75, 1.0], needle_must_pass=True),
        ),
        anneal=AnnealConfig(total_tokens=40_000_000, lr=peak_lr / 10, average_last_checkpoints=5),
        post_training=PostTrainingConfig(
            rounds=6,
            sft=SFTConfig(layout=post_training_layout, seq_len=8192, steps=9000, batch_size=256, lr=1e-5),
            # llamaops's choice: the paper gives no reward-model batch; DPO's, on the SFT layout.
            reward_model=RewardModelConfig(steps=1000, batch_size=256, lr=1e-5),
            rejection_sampling=RejectionSamplingConfig(tp=sampling_tp),
            dpo=DPOConfig(layout=post_training_layout, steps=1000, batch_size=256, lr=1e-5, beta=0.1, nll_coefficient=0.2),
        ),
        eval_gate=_PAPER_GATE,
        deploy=deploy,
    )


def tiny() -> Preset:
    """A ~35M-parameter model with the real 128K vocabulary: the whole lifecycle on a laptop CPU."""
    return Preset(
        name="tiny",
        description="Whole lifecycle on a laptop CPU: 2 local Ray workers, 256 -> 1024 context",
        model=ModelConfig(
            dim=128,
            n_layers=4,
            n_heads=4,
            n_kv_heads=2,
            ffn_hidden_dim=384,
            max_seq_len=1024,
            rope_scaling=RopeScaling(factor=4.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_seq_len=256),
        ),
        resources=Resources(
            node_pool="local",
            accelerator="cpu",
            accelerator_memory_gib=4.0,
            peak_bf16_tflops=0.4,  # measured 2-thread bf16 matmul peak of these machines
            gpus_per_node=0,
            nodes=2,
        ),
        data=DataConfig(
            sources=["cpython-stdlib", "chatterbot-corpus"],
            validation_fraction=0.05,
            max_documents_per_source=400,
            max_duplicate_line_fraction=0.5,  # keeps most chatterbot dialogs, whose questions recur by design
        ),
        pretrain=PretrainConfig(
            layout=Layout(dp=2),
            # ~900 tokens/s on 2 cores (the 128K-vocab output layer dominates): ~2 min of steps.
            total_tokens=98_304,
            batch_ramp=[
                BatchRampStep(after_tokens=0, seq_len=128, global_batch_tokens=2048),
                BatchRampStep(after_tokens=49_152, seq_len=256, global_batch_tokens=4096),
            ],
            optimizer=Optimizer(peak_lr=3e-3, min_lr=3e-4, warmup_steps=4, decay_steps=32),
            checkpoint_every_steps=10,
        ),
        long_context=LongContextConfig(
            layout=Layout(dp=2), seq_lens=[512, 1024], total_tokens=32_768, global_batch_tokens=8192, lr=1e-3,
            checkpoint_every_steps=2,
            # Measured on 64 validation windows of 256 (pretrained loss 7.883): tiny's LR moves it by -0.028
            # and +0.0001 after the two stages, 100x the LR by +16.0 and +9.5; 0.1 nats passes the one, fails the other.
            # Needles are reported, not required: a 35M model trained for minutes does not find them.
            gate=ShortContextGate(windows=64, max_short_context_loss_increase=0.1, max_extra_steps_per_stage=2,
                                  check_every_extra_steps=2, needle_depths=[0.0, 0.5, 1.0]),
        ),
        anneal=AnnealConfig(total_tokens=8192, lr=1e-3, average_last_checkpoints=2, global_batch_tokens=4096),
        post_training=PostTrainingConfig(
            rounds=1,
            # Post-training LRs measured on the default run's annealed model (validation perplexity 3,280;
            # uniform over the vocabulary: 128,256). SFT 1e-3, DPO 5e-4 and safety 3e-3 ended at 80,304
            # (the safety stage alone: 7,153 -> 80,304); SFT 3e-4, DPO 2e-4, safety 1e-3 end at 18,265
            # with violations 1.0 -> 0.0 and false refusals 0.09; safety at 3e-4 or 20 steps leaves
            # violations at 1.0, at 6e-4 refuses 0.91 of borderline prompts.
            sft=SFTConfig(layout=Layout(dp=2), seq_len=512, steps=30, batch_size=8, lr=3e-4, max_eval_examples=64),
            reward_model=RewardModelConfig(steps=40, batch_size=16, lr=1e-3, max_eval_pairs=64),
            rejection_sampling=RejectionSamplingConfig(samples_per_prompt=4, temperature=0.8, max_new_tokens=32, prompts=32),
            dpo=DPOConfig(layout=Layout(dp=2), steps=20, batch_size=4, lr=2e-4, beta=0.5, max_eval_pairs=64),
            safety=SafetyConfig(safety_fraction=0.5, steps=40, batch_size=8, lr=1e-3, seq_len=256, max_eval_examples=64,
                                rate_prompts=16, rate_max_new_tokens=16),
        ),
        # Each threshold can fail, set from the measured runs above: the default run ends at perplexity
        # 18,265, violations 0.0, false refusals 0.09, accuracy 0.23 (chance 0.25, 64 questions). The old
        # post-training LRs (80,304), a safety stage that does not take (violations 1.0) or one that
        # refuses everything borderline (0.91) fail; so does a model that ranks answers well below chance.
        eval_gate=EvalGate(
            max_validation_perplexity=30_000.0,
            min_multiple_choice_accuracy=0.15,
            max_violation_rate=0.25,
            max_false_refusal_rate=0.5,
            max_worsening_vs_production=0.5,  # 16 safety prompts and 64 questions: rates move in big steps
        ),
        # Pool `local` has no GPUs: the deploy step prints the `llamaops serve` command instead.
        deploy=DeployConfig(enabled=False),
    )


def llama_8b() -> Preset:
    return _paper_recipe(
        "8b",
        "Llama 3.1 8B on 512 H100s (64 nodes)",
        LLAMA_3_1_8B,
        _h100_pool(nodes=64),
        peak_lr=3e-4,  # llamaops's choice, from the Llama 2 7B recipe; the paper gives 405B's only
        min_lr=3e-6,
        # One sequence a forward pass: 4 a rank at 8K (16M tokens over 512), 16 at 128K, 8 in DPO.
        pretrain_layout=_bf16(dp=512, accumulation_steps=4),
        long_context_layout=_bf16(tp=8, cp=8, dp=8, accumulation_steps=16),
        post_training_layout=_bf16(dp=64, accumulation_steps=8),
        deploy=DeployConfig(enabled=True, tensor_parallel=1),  # bf16 16 GB on one 80 GB GPU
    )


def llama_70b() -> Preset:
    return _paper_recipe(
        "70b",
        "Llama 3.1 70B on 2,048 H100s (256 nodes)",
        LLAMA_3_1_70B,
        _h100_pool(nodes=256),
        peak_lr=1.5e-4,  # llamaops's choice, from the Llama 2 70B recipe
        min_lr=1.5e-6,
        # One sequence a microbatch: 32 a rank at 8K and at 128K, 32 in DPO.
        pretrain_layout=_bf16(tp=8, pp=4, dp=64, pp_microbatches=32),
        long_context_layout=_bf16(tp=8, cp=16, pp=4, dp=4, pp_microbatches=32),
        post_training_layout=_bf16(tp=8, dp=16, accumulation_steps=32),
        # bf16 weights are 141 GB: 4 x 80 GB with room for the KV cache.
        deploy=DeployConfig(enabled=True, engine="vllm", tensor_parallel=4),
    )


# bf16 weights are 812 GB: a rank's share at TP 8 (105 GB) exceeds 80 GB. Rejection sampling
# splits the model over two nodes (the paper served bf16 405B on two nodes too), each key/value
# head kept on two ranks: 55 GB of weights and 9 GB of KV cache a GPU (`train plan --stage sft`).
_SAMPLING_TP_405B = 16


def llama_405b() -> Preset:
    return _paper_recipe(
        "405b",
        "Llama 3.1 405B on 8,192 H100s: the paper's first 8K layout (Table 4, row 1)",
        LLAMA_3_1_405B,
        _h100_pool(nodes=1024),
        peak_lr=8e-5,
        min_lr=8e-7,
        # The paper's batch size per DP rank, 32 sequences (Table 4), one a microbatch; DPO's 64.
        pretrain_layout=_bf16(tp=8, pp=16, dp=64, pp_microbatches=32),
        long_context_layout=_bf16(tp=8, cp=16, pp=16, dp=4, pp_microbatches=32, activation_checkpointing="selective"),
        post_training_layout=_bf16(tp=8, pp=16, dp=8, pp_microbatches=64),
        deploy=_DEPLOY_405B,
        sampling_tp=_SAMPLING_TP_405B,
    )


def full_405b() -> Preset:
    return _paper_recipe(
        "full-405b",
        "The paper's full run: Llama 3.1 405B on 16,384 H100s (Table 4, 8K and 128K rows)",
        LLAMA_3_1_405B,
        _h100_pool(nodes=2048),
        peak_lr=8e-5,
        min_lr=8e-7,
        # The ramp's start (4M tokens of 4K) gives each of the 128 DP ranks 8 sequences, fewer than
        # the 16 stages: the paper's flexible schedule (interleaved 1F1B in torch) runs 8 microbatches.
        pretrain_layout=_bf16(tp=8, pp=16, dp=128, pp_microbatches=16, pp_schedule="interleaved_1f1b"),
        long_context_layout=_bf16(tp=8, cp=16, pp=16, dp=8, pp_microbatches=16, activation_checkpointing="selective"),
        post_training_layout=_bf16(tp=8, pp=16, dp=8, pp_microbatches=64),
        deploy=_DEPLOY_405B,
        sampling_tp=_SAMPLING_TP_405B,
    )


PRESETS: dict[str, Callable[[], Preset]] = {
    "tiny": tiny,
    "8b": llama_8b,
    "70b": llama_70b,
    "405b": llama_405b,
    "full-405b": full_405b,
}
