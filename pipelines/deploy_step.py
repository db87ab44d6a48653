"""The step after register: serve the promoted model version.

On a cluster it applies a LlamaDeployment pinned to the version in this pod's namespace and waits
for the operator to report it Ready; a local run (or a preset with deploy.enabled false) deploys
nothing and reports the `llamaops serve` command instead. A version that was not promoted is
never deployed.
"""
import os
import time
from typing import Any

from llamaops.platform.config import Preset
from llamaops.platform.config.cluster import parse_contract
from llamaops.platform.deploy import apply_deployment, deployment_manifest, serve_command, wait_until_ready
from llamaops.platform.deploy.kube import current_namespace, custom_objects_api
from llamaops.platform.deploy.serving import registry_uri
from llamaops.platform.tracking import PipelineTracker

from .events import StepEvent, emit, step_output
from .stages import DEPLOY_STEP
from .step import check_run_parameters, one_line_error

POLL_ENV = "LLAMAOPS_DEPLOY_POLL_S"
DEFAULT_POLL_S = 10.0


def _poll_seconds() -> float:
    return float(os.environ.get(POLL_ENV, DEFAULT_POLL_S))


def _deploy_on_cluster(preset: Preset, model_name: str, version: str, cluster_json: str) -> dict[str, Any]:
    contract = parse_contract(cluster_json, "the deploy step's cluster_json")  # the chart's cluster.json
    namespace = current_namespace()
    manifest = deployment_manifest(contract, preset, model_name, version, namespace)
    api = custom_objects_api()
    applied = apply_deployment(api, manifest)
    name = manifest["metadata"]["name"]
    generation = (applied.get("metadata") or {}).get("generation")
    ready = wait_until_ready(api, namespace, name, preset.deploy.ready_timeout_s, _poll_seconds(),
                             generation=generation)
    return {"deployed": True, "deployment": f"{namespace}/{name}", "namespace": namespace, "name": name,
            "generation": (ready.get("metadata") or {}).get("generation"), "spec": manifest["spec"]}


def deploy_step(
    preset_json: str, run_id: str, tracking_uri: str, parent_run_id: str, model_name: str, version: str,
    promoted: bool, cluster_json: str, to_cluster: bool,
) -> str:
    """Deploy version `version` of `model_name` when it was promoted.

    Returns "NAMESPACE/NAME" of the Ready LlamaDeployment; the `llamaops serve` command when the
    model is to be served locally (`to_cluster` false, or the preset's deploy.enabled false); ""
    when the version was not promoted.
    """
    with step_output(DEPLOY_STEP):
        return _deploy_step(preset_json, run_id, tracking_uri, parent_run_id, model_name, version, promoted,
                            cluster_json, to_cluster)


def _deploy_step(
    preset_json: str, run_id: str, tracking_uri: str, parent_run_id: str, model_name: str, version: str,
    promoted: bool, cluster_json: str, to_cluster: bool,
) -> str:
    check_run_parameters(run_id, parent_run_id)
    preset = Preset.model_validate_json(preset_json)
    started = time.monotonic()
    emit(StepEvent(DEPLOY_STEP, "started"))
    model = registry_uri(model_name, version)
    tracker = PipelineTracker.attach(tracking_uri or None, parent_run_id)
    try:
        with tracker.stage(DEPLOY_STEP, {"model": model, "promoted": promoted, "to_cluster": to_cluster,
                                         "deploy_enabled": preset.deploy.enabled}) as child:
            if not promoted:
                report: dict[str, Any] = {
                    "deployed": False, "model": model,
                    "reason": f"{model} was not promoted (the eval gate or the production comparison failed)"}
                result = ""
            elif not (to_cluster and preset.deploy.enabled):
                command = serve_command(model_name, version=version)
                why = "a local run" if not to_cluster else f"preset {preset.name} has deploy.enabled false"
                report = {"deployed": False, "model": model, "reason": f"{why}: serve it with the command",
                          "serve_command": command}
                print(f"deploy: {command}", flush=True)
                result = command
            else:
                report = {"model": model, **_deploy_on_cluster(preset, model_name, version, cluster_json)}
                result = report["deployment"]
            child.log_report("deployment", report)
    except BaseException as error:
        emit(StepEvent(DEPLOY_STEP, "failed", time.monotonic() - started, {"error": one_line_error(error)}))
        raise
    emit(StepEvent(DEPLOY_STEP, "finished", time.monotonic() - started, report))
    if to_cluster:  # the last step of a cluster run ends its MLflow run (`submit --local` ends its own)
        tracker.finish()
    return result
