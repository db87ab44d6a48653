"""Fine-tuning on the training engine (example batches, loss on the learned tokens only), with the
mean next-token loss (SFT, safety), DPO's and the reward model's, trains the same under every
layout as in one process, on real gloo processes: per-step losses and gradient norms, and the
held-out figures the workers measure before the first step and after the last (for the pairwise
objectives each held-out response's log-prob or reward). A stopped fine-tuning run resumes
bitwise."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.store import staged_output
from llamaops.platform.train.example_set import TRAIN, write_example_set, write_step_rows
from llamaops.platform.train.held_out import HeldOutChecks, held_out_example_values, held_out_losses
from llamaops.platform.train.loop import TrainingJob
from llamaops.platform.train.preference_step import DPOObjective, RewardObjective

from ...unit.train.micro import MICRO_VOCAB
from .loop_runs import STEPS, assert_same_training, loop_job, run_loop

ROWS = 8


def _examples(count: int, seed: int) -> list[tuple[list[int], list[bool]]]:
    """Dialog-like examples: a prompt that is not learned, then a reply that is, of varied lengths."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(count):
        prompt, reply = int(rng.integers(4, 20)), int(rng.integers(2, 30))
        ids = rng.integers(0, MICRO_VOCAB, prompt + reply).tolist()
        examples.append((ids, [False] * prompt + [True] * reply))
    return examples


OBJECTIVES = {"sft": None, "dpo": DPOObjective(0.5, 0.2, seq_len=64, examples_per_forward=4),
              "reward": RewardObjective(score_token=MICRO_VOCAB - 1)}


def _fine_tuning_job(tmp_path: Path, name: str, layout: ParallelLayout, kind: str = "sft", **changes) -> TrainingJob:
    """SFT-like, or with a pairwise objective over pairs (examples 2p and 2p + 1 are pair p)."""
    pairwise = kind != "sft"
    data = tmp_path / ("pairs" if pairwise else "examples")
    if not data.exists():
        with staged_output(data.as_uri()) as directory:
            write_example_set(directory, TRAIN, _examples(24, seed=0))
            write_example_set(directory, "held_out", _examples(22 if pairwise else 11, seed=1))  # not a multiple of the DP ranks
            rng = np.random.default_rng(2)
            if pairwise:
                rows = [[2 * p + side for p in rng.permutation(12)[: ROWS // 2] for side in (0, 1)] for _ in range(STEPS)]
            else:
                rows = [rng.permutation(24)[:ROWS].tolist() for _ in range(STEPS)]
            write_step_rows(directory, rows)
    job = loop_job(tmp_path, name, layout, **changes)
    plan = [replace(step, seq_len=64, sequences=ROWS) for step in job.plan]
    objective = OBJECTIVES[kind]
    checks = HeldOutChecks(("held_out",), (0, STEPS), seq_len=64, examples_per_forward=4, per_example=pairwise,
                           score_token=None if objective is None else objective.score_token)
    return replace(job, data_uri=data.as_uri(), batches="examples", plan=plan, held_out=checks, objective=objective)


def _held_out(job: TrainingJob) -> list[float]:
    return [held_out_losses(job.checkpoint_root, step)["held_out"] for step in (0, STEPS)]


PP2 = ParallelLayout(pp=2, pp_microbatches=4)


LAYOUTS = [
    ("dp2", ParallelLayout(dp=2)),
    ("tp2", ParallelLayout(tp=2)),
    ("pp2", PP2),
    ("dp2tp2", ParallelLayout(dp=2, tp=2)),
    ("dp2-accumulating", ParallelLayout(dp=2, accumulation_steps=3)),  # 4 examples a rank, packed: padded rows
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "layout"), LAYOUTS)
def test_fine_tuning_trains_under_every_layout_as_one_process(tmp_path: Path, name: str, layout: ParallelLayout):
    one = _fine_tuning_job(tmp_path, "one", ParallelLayout())
    want = run_loop(tmp_path, one, 1, "one")
    job = _fine_tuning_job(tmp_path, name, layout)
    got = run_loop(tmp_path, job, layout.world_size, name)
    assert_same_training(got, want)
    assert _held_out(job) == pytest.approx(_held_out(one), rel=1e-5)
    before, after = _held_out(one)
    assert after < before and want[-1]["loss"] < want[0]["loss"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dpo", "reward"])
@pytest.mark.parametrize(("name", "layout"), LAYOUTS)
def test_pairwise_objectives_train_under_every_layout_as_one_process(tmp_path: Path, name: str,
                                                                      layout: ParallelLayout, kind: str):
    one = _fine_tuning_job(tmp_path, "one", ParallelLayout(), kind)
    want = run_loop(tmp_path, one, 1, "one")
    job = _fine_tuning_job(tmp_path, name, layout, kind)
    got = run_loop(tmp_path, job, layout.world_size, name)
    assert_same_training(got, want)
    assert [e["reward_margin"] for e in got] == pytest.approx([e["reward_margin"] for e in want], rel=1e-4, abs=1e-6)
    for step in (0, STEPS):  # every held-out response's log-prob or reward, before and after
        got_values = held_out_example_values(job.checkpoint_root, step)["held_out"]
        want_values = held_out_example_values(one.checkpoint_root, step)["held_out"]
        assert got_values == pytest.approx(want_values, rel=1e-5, abs=1e-6)
    # The first step's policy is the reference, or every reward 0 (margin 0); training drives it up.
    assert want[0]["reward_margin"] == pytest.approx(0, abs=1e-9) and want[-1]["reward_margin"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sft", "dpo", "reward"])
def test_a_stopped_fine_tuning_run_resumes_bitwise(tmp_path: Path, kind: str):
    straight = run_loop(tmp_path, _fine_tuning_job(tmp_path, "straight", ParallelLayout(dp=2), kind), 2, "straight")
    job = _fine_tuning_job(tmp_path, "stopped", ParallelLayout(dp=2), kind)
    assert len(run_loop(tmp_path, replace(job, stop_after_step=2), 2, "first-half")) == 2
    resumed = run_loop(tmp_path, job, 2, "second-half")
    assert [(e["loss"], e["grad_norm"]) for e in resumed] == [(e["loss"], e["grad_norm"]) for e in straight]
