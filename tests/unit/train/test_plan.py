"""The layout plan shards the real model on a fake process group of the full world size."""
import pytest
import torch.distributed as dist

from llamaops.platform.config import load_preset
from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model.sizing import size_preset
from llamaops.platform.train.plan import PlanError, plan_training, rescale


@pytest.mark.parametrize(("name", "stage"), [("full-405b", "pretrain"), ("full-405b", "long_context"), ("405b", "long_context")])
def test_paper_405b_layouts_fit_an_80gb_h100_and_agree_with_the_analytic_sizing(name, stage):
    preset = load_preset(name)
    plan = plan_training(preset, stage)
    analytic = size_preset(preset, stage)
    assert plan.fits and plan.accelerator_memory_bytes == 80 * 2**30
    assert plan.layout.world_size == analytic.layout.world_size
    # Sharded for real, the parameter-driven bytes match the arithmetic within FSDP's padding.
    assert plan.busiest.optimizer_bytes == pytest.approx(analytic.memory.optimizer_bytes, rel=0.01)
    assert plan.busiest.total_bytes == pytest.approx(analytic.memory.total_bytes, rel=0.01)
    assert plan.training_days == pytest.approx(analytic.training_days)
    assert plan.busiest.attention_bias_bytes == analytic.memory.attention_bias_bytes  # CP's document bias
    assert (plan.busiest.attention_bias_bytes > 0) == (stage == "long_context")
    assert not dist.is_initialized()  # the fake group is gone


def test_gpus_rescale_data_parallel_and_memory_follows():
    preset = load_preset("405b")
    base = plan_training(preset)
    doubled = plan_training(preset, gpus=16_384)
    assert (doubled.layout.dp, doubled.layout.tp, doubled.layout.pp) == (128, 8, 16)
    assert doubled.busiest.optimizer_bytes == pytest.approx(base.busiest.optimizer_bytes / 2, rel=0.01)
    assert doubled.training_days == pytest.approx(base.training_days / 2)


def test_tensor_parallel_last_stage_counts_the_gathered_loss_weight():
    plan = plan_training(load_preset("8b"), "long_context")  # TP 8, one stage
    cfg = load_preset("8b").model
    assert plan.busiest.loss_weight_bytes == 2 * 2 * cfg.vocab_size * cfg.dim * 7 // 8


def test_a_layout_that_does_not_fit_says_so():
    plan = plan_training(load_preset("405b"), gpus=128)  # DP 1: all optimizer state on each stage's GPU
    assert not plan.fits and plan.busiest.total_bytes > 80 * 2**30


def test_bad_gpu_counts_are_refused():
    with pytest.raises(PlanError, match="not a multiple of TP x CP x PP = 128"):
        rescale(ParallelLayout(tp=8, pp=16, dp=64), 1000)
    with pytest.raises(PlanError, match="mfu"):
        plan_training(load_preset("tiny"), mfu=0)


def test_the_sft_plan_counts_rejection_sampling_on_its_ranks():
    preset = load_preset("405b")
    plan = plan_training(preset, "sft")
    g = plan.generation
    assert (g.tp, g.rows, g.context) == (16, 16, 8192 + 512) and plan.fits
    cfg = preset.model
    # 8 key/value heads over 16 ranks: one each, 2 bytes, keys and values, every layer and row.
    assert g.kv_cache_bytes == 2 * 2 * cfg.n_layers * cfg.head_dim * 16 * (8192 + 512)
    at_one_node = plan_training(load_preset("405b", overrides=["post_training.rejection_sampling.tp=8"]), "sft")
    assert not at_one_node.fits and at_one_node.busiest.total_bytes < 80 * 2**30  # sampling is what does not fit
    assert plan_training(preset, "dpo").generation is None
