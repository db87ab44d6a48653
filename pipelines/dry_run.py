"""Every manifest a submission would create, without a cluster: the KFP pipeline spec (and its
Kubernetes platform spec), for GPU presets the RayJob of each training step, the data step's RayJob
wherever the pipeline launches one (GPU presets, or more than one data worker), and the
LlamaDeployment its deploy step applies (shown for version 1); with this run's id and artifact locations."""
import tempfile
from pathlib import Path

import yaml

from llamaops.platform.config import Preset
from llamaops.platform.config.cluster import ClusterContract
from llamaops.platform.deploy import model_name_for
from llamaops.platform.deploy.rollout import deployment_manifest
from llamaops.platform.store import run_uri

from .data_rayjob import data_runs_on_rayjob, data_step_rayjob
from .lifecycle import YAML_LOADER, compile_pipeline
from .rayjob_launch import step_rayjob
from .resources import trains_on_rayjob
from .stages import lifecycle_stages


def dry_run_manifests(preset: Preset, run_id: str, namespace: str, artifact_root: str = "",
                      tracking_uri: str = "", contract: ClusterContract | None = None) -> list[dict]:
    contract = contract or ClusterContract()
    with tempfile.TemporaryDirectory() as tmp:
        path = compile_pipeline(preset, Path(tmp) / "pipeline.yaml", contract)
        docs = [doc for doc in yaml.load_all(path.read_text(), Loader=YAML_LOADER) if doc]
    if data_runs_on_rayjob(preset):
        docs.append(data_step_rayjob(preset, run_id, artifact_root, tracking_uri, namespace, contract))
    preset_json = preset.model_dump_json()
    for stage in lifecycle_stages(preset):
        if stage.trains and trains_on_rayjob(preset, stage.name):
            inputs = [run_uri(run_id, upstream, artifact_root or None) for upstream in stage.inputs]
            docs.append(step_rayjob(stage.name, preset_json, run_id, artifact_root, tracking_uri, "", inputs, namespace,
                                   contract))
    if preset.deploy.enabled:
        docs.append(deployment_manifest(contract, preset, model_name_for(preset), "1", namespace))
    return docs
