"""The data step as a KubeRay RayJob: `llamaops data prep` reading and writing s3:// on CPU pods.

The entrypoint is the CLI itself. The data settings travel as `--preset NAME` plus one `--set`
for each setting that differs from that preset; credentials and endpoints come from the cluster
contract's Secret and ConfigMap by reference, never inline. The head only drives; the Ray Data workers run on the worker pods.
"""
import json
import math
import shlex
from typing import Any

from llamaops.platform.config import Preset, load_preset
from llamaops.platform.config.cluster import ClusterContract
from llamaops.platform.config.images import llamaops_image
from llamaops.platform.config.presets import PRESETS
from llamaops.platform.deploy.kube import current_namespace
from llamaops.platform.store import run_uri

from .rayjob import container, pod_spec, rayjob_manifest, rayjob_name, step_labels, worker_group
from .rayjob_launch import launch_rayjob
from .resources import cpu_pod, uses_gpus

DATA_STEP = "data"
_NOT_SET = ("sources",)  # given as arguments


def data_runs_on_rayjob(preset: Preset) -> bool:
    """Whether a cluster run prepares data in a RayJob rather than in its KFP step's pod: on GPU
    presets (a data volume no single pod should hold) and whenever more than one Ray Data worker is
    asked for (the workers need pods of their own). `--local` runs always prepare data in-process."""
    return uses_gpus(preset) or preset.data.workers > 1


def data_prep_command(preset: Preset, output_uri: str, tracking_uri: str = "", parent_run_id: str = "") -> list[str]:
    """The `llamaops data prep` argv that prepares `preset.data` into `output_uri` (logged as the `data`
    stage of MLflow run `parent_run_id` when given, like the steps that run in their own pods)."""
    data = preset.data
    base_name = preset.name if preset.name in PRESETS else "tiny"
    base = load_preset(base_name).data.model_dump(mode="json")
    sets = [
        argument
        for name, value in data.model_dump(mode="json").items()
        if name not in _NOT_SET and value != base[name]
        for argument in ("--set", f"{name}={json.dumps(value)}")
    ]
    command = ["llamaops", "data", "prep", *data.sources, "--output", output_uri, "--workers", str(data.workers),
               "--preset", base_name, *sets, "--json"]  # fmt: skip
    # Without a tracking URI the pods' MLFLOW_TRACKING_URI (the cluster's platform ConfigMap) is the server.
    command += (["--tracking-uri", tracking_uri] if tracking_uri else []) + (
        ["--parent-run-id", parent_run_id] if parent_run_id else [])
    return command


def build_data_rayjob(
    preset: Preset, run_id: str, output_uri: str, image: str, contract: ClusterContract, namespace: str = "default",
    tracking_uri: str = "", parent_run_id: str = "",
) -> dict[str, Any]:
    """The RayJob that runs the data step of run `run_id` on ceil(workers / CPUs per pod) CPU pods."""
    pod = cpu_pod(contract)
    pods = math.ceil(preset.data.workers / pod.whole_cpus)
    labels = step_labels(run_id, DATA_STEP)
    workers = worker_group("cpu-workers", pods, {"num-cpus": str(pod.whole_cpus)}, labels,
                           pod_spec([container("ray-worker", image, pod, {}, contract)], contract.cpu_nodes(), contract,
                                    shared_memory=True))  # fmt: skip
    head = container("ray-head", image, pod, {}, contract)
    entrypoint = shlex.join(data_prep_command(preset, output_uri, tracking_uri, parent_run_id))
    return rayjob_manifest(rayjob_name(run_id, DATA_STEP), namespace, labels, entrypoint, head, workers, contract,
                           preset.restarts)


def data_step_rayjob(
    preset: Preset, run_id: str, artifact_root: str, tracking_uri: str, namespace: str, contract: ClusterContract,
    parent_run_id: str = "",
) -> dict[str, Any]:
    """The data step's RayJob as a submission would create it (what `submit --dry-run` prints)."""
    output_uri = run_uri(run_id, DATA_STEP, artifact_root or None)
    return build_data_rayjob(preset, run_id, output_uri, contract.image or llamaops_image(), contract, namespace,
                             tracking_uri=tracking_uri, parent_run_id=parent_run_id)  # fmt: skip


def run_data_on_rayjob(
    preset_json: str, run_id: str, artifact_root: str, tracking_uri: str, parent_run_id: str, cluster_json: str,
    namespace: str | None = None,
) -> str:
    """The data step of a cluster run: create its RayJob, wait for it, return the shards' URI once complete."""
    preset = Preset.model_validate_json(preset_json)
    contract = ClusterContract.model_validate_json(cluster_json)
    manifest = data_step_rayjob(preset, run_id, artifact_root, tracking_uri, namespace or current_namespace(),
                                contract, parent_run_id)  # fmt: skip
    return launch_rayjob(manifest, run_uri(run_id, DATA_STEP, artifact_root or None))
