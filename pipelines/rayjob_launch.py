"""Create a step's RayJob in the cluster the pipeline runs in and wait for its end.

`launch_rayjob` is the one path for every step that runs as a RayJob (the data step and the
training steps): create (or, on a retried step, attach to or replace) the RayJob, wait for
KubeRay's verdict, and hand on the output URI only once its completion marker is there."""
import json
import os
import time

from llamaops.platform.config import Preset
from llamaops.platform.config.cluster import ClusterContract
from llamaops.platform.config.images import llamaops_image
from llamaops.platform.deploy.kube import current_namespace, custom_objects_api
from llamaops.platform.store import is_complete, run_uri

from .rayjob import STEP_ENV, build_rayjob
from .resources import training_layout

POLL_SECONDS = 30
# A RayJob whose pods never start (no node of the pool, quota) fails the step instead of hanging
# the pipeline; a running job may train for weeks, so its own limit is opt-in.
START_TIMEOUT_ENV, RUN_TIMEOUT_ENV = "LLAMAOPS_RAYJOB_START_TIMEOUT_S", "LLAMAOPS_RAYJOB_RUN_TIMEOUT_S"
POLL_ENV = "LLAMAOPS_RAYJOB_POLL_S"
DEFAULT_START_TIMEOUT_S = 3600
_STARTED = {"RUNNING", "SUCCEEDED", "FAILED", "STOPPED"}
_FINAL_DEPLOYMENTS = {"Complete", "Failed", "ValidationFailed"}


class RayJobFailed(RuntimeError):
    pass


def step_rayjob(
    step: str, preset_json: str, run_id: str, artifact_root: str, tracking_uri: str, parent_run_id: str,
    inputs: list[str], namespace: str, contract: ClusterContract,
) -> dict:
    """The RayJob manifest that runs training step `step` (also what `submit --dry-run` prints)."""
    preset = Preset.model_validate_json(preset_json)
    arguments = {"step": step, "preset_json": preset_json, "run_id": run_id, "artifact_root": artifact_root,
                 "tracking_uri": tracking_uri, "parent_run_id": parent_run_id, "inputs": list(inputs)}
    return build_rayjob(preset, training_layout(preset, step), step, run_id, contract.image or llamaops_image(),
                        {STEP_ENV: json.dumps(arguments)}, contract, namespace)  # fmt: skip


def run_step_on_rayjob(
    step: str, preset_json: str, run_id: str, artifact_root: str, tracking_uri: str, parent_run_id: str,
    inputs: list[str], cluster_json: str, namespace: str | None = None,
) -> str:
    manifest = step_rayjob(step, preset_json, run_id, artifact_root, tracking_uri, parent_run_id, inputs,
                           namespace or current_namespace(), ClusterContract.model_validate_json(cluster_json))
    return launch_rayjob(manifest, run_uri(run_id, step, artifact_root or None))


def launch_rayjob(manifest: dict, output_uri: str) -> str:
    """Run `manifest`'s RayJob to its end and return `output_uri`; a complete output skips the job
    (a resumed run), and a job that succeeds without completing its output fails the step."""
    if is_complete(output_uri):
        return output_uri
    _create_and_wait(manifest)
    if not is_complete(output_uri):
        raise RayJobFailed(f"RayJob {manifest['metadata']['name']} succeeded but {output_uri} is not complete")
    return output_uri


def _create_and_wait(manifest: dict) -> None:
    api = custom_objects_api()
    _create_or_attach(api, manifest)
    run_timeout = os.environ.get(RUN_TIMEOUT_ENV)
    wait_for_rayjob(api, manifest, float(os.environ.get(START_TIMEOUT_ENV, DEFAULT_START_TIMEOUT_S)),
                    float(run_timeout) if run_timeout else None, float(os.environ.get(POLL_ENV, POLL_SECONDS)))


def _create_or_attach(api, manifest: dict, poll_s: float = 1.0, sleep=time.sleep) -> None:
    """Create the RayJob. A retried step finds it already there: it waits on one that runs or
    succeeded, and replaces one that failed for good (the new one resumes from its checkpoints)."""
    from kubernetes.client.exceptions import ApiException

    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    while True:
        try:
            api.create_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs", manifest)
            return
        except ApiException as error:
            if error.status != 409:
                raise RayJobFailed(
                    f"cannot create RayJob {namespace}/{name}: HTTP {error.status} {error.reason}; check that "
                    "KubeRay's CRD is installed and the step's service account may create rayjobs.ray.io"
                ) from None
        try:
            found = api.get_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs", name)
        except ApiException as error:
            if error.status == 404:  # deleted meanwhile: create it again
                continue
            raise
        if found["metadata"].get("deletionTimestamp"):  # still being deleted (KubeRay's finalizer)
            sleep(poll_s)
            continue
        if _failed(found.get("status", {})) is None:
            return
        try:
            api.delete_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs", name)
        except ApiException as error:
            if error.status != 404:  # gone already: create it
                raise


def _failed(status: dict) -> str | None:
    """Why the RayJob has failed for good, or None. KubeRay's deployment status is final only at
    Complete or Failed: a failed Ray job with retries left goes to Retrying and starts over."""
    deployment, job_status = status.get("jobDeploymentStatus", ""), status.get("jobStatus", "")
    if deployment in _FINAL_DEPLOYMENTS and job_status != "SUCCEEDED":
        attempts = int(status.get("failed") or 1)  # KubeRay counts the last failure in
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        return f"ended {job_status or deployment}{tried}: {status.get('message', '')}"
    return None


def wait_for_rayjob(api, manifest: dict, start_timeout_s: float, run_timeout_s: float | None,
                    poll_s: float = POLL_SECONDS, clock=time.monotonic, sleep=time.sleep) -> None:
    """Poll the RayJob until it succeeds; raise RayJobFailed with KubeRay's message when it fails
    for good, when it has not started within `start_timeout_s`, or has run past `run_timeout_s`."""
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    created = clock()
    started = None
    while True:
        status = api.get_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs", name).get("status", {})
        job_status = status.get("jobStatus", "")
        if job_status == "SUCCEEDED":
            return
        failure = _failed(status)
        if failure:
            raise RayJobFailed(f"RayJob {namespace}/{name} {failure}")
        now = clock()
        if started is None and job_status in _STARTED:
            started = now
        if started is None and now - created > start_timeout_s:
            raise RayJobFailed(
                f"RayJob {namespace}/{name} has not started after {start_timeout_s:.0f} s "
                f"(deployment status '{status.get('jobDeploymentStatus', 'unknown')}'); check that the node pool "
                f"has free GPU nodes (kubectl -n {namespace} get pods -l ray.io/cluster) or raise {START_TIMEOUT_ENV}"
            )
        if started is not None and run_timeout_s is not None and now - started > run_timeout_s:
            raise RayJobFailed(f"RayJob {namespace}/{name} ran past {RUN_TIMEOUT_ENV}={run_timeout_s:.0f} s")
        sleep(poll_s)
