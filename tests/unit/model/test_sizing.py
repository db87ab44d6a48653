import dataclasses

import pytest
import torch

from llamaops.platform.config import ParallelLayout, load_preset
from llamaops.platform.model import Transformer
from llamaops.platform.model.sizing import (
    activation_bytes_per_token,
    flops_per_token,
    forwards_in_flight,
    memory_per_gpu,
    parameter_breakdown,
    parameter_count,
    selective_activation_bytes_per_token,
    size_preset,
    stage_activation_bytes,
    stage_layer_counts,
    training_days,
)

GIB = 2**30


@pytest.mark.parametrize(
    "preset, expected",
    [("8b", 8_030_261_248), ("70b", 70_553_706_496), ("405b", 405_853_388_800), ("tiny", None)],
)
def test_parameter_count_equals_the_real_module_built_on_meta(preset, expected):
    cfg = load_preset(preset).model
    with torch.device("meta"):
        model = Transformer(cfg)
    real = sum(p.numel() for p in model.parameters())
    assert parameter_count(cfg) == real
    if expected is not None:
        assert real == expected
    parts = parameter_breakdown(cfg)
    assert parts.embedding == model.tok_embeddings.weight.numel()
    assert parts.output == model.output.weight.numel()
    assert parts.attention == sum(p.numel() for n, p in model.named_parameters() if ".attention." in n)
    assert parts.ffn == sum(p.numel() for n, p in model.named_parameters() if ".feed_forward." in n)
    assert parts.norms == sum(p.numel() for n, p in model.named_parameters() if "norm" in n)
    assert parts.matmul == parts.total - parts.embedding - parts.norms


def test_405b_training_flops_match_the_papers_budget():
    cfg = load_preset("405b").model
    per_token = flops_per_token(cfg, 8192)
    paper = 3.8e25 / 15.6e12  # Llama 3 paper: 3.8e25 FLOPs for 15.6T tokens
    assert per_token == pytest.approx(paper, rel=0.10)
    six_n = 6 * parameter_breakdown(cfg).matmul
    attention = 12 * 126 * 128 * 128 * 8192
    assert per_token == six_n + attention
    assert flops_per_token(cfg, 2 * 8192) - per_token == attention  # attention is linear in T


def test_training_days_is_flops_over_delivered_throughput():
    cfg = load_preset("405b").model
    days = training_days(cfg, 15_600_000_000_000, 8192, 16_384, 989e12, 0.4)
    assert days == pytest.approx(flops_per_token(cfg, 8192) * 15.6e12 / (16_384 * 989e12 * 0.4) / 86_400)
    assert 60 < days < 90
    assert training_days(cfg, 15_600_000_000_000, 8192, 16_384, 989e12, 0.2) == pytest.approx(2 * days)
    with pytest.raises(ValueError, match="mfu"):
        training_days(cfg, 1, 8192, 1, 1.0, 0)


def test_pipeline_stages_drop_a_layer_at_both_ends_like_the_paper():
    assert stage_layer_counts(126, 16) == [7] + [8] * 14 + [7]
    assert stage_layer_counts(80, 4) == [19, 21, 21, 19]
    assert stage_layer_counts(32, 1) == [32]
    for layers, pp in [(4, 4), (5, 2), (32, 3), (126, 9)]:
        counts = stage_layer_counts(layers, pp)
        assert sum(counts) == layers and len(counts) == pp and min(counts) >= 1


def test_activation_count_reproduces_korthikanti_for_a_gpt_layer():
    # MHA with a 4*d hidden MLP: 32*d bytes per token, their 34*s*b*h without dropout masks.
    # SwiGLU keeps 3 hidden tensors where GeLU keeps 2, so use hidden 8d/3 to compare like for like.
    d = 3072
    gpt_like = load_preset("8b").model.model_copy(update=dict(dim=d, n_heads=24, n_kv_heads=24, ffn_hidden_dim=8 * d // 3))
    bf16_bytes = activation_bytes_per_token(gpt_like) - 4 * (24 + 2)
    assert bf16_bytes == 32 * d


@pytest.mark.parametrize(
    "preset, stage", [("full-405b", "pretrain"), ("full-405b", "long_context"), ("405b", "pretrain"), ("405b", "long_context")]
)
def test_paper_405b_layouts_fit_an_80gb_h100(preset, stage):
    report = size_preset(load_preset(preset), stage)
    assert report.accelerator_memory_bytes == 80 * GIB
    assert report.memory.fits(80 * GIB), f"{report.memory.total_bytes / GIB:.1f} GiB"
    assert report.memory.total_bytes > 40 * GIB  # and not absurdly far from it
    # The busiest stage is the second: 8 layers with 15 micro-batches in flight under 1F1B, 16 (all
    # of the step's) under full-405b pretraining's interleaved schedule (2 x 14 + 1 warm-up, capped).
    in_flight = 16 if report.layout.pp_schedule == "interleaved_1f1b" else 15
    assert (report.memory.stage, report.memory.stage_layers, report.memory.micro_batches_in_flight) == (1, 8, in_flight)


def test_128k_tokens_per_gpu_match_8k_when_cp_splits_the_sequence_16_ways():
    preset = load_preset("full-405b")
    cfg = preset.model
    short = memory_per_gpu(cfg, preset.pretrain.layout.model_copy(update={"pp_schedule": "1f1b"}), 8192)  # as long's
    long = memory_per_gpu(cfg, preset.long_context.layout.model_copy(update={"activation_checkpointing": "none"}), 131_072)
    # The same 8K tokens per GPU, plus every layer's keys and values of the other 15 CP ranks'
    # tokens (all-gathered for attention), split over TP 8; 8 layers x 15 micro-batches in flight.
    gathered_kv = 2 * 2 * cfg.n_kv_heads * cfg.head_dim * (131_072 - 8192) / 8
    assert long.activations_bytes == pytest.approx(short.activations_bytes + 8 * 15 * gathered_kv, rel=1e-9)
    assert long.optimizer_bytes == short.optimizer_bytes  # FSDP over DP 8 x CP 16 = DP 128


def test_context_parallel_document_bias_is_one_chunk_over_the_whole_sequence_at_a_time():
    # Built per layer and again in backward (context_parallel.py), never held per micro-batch in
    # flight: rank 0's mirror chunk (131072 / 32 queries) over all 131072 keys, in bf16.
    preset = load_preset("full-405b")
    long = memory_per_gpu(preset.model, preset.long_context.layout, 131_072)
    assert long.attention_bias_bytes == 2 * 4096 * 131_072 == GIB
    assert long.total_bytes == (long.parameters_bytes + long.gradients_bytes + long.optimizer_bytes
                                + long.activations_bytes + GIB)
    assert memory_per_gpu(preset.model, preset.pretrain.layout, 8192).attention_bias_bytes == 0  # no CP


def test_context_parallel_ranks_shard_weights_and_split_tokens():
    cfg = load_preset("70b").model
    cp1 = memory_per_gpu(cfg, ParallelLayout(tp=8, pp=4, dp=4), 32_768)
    cp2 = memory_per_gpu(cfg, ParallelLayout(tp=8, cp=2, pp=4, dp=4), 32_768)
    assert cp2.optimizer_bytes == pytest.approx(cp1.optimizer_bytes / 2)  # FSDP over DP x CP
    assert cp1.activations_bytes / 2 < cp2.activations_bytes < 0.6 * cp1.activations_bytes  # + gathered K/V


def test_unsharded_405b_on_one_gpu_does_not_fit():
    estimate = memory_per_gpu(load_preset("405b").model, ParallelLayout(), 8192)
    assert not estimate.fits(80 * GIB)
    assert estimate.parameters_bytes + estimate.gradients_bytes + estimate.optimizer_bytes > 16 * 405e9


def test_doubling_tp_halves_parameter_memory_and_activations():
    cfg = load_preset("70b").model
    tp4 = memory_per_gpu(cfg, ParallelLayout(tp=4, pp=4, dp=8), 8192)
    tp8 = memory_per_gpu(cfg, ParallelLayout(tp=8, pp=4, dp=8), 8192)
    for field in ("parameters_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes"):
        assert getattr(tp8, field) / getattr(tp4, field) == pytest.approx(0.5, rel=0.01)


def test_activation_checkpointing_and_more_dp_cut_memory():
    cfg = load_preset("405b").model
    layout = ParallelLayout(tp=8, pp=16, dp=8)
    plain = memory_per_gpu(cfg, layout, 8192)
    checkpointed = memory_per_gpu(cfg, layout.model_copy(update={"activation_checkpointing": "full"}), 8192)
    assert checkpointed.activations_bytes < plain.activations_bytes / 10
    selective = memory_per_gpu(cfg, layout.model_copy(update={"activation_checkpointing": "selective"}), 8192)
    assert checkpointed.activations_bytes < selective.activations_bytes < 0.8 * plain.activations_bytes
    wider = memory_per_gpu(cfg, layout.model_copy(update={"dp": 64}), 8192)
    assert wider.optimizer_bytes == pytest.approx(plain.optimizer_bytes / 8, rel=1e-6)
    assert memory_per_gpu(cfg, layout, 8192, micro_batch_size=2).activations_bytes > 1.9 * plain.activations_bytes


def test_size_preset_report_is_json_ready():
    report = size_preset(load_preset("tiny"), "long_context", mfu=0.5)
    data = report.to_dict()
    assert data["seq_len"] == 1024 and data["stage"] == "long_context"
    assert data["parameters"] == parameter_count(load_preset("tiny").model)
    assert data["memory_per_gpu_bytes"] == data["memory_breakdown"]["total_bytes"] == report.memory.total_bytes
    assert data["layout"]["world_size"] == 2
    assert dataclasses.is_dataclass(report)
    assert size_preset(load_preset("tiny"), seq_len=64).seq_len == 64


def test_selective_checkpointing_keeps_the_matmul_and_attention_outputs_of_every_layer():
    cfg = load_preset("405b").model
    layout = ParallelLayout(tp=8, pp=16, dp=8, pp_microbatches=16)
    plain = stage_activation_bytes(cfg, layout, 8192, stage=0)
    selective = stage_activation_bytes(cfg, layout.model_copy(update={"activation_checkpointing": "selective"}), 8192, stage=0)
    # Stage 0: 7 layers x 16 micro-batches in flight keep (5 d + 2 kv + 2 ffn) bf16 + fp32 lse per
    # token over TP 8, plus one layer's whole working set while it is recomputed.
    kept = 2 * (5 * 16_384 + 2 * 1024 + 2 * 53_248) + 4 * 128
    assert selective_activation_bytes_per_token(cfg) == kept
    layer = activation_bytes_per_token(cfg) * 8192 / 8
    assert selective == pytest.approx(7 * 16 * kept * 8192 / 8 + layer, rel=1e-9)
    assert plain == pytest.approx(7 * 16 * layer, rel=1e-9)


def test_the_layouts_param_dtype_sets_the_compute_bytes():
    cfg = load_preset("8b").model
    bf16 = memory_per_gpu(cfg, ParallelLayout(dp=512, param_dtype="bf16"), 8192)
    fp32 = memory_per_gpu(cfg, ParallelLayout(dp=512, param_dtype="fp32"), 8192)
    assert fp32.activations_bytes > 1.9 * bf16.activations_bytes
    assert fp32.optimizer_bytes == bf16.optimizer_bytes  # fp32 moments either way


@pytest.mark.parametrize(("layout", "per_stage"), [
    (ParallelLayout(pp=4, pp_microbatches=8), [4, 3, 2, 1]),
    (ParallelLayout(pp=4, pp_microbatches=8, pp_schedule="interleaved_1f1b"), [7, 5, 3, 1]),
    (ParallelLayout(pp=4, pp_microbatches=4, pp_schedule="interleaved_1f1b"), [4, 4, 3, 1]),
    (ParallelLayout(pp=4, pp_microbatches=8, pp_schedule="interleaved_1f1b", pp_stages_per_rank=2), [11, 9, 7, 5]),
])
def test_forwards_in_flight_follow_the_schedules_warm_up(layout, per_stage):
    # torch's 1F1B: pp - i; interleaved: (v - 1) x a round + 2 (pp - 1 - i) + 1, capped at the step's.
    assert [forwards_in_flight(layout, stage) for stage in range(layout.pp)] == per_stage
