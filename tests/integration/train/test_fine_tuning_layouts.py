"""Fine-tuning on the training engine (example batches, loss on the learned tokens only), with the
mean next-token loss (SFT, safety) and with DPO's, trains the same under every layout as in one
process, on real gloo processes: per-step losses and gradient norms, and the held-out losses the
workers measure before the first step and after the last (under DPO each held-out response's).
A stopped fine-tuning run, SFT or DPO, resumes bitwise."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.store import staged_output
from llamaops.platform.train.example_set import TRAIN, write_example_set, write_step_rows
from llamaops.platform.train.held_out import HeldOutChecks, held_out_example_losses, held_out_losses
from llamaops.platform.train.loop import TrainingJob
from llamaops.platform.train.preference_step import PreferenceObjective

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


def _fine_tuning_job(tmp_path: Path, name: str, layout: ParallelLayout, dpo: bool = False, **changes) -> TrainingJob:
    """SFT-like, or with `dpo` DPO's objective over pairs (examples 2p and 2p + 1 are pair p)."""
    data = tmp_path / ("pairs" if dpo else "examples")
    if not data.exists():
        with staged_output(data.as_uri()) as directory:
            write_example_set(directory, TRAIN, _examples(24, seed=0))
            write_example_set(directory, "held_out", _examples(22 if dpo else 11, seed=1))  # not a multiple of the DP ranks
            rng = np.random.default_rng(2)
            if dpo:
                rows = [[2 * p + side for p in rng.permutation(12)[: ROWS // 2] for side in (0, 1)] for _ in range(STEPS)]
            else:
                rows = [rng.permutation(24)[:ROWS].tolist() for _ in range(STEPS)]
            write_step_rows(directory, rows)
    job = loop_job(tmp_path, name, layout, **changes)
    plan = [replace(step, seq_len=64, sequences=ROWS) for step in job.plan]
    return replace(job, data_uri=data.as_uri(), batches="examples", plan=plan,
                   held_out=HeldOutChecks(("held_out",), (0, STEPS), seq_len=64, examples_per_forward=4, per_example=dpo),
                   objective=PreferenceObjective(0.5, 0.2, seq_len=64, examples_per_forward=4) if dpo else None)


def _held_out(job: TrainingJob) -> list[float]:
    return [held_out_losses(job.checkpoint_root, step)["held_out"] for step in (0, STEPS)]


PP2 = ParallelLayout(pp=2, pp_microbatches=4)


LAYOUTS = [
    ("dp2", ParallelLayout(dp=2)),
    ("tp2", ParallelLayout(tp=2)),
    ("pp2", PP2),
    ("dp2tp2", ParallelLayout(dp=2, tp=2)),
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
@pytest.mark.parametrize(("name", "layout"), LAYOUTS)
def test_dpo_trains_under_every_layout_as_one_process(tmp_path: Path, name: str, layout: ParallelLayout):
    one = _fine_tuning_job(tmp_path, "one", ParallelLayout(), dpo=True)
    want = run_loop(tmp_path, one, 1, "one")
    job = _fine_tuning_job(tmp_path, name, layout, dpo=True)
    got = run_loop(tmp_path, job, layout.world_size, name)
    assert_same_training(got, want)
    assert [e["reward_margin"] for e in got] == pytest.approx([e["reward_margin"] for e in want], rel=1e-4, abs=1e-6)
    for step in (0, STEPS):  # every held-out response's log-prob, before and after
        got_losses = held_out_example_losses(job.checkpoint_root, step)["held_out"]
        want_losses = held_out_example_losses(one.checkpoint_root, step)["held_out"]
        assert got_losses == pytest.approx(want_losses, rel=1e-5)
    # The first step's policy is the reference (margin 0); DPO then drives the margin up.
    assert want[0]["reward_margin"] == pytest.approx(0, abs=1e-9) and want[-1]["reward_margin"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("dpo", [False, True], ids=["sft", "dpo"])
def test_a_stopped_fine_tuning_run_resumes_bitwise(tmp_path: Path, dpo: bool):
    straight = run_loop(tmp_path, _fine_tuning_job(tmp_path, "straight", ParallelLayout(dp=2), dpo), 2, "straight")
    job = _fine_tuning_job(tmp_path, "stopped", ParallelLayout(dp=2), dpo)
    assert len(run_loop(tmp_path, replace(job, stop_after_step=2), 2, "first-half")) == 2
    resumed = run_loop(tmp_path, job, 2, "second-half")
    assert [(e["loss"], e["grad_norm"]) for e in resumed] == [(e["loss"], e["grad_norm"]) for e in straight]
