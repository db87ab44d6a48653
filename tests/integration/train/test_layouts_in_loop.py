"""The training loop (train_worker) on real gloo processes with the job's layout: pipeline
(1F1B, interleaved), pipeline x FSDP, tensor parallel, context parallel and FSDP x context parallel
runs train the same as the one-process run of the same job (same per-step losses and grad norms within fp32 tolerance); a pipeline run
resumes bitwise; checkpoints move between pipeline and data-parallel layouts."""
import json
import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.train.loop import TrainingJob, train_worker
from llamaops.platform.train.schedule import StepPlan

from ...unit.train.micro import micro_preset, write_shards
from ...unit.train.parallel_launch import launch

LOOP_WORKER = Path(__file__).parents[2] / "unit" / "train" / "loop_worker.py"
STEPS = 4


def _job(tmp_path: Path, name: str, layout: ParallelLayout, **changes) -> TrainingJob:
    data = tmp_path / "shards"
    if not data.exists():
        write_shards(data.as_uri(), train_tokens=20_000)
    model = micro_preset().model.model_copy(update={"n_layers": 4})  # 4 stages for interleaved PP2
    plan = [StepPlan(seq_len=32, sequences=8, lr=1e-2 / (1 + step)) for step in range(STEPS)]
    job = TrainingJob(
        model=model, plan=plan, data_uri=data.as_uri(), checkpoint_root=(tmp_path / name).as_uri(),
        checkpoint_steps=[2, 4], keep_checkpoints=2, layout=layout, async_checkpoints=True,
        peak_flops=1e12,  # no matmul-peak measurement in the ranks
    )
    return replace(job, **changes)


def _run(tmp_path: Path, job: TrainingJob, world: int, name: str) -> list[dict]:
    if world == 1:
        return train_worker(job, rank=0, world=1).history
    job_file, history = tmp_path / f"{name}.job", tmp_path / f"{name}.json"
    job_file.write_bytes(pickle.dumps(job))
    (tmp_path / f"{name}-ranks").mkdir()
    launch(world, [str(job_file), str(history)], tmp_path / f"{name}-ranks", worker=LOOP_WORKER)
    return json.loads(history.read_text())


def _assert_same_training(got: list[dict], want: list[dict]) -> None:
    assert [e["step"] for e in got] == [e["step"] for e in want]
    for key in ("loss", "grad_norm"):
        assert [e[key] for e in got] == pytest.approx([e[key] for e in want], rel=1e-5, abs=1e-6), key


PP2 = ParallelLayout(pp=2, pp_microbatches=4)
PP2_INTERLEAVED = PP2.model_copy(update={"pp_schedule": "interleaved_1f1b", "pp_stages_per_rank": 2})


@pytest.mark.parametrize(("name", "layout"), [("pp2", PP2), ("pp2-interleaved", PP2_INTERLEAVED),
                                             ("tp2", ParallelLayout(tp=2)), ("cp2", ParallelLayout(cp=2))])
def test_two_ranks_train_as_one_process(tmp_path: Path, name: str, layout: ParallelLayout):
    want = _run(tmp_path, _job(tmp_path, "one", ParallelLayout()), 1, "one")
    got = _run(tmp_path, _job(tmp_path, name, layout), 2, name)
    _assert_same_training(got, want)
    assert want[-1]["loss"] < want[0]["loss"]


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
