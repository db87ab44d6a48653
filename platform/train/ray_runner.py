"""Runs a TrainingJob on Ray Train: one TorchTrainer worker per data-parallel rank.

Locally (no RAY_ADDRESS, no running Ray) it starts a small embedded Ray; on a cluster (KubeRay)
it joins the one it is given. CPU presets use gloo, GPU presets NCCL with one GPU per worker.
"""
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from llamaops.platform.store import home

from .loop import TrainingJob, train_worker

# AF_UNIX socket paths must stay under 108 bytes: Ray's session dir has to be short.
LOCAL_RAY_TEMP_DIR = "/tmp/ray-llo"
LOCAL_RAY_CPUS = 2
KUBERAY_CLUSTER_ENV = "RAY_CLUSTER_NAME"
# Ray swaps 127.0.0.1 for the machine's outward address; another loopback address keeps an
# embedded Ray's traffic on the loopback interface (Linux routes all of 127/8 there).
LOCAL_RAY_NODE_IP = "127.0.0.2" if sys.platform == "linux" else None
# Ray Train's controller polls its workers every 2 s by default, which a local run pays as idle
# seconds at every stage's start and end; a few local workers are cheap to poll often.
LOCAL_HEALTH_CHECK_INTERVAL_S = "0.2"


class TrainingRunError(RuntimeError):
    """A training worker failed; the message carries the worker's own error."""


def ensure_ray(workers: int) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # else Ray writes ~/.ray/auth_token
    if os.environ.get("RAY_ADDRESS"):
        # On a KubeRay cluster (it names the cluster in every Ray container) the driver's log, which
        # `ray job logs` and the submitter pod show, carries the workers' output; a local run's
        # steps keep theirs in the workers' own log files.
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=bool(os.environ.get(KUBERAY_CLUSTER_ENV)))
        return
    _start_local_ray(workers)


def _start_local_ray(workers: int) -> str:
    """An embedded Ray for `workers` one-CPU workers; returns its address.
    Its processes share this process's fate."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    context = ray.init(
        num_cpus=max(LOCAL_RAY_CPUS, workers),
        include_dashboard=False,
        _node_ip_address=LOCAL_RAY_NODE_IP,
        _temp_dir=LOCAL_RAY_TEMP_DIR,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    return context.address_info["gcs_address"]


@contextmanager
def shared_local_ray(workers: int) -> Iterator[None]:
    """One embedded Ray for a local run's step processes, which join it through RAY_ADDRESS,
    instead of each step starting and stopping its own (seconds per step). Nothing to do where a
    Ray address is given already."""
    if os.environ.get("RAY_ADDRESS"):
        yield
        return
    import ray

    os.environ["RAY_ADDRESS"] = _start_local_ray(workers)
    try:
        yield
    finally:
        os.environ.pop("RAY_ADDRESS", None)
        ray.shutdown()


def _worker_entry(config: dict) -> None:
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    job: TrainingJob = config["job"]
    device = ray.train.torch.get_device() if config["use_gpu"] else torch.device("cpu")
    train_worker(job, context.get_world_rank(), context.get_world_size(), device)


def run_on_ray(job: TrainingJob, workers: int, use_gpu: bool, name: str) -> None:
    """Train `job` with `workers` data-parallel ranks; returns once the last checkpoint is written."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    ensure_ray(workers)
    if not os.environ.get(KUBERAY_CLUSTER_ENV):
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", LOCAL_HEALTH_CHECK_INTERVAL_S)
    trainer = TorchTrainer(
        _worker_entry,
        train_loop_config={"job": job, "use_gpu": use_gpu},
        scaling_config=ray.train.ScalingConfig(
            num_workers=workers, use_gpu=use_gpu, resources_per_worker={"CPU": job.threads_per_worker}
        ),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=ray.train.RunConfig(
            name=f"{name}-{uuid.uuid4().hex[:8]}",
            storage_path=str(Path(home()) / "ray_results"),
            # A failed worker restarts the whole group, which resumes from the last checkpoint.
            failure_config=ray.train.FailureConfig(max_failures=job.max_restarts),
        ),
    )
    try:
        trainer.fit()
    except ray.train.TrainingFailedError as error:
        raise TrainingRunError(f"{name} training failed on a Ray worker: {error}") from None
