"""The three training stages on two Ray Train workers (FSDP2 over gloo), on a micro model and random shards."""
import ipaddress
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from llamaops.platform.config import Preset
from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model.checkpoint import load_model
from llamaops.platform.stage import NoMetrics
from llamaops.platform.store import is_complete
from llamaops.platform.train.anneal import run_anneal
from llamaops.platform.train.checkpointing import is_valid_checkpoint, load_checkpoint_model, step_uri
from llamaops.platform.train.long_context import run_long_context
from llamaops.platform.train.pretrain import pretrain_job, run_pretrain
from llamaops.platform.train.ray_runner import TrainingRunError
from llamaops.platform.train.stage_runner import train_and_publish

from ...unit.train.micro import micro_preset, micro_pretraining, write_shards


class Recorder:
    def __init__(self) -> None:
        self.logged: list[tuple[int | None, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.logged.append((step, metrics))


def ray_preset() -> Preset:
    preset = micro_pretraining(micro_preset(), seq_len=64, batch_tokens=512, steps=8, checkpoint_every=3)
    long_context = preset.long_context.model_copy(update={"total_tokens": 4096, "global_batch_tokens": 2048})
    anneal = preset.anneal.model_copy(update={"total_tokens": 4096, "global_batch_tokens": 2048})
    return preset.model_copy(update={"long_context": long_context, "anneal": anneal})


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_shards((tmp_path_factory.mktemp("data") / "shards").as_uri(), train_tokens=30_000)


@pytest.mark.slow
def test_pretrain_stopped_then_resumed_matches_an_uninterrupted_run(local_ray, shards: str, tmp_path: Path):
    preset = ray_preset()
    straight = run_pretrain(preset, shards, (tmp_path / "straight").as_uri())

    output = (tmp_path / "resumed").as_uri()
    stopped_job = replace(pretrain_job(preset, shards, output), stop_after_step=3)
    stopped = train_and_publish(preset, stopped_job, output, NoMetrics(), "pretrain")
    assert stopped.outputs == {} and stopped.report["stopped_at_step"] == 3
    assert not is_complete(output)
    recorder = Recorder()
    resumed = run_pretrain(preset, shards, output, recorder)

    assert resumed.report["resumed_from_step"] == 3
    assert resumed.report["loss_history"] == straight.report["loss_history"]  # bitwise: fp32 on CPU
    assert straight.report["loss_history"][-1] < straight.report["loss_history"][0] - 0.5
    a, b = load_model(tmp_path / "straight"), load_model(tmp_path / "resumed")
    for (name, wa), wb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(wa, wb, atol=1e-6), name
    assert [step for step, _ in recorder.logged] == list(range(1, len(straight.report["loss_history"]) + 1))
    assert {"final_loss", "tokens_per_second", "mfu"} <= resumed.metrics.keys()
    assert 0 < resumed.metrics["mfu"] < 1
    step_metrics = recorder.logged[0][1]
    assert {"loss", "grad_norm", "tokens_per_second", "mfu", "memory_bytes"} <= step_metrics.keys()
    assert 0 < step_metrics["mfu"] < 1 and step_metrics["memory_bytes"] > 0


@pytest.mark.slow
def test_a_killed_worker_restarts_the_group_from_the_last_checkpoint(local_ray, shards: str, tmp_path: Path):
    preset = ray_preset()
    straight = run_pretrain(preset, shards, (tmp_path / "straight").as_uri())
    unrecoverable = (tmp_path / "no-restarts").as_uri()
    job = replace(pretrain_job(preset, shards, unrecoverable), fail_after_step=3, max_restarts=0)
    with pytest.raises(TrainingRunError, match="pretrain training failed"):  # the kill does happen
        train_and_publish(preset, job, unrecoverable, NoMetrics(), "pretrain")
    output = (tmp_path / "crashed").as_uri()
    job = replace(pretrain_job(preset, shards, output), fail_after_step=3)
    recovered = train_and_publish(preset, job, output, NoMetrics(), "pretrain")
    # Ray Train restarted both workers; they resumed at step 3 and ended where the straight run did.
    assert recovered.report["resumed_from_step"] is None  # no checkpoint when the stage began
    assert recovered.report["loss_history"] == straight.report["loss_history"]


@pytest.mark.slow
def test_long_context_then_anneal_continue_the_model(local_ray, shards: str, tmp_path: Path):
    preset = ray_preset()
    pretrained = run_pretrain(preset, shards, (tmp_path / "pretrain").as_uri())
    long_context = run_long_context(preset, shards, pretrained.outputs["model"], (tmp_path / "lc").as_uri())
    seq_lens = [entry["seq_len"] for entry in long_context.report["history"]]
    assert seq_lens == sorted(seq_lens) and set(seq_lens) == set(preset.long_context.seq_lens)
    # Continued, not restarted: the first long-context loss is near the end of pretraining, far below ln(vocab).
    assert long_context.report["loss_history"][0] < pretrained.report["loss_history"][0] - 0.5

    # Published: the stage's checkpoints are gone (keep_checkpoints_after_publish 0, the default).
    lc_root = long_context.report["checkpoints_uri"]
    assert long_context.report["checkpoints_kept"] == []
    assert not any(is_valid_checkpoint(lc_root, step) for step in range(1, len(seq_lens) + 1))

    # Annealing keeps its averaged checkpoints, to check the average against them.
    average = preset.anneal.average_last_checkpoints
    keeping = preset.model_copy(update={"pretrain": preset.pretrain.model_copy(
        update={"keep_checkpoints_after_publish": average})})
    annealed = run_anneal(keeping, shards, long_context.outputs["model"], (tmp_path / "anneal").as_uri())
    lrs = [entry["lr"] for entry in annealed.report["history"]]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < lrs[0]
    averaged = annealed.report["averaged_checkpoint_steps"]
    assert len(averaged) == min(average, len(lrs)) and annealed.report["checkpoints_kept"] == averaged
    root = annealed.report["checkpoints_uri"]
    parts = [load_checkpoint_model(root, step).output.weight for step in averaged]
    assert all(is_complete(step_uri(root, step)) for step in averaged)
    assert torch.allclose(load_model(tmp_path / "anneal").output.weight, torch.stack(parts).mean(0))


@pytest.mark.slow
def test_pretrain_on_two_pipeline_ranks_trains_as_two_data_parallel_ranks(local_ray, shards: str, tmp_path: Path):
    preset = ray_preset()
    data_parallel = run_pretrain(preset, shards, (tmp_path / "dp").as_uri())  # the micro preset's DP 2
    layout = ParallelLayout(pp=2, pp_microbatches=4)
    pipelined = preset.model_copy(update={"pretrain": preset.pretrain.model_copy(update={"layout": layout})})
    result = run_pretrain(pipelined, shards, (tmp_path / "pp").as_uri())
    assert preset.pretrain.layout.dp == 2 and layout.world_size == 2
    assert result.report["loss_history"] == pytest.approx(data_parallel.report["loss_history"], rel=1e-5)
    a, b = load_model(tmp_path / "dp"), load_model(tmp_path / "pp")
    for (name, wa), wb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(wa, wb, atol=1e-5), name


@pytest.mark.skipif(sys.platform != "linux", reason="other loopback addresses than 127.0.0.1 exist on Linux only")
def test_the_embedded_ray_and_its_workers_stay_on_the_loopback_interface(local_ray):
    import ray

    @ray.remote(num_cpus=1)
    def worker_address() -> str:
        return ray.util.get_node_ip_address()

    gcs_host = ray.get_runtime_context().gcs_address.rsplit(":", 1)[0]
    assert ipaddress.ip_address(gcs_host).is_loopback
    assert ipaddress.ip_address(ray.get(worker_address.remote())).is_loopback
