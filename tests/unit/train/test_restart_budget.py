"""A training stage's restart budget comes from the preset: its interruption rate over the days the
stage's plan takes on its GPUs (the paper: 466 interruptions in 54 days on 16,384 GPUs)."""
from llamaops.platform.config import load_preset
from llamaops.platform.train.pretrain import pretrain_job
from llamaops.platform.train.schedule import StepPlan
from llamaops.platform.train.stage_runner import worker_group_restarts

from .micro import micro_preset


def _budget(preset, tokens: int) -> int:
    """The budget of a pretraining plan of `tokens` at 8K (one step stands for the whole plan)."""
    return worker_group_restarts(preset, preset.pretrain.layout, [StepPlan(8192, tokens // 8192, 1e-4)])


def test_the_paper_runs_pretraining_gets_more_restarts_than_the_paper_saw():
    full = load_preset("full-405b")
    assert full.pretrain.layout.world_size == 16_384
    budget = _budget(full, full.pretrain.total_tokens)
    assert 2 * 466 <= budget < 4 * 466  # twice the paper's rate, over a plan somewhat longer than 54 days
    assert abs(_budget(full, full.pretrain.total_tokens // 2) - budget / 2) <= 1
    assert abs(_budget(load_preset("full-405b", None, ["restarts.margin=1"]), full.pretrain.total_tokens) - budget / 2) <= 1


def test_smaller_runs_get_fewer_and_never_less_than_the_minimum():
    budgets = [_budget(load_preset(name), load_preset(name).pretrain.total_tokens) for name in ("8b", "70b", "405b")]
    assert budgets == sorted(budgets) and budgets[0] > 2
    assert _budget(load_preset("tiny"), load_preset("tiny").pretrain.total_tokens) == 2


def test_the_budget_reaches_the_training_job(tmp_path):
    preset = micro_preset().model_copy(update={"restarts": micro_preset().restarts.model_copy(update={"min_worker_group": 7})})
    assert pretrain_job(preset, (tmp_path / "data").as_uri(), (tmp_path / "model").as_uri()).max_restarts == 7
