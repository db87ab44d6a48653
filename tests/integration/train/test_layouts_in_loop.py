"""The training loop (train_worker) on real gloo processes with the job's layout: pipeline
(1F1B, interleaved), pipeline x FSDP, tensor parallel, context parallel and FSDP x context parallel
runs train the same as the one-process run of the same job (same per-step losses and grad norms within fp32 tolerance), also
through a batch-size ramp; a pipeline run
resumes bitwise; checkpoints move between pipeline and data-parallel layouts."""
from dataclasses import replace
from pathlib import Path

import pytest

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.train.schedule import StepPlan

from .loop_runs import assert_same_training as _assert_same_training
from .loop_runs import loop_job as _job
from .loop_runs import run_loop as _run

PP2 = ParallelLayout(pp=2, pp_microbatches=4)
PP2_INTERLEAVED = PP2.model_copy(update={"pp_schedule": "interleaved_1f1b", "pp_stages_per_rank": 2})


@pytest.mark.parametrize(("name", "layout"), [("pp2", PP2), ("pp2-interleaved", PP2_INTERLEAVED),
                                             ("tp2", ParallelLayout(tp=2)), ("cp2", ParallelLayout(cp=2)),
                                             ("dp2-accumulating", ParallelLayout(dp=2, accumulation_steps=2))])
def test_two_ranks_train_as_one_process(tmp_path: Path, name: str, layout: ParallelLayout):
    want = _run(tmp_path, _job(tmp_path, "one", ParallelLayout()), 1, "one")
    got = _run(tmp_path, _job(tmp_path, name, layout), 2, name)
    _assert_same_training(got, want)
    assert want[-1]["loss"] < want[0]["loss"]


# A batch-size ramp: sequences and sequence length grow during the run. Each change of the
# microbatches' count or shape needs a new schedule (torch infers a stage's send and receive shapes
# on the first step); interleaved runs the first steps with fewer microbatches than its 4 stages.
RAMP = [StepPlan(16, 1, 1e-2), StepPlan(16, 2, 1e-2), StepPlan(32, 4, 5e-3), StepPlan(32, 4, 5e-3)]


@pytest.mark.parametrize(("name", "layout", "plan"), [
    ("pp2", PP2, [replace(step, sequences=max(2, step.sequences)) for step in RAMP]),  # 1F1B: at least pp
    ("pp2-interleaved", PP2_INTERLEAVED, RAMP),
])
def test_a_batch_ramp_trains_through_the_pipeline_as_one_process(tmp_path: Path, name, layout, plan):
    want = _run(tmp_path, replace(_job(tmp_path, "one", ParallelLayout()), plan=plan), 1, "one")
    got = _run(tmp_path, replace(_job(tmp_path, name, layout), plan=plan), 2, name)
    _assert_same_training(got, want)


# Four and eight ranks; the last is the shape of the 70B/405B long-context layouts (TP x CP x PP).
@pytest.mark.slow
@pytest.mark.parametrize(("name", "layout"), [
    ("pp2dp2", PP2.model_copy(update={"pp_microbatches": 2})),
    ("dp2cp2", ParallelLayout(dp=2, cp=2)),
    ("pp2cp2", PP2.model_copy(update={"cp": 2})),
    ("pp2tp2", PP2.model_copy(update={"tp": 2})),
    ("pp2cp2tp2", PP2.model_copy(update={"cp": 2, "tp": 2})),
])
def test_more_ranks_train_as_one_process(tmp_path: Path, name: str, layout: ParallelLayout):
    want = _run(tmp_path, _job(tmp_path, "one", ParallelLayout()), 1, "one")
    got = _run(tmp_path, _job(tmp_path, name, layout), layout.world_size, name)
    _assert_same_training(got, want)


@pytest.mark.slow
def test_a_pipeline_run_stopped_and_resumed_repeats_its_losses_bitwise(tmp_path: Path):
    straight = _run(tmp_path, _job(tmp_path, "straight", PP2), 2, "straight")
    job = _job(tmp_path, "stopped", PP2)
    stopped = _run(tmp_path, replace(job, stop_after_step=2), 2, "first-half")
    assert len(stopped) == 2
    resumed = _run(tmp_path, job, 2, "second-half")
    assert [e["loss"] for e in resumed] == [e["loss"] for e in straight]
    assert [e["grad_norm"] for e in resumed] == [e["grad_norm"] for e in straight]


@pytest.mark.slow
@pytest.mark.parametrize(("first", "then"), [(PP2, ParallelLayout()), (ParallelLayout(), PP2)],
                         ids=["pp2-then-dp2", "dp2-then-pp2"])
def test_a_checkpoint_resumes_in_the_other_layout(tmp_path: Path, first: ParallelLayout, then: ParallelLayout):
    want = _run(tmp_path, _job(tmp_path, "one", ParallelLayout()), 1, "one")
    _run(tmp_path, _job(tmp_path, "switched", first, stop_after_step=2), 2, "first")
    resumed = _run(tmp_path, _job(tmp_path, "switched", then), 2, "then")
    _assert_same_training(resumed, want)
