"""Submit the lifecycle pipeline to a Kubeflow Pipelines API server and follow its runs.

The server is probed (reachable? token accepted?) before anything is compiled, so a wrong
--host or --token fails in one line within seconds, not after a compile and kfp's own retries.
"""
from __future__ import annotations

import contextlib
import io
import json
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from llamaops.platform.config import Preset
from llamaops.platform.config.cluster import ClusterContract

HEALTHZ = "/apis/v2beta1/healthz"
PROBE_TIMEOUT_S = 10


class SubmitError(ValueError):
    """The KFP host cannot be used: unreachable, token rejected, or it refused the request."""


@dataclass(frozen=True)
class KfpTarget:
    host: str
    token: str | None = None
    namespace: str | None = None

    @property
    def base(self) -> str:
        return self.host.rstrip("/")


def read_token(token: str | None, token_file: Path | None) -> str | None:
    if token and token_file:
        raise SubmitError("give --token or --token-file, not both")
    if token_file:
        text = token_file.read_text().strip()
        if not text:
            raise SubmitError(f"token file {token_file} is empty")
        return text
    return token


def probe(target: KfpTarget) -> None:
    """Raise SubmitError unless the KFP API answers healthz with this token."""
    if not target.host.startswith(("http://", "https://")):
        raise SubmitError(f"--host must be an http(s):// URL, got {target.host!r}")
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    request = urllib.request.Request(target.base + HEALTHZ, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise SubmitError(f"KFP at {target.host} rejected the token (HTTP {error.code}); "
                              "pass a valid --token or --token-file") from None
        raise SubmitError(f"KFP at {target.host} answered HTTP {error.code} on {HEALTHZ}: is it a KFP v2 API?") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise SubmitError(f"cannot reach KFP at {target.host}: {reason}") from None


def client(target: KfpTarget):
    import warnings

    import kfp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP >= 2.0.0-beta.2": we target v2
        # An explicit namespace also keeps kfp.Client from its own healthz retries (5 x 5 s).
        return kfp.Client(host=target.base, existing_token=target.token, namespace=target.namespace or "default")


def _api_error(target: KfpTarget, action: str, error: Exception) -> SubmitError:
    status = getattr(error, "status", None)
    if status in (401, 403):
        return SubmitError(f"KFP at {target.host} refused to {action} (HTTP {status}): check the token and namespace")
    body = (getattr(error, "body", None) or str(error)).strip().splitlines()
    return SubmitError(f"KFP at {target.host} failed to {action}: {body[0] if body else type(error).__name__}")


def check_no_credentials(tracking_uri: str) -> None:
    """A run's parameters are stored and shown by KFP, and travel into RayJob manifests: no secrets in them."""
    from urllib.parse import urlsplit

    if tracking_uri and (urlsplit(tracking_uri).username or urlsplit(tracking_uri).password):
        raise SubmitError("--tracking-uri carries credentials, which KFP would store and show with the run; give a "
                          "URI without them and the credentials through the chart's mlflow.credentialsSecret")


def submit_to_kfp(
    preset: Preset, target: KfpTarget, experiment: str, run_id: str, artifact_root: str = "", tracking_uri: str = "",
    contract: ClusterContract | None = None,
) -> tuple[str, str]:
    """Probe, compile, create the run as the contract's service account; returns (KFP run id, UI URL).
    The run's MLflow parent run is made by its first step, where the tracking server is reachable."""
    import kfp_server_api

    from .lifecycle import compile_pipeline

    contract = contract or ClusterContract()
    check_no_credentials(tracking_uri)
    probe(target)
    kfp_client = client(target)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(preset, Path(tmp) / "pipeline.yaml", contract)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # kfp prints its own links; we print ours
                result = kfp_client.create_run_from_pipeline_package(
                    str(package),
                    arguments={"run_id": run_id, "artifact_root": artifact_root, "tracking_uri": tracking_uri},
                    run_name=run_id, experiment_name=experiment, namespace=target.namespace,
                    service_account=contract.serviceAccount,
                )
        except kfp_server_api.ApiException as error:
            raise _api_error(target, "create the run", error) from None
    return result.run_id, f"{target.base}/#/runs/details/{result.run_id}"


def run_state(target: KfpTarget, run_id: str):
    """The run as the KFP API reports it (V2beta1Run)."""
    import kfp_server_api

    probe(target)
    try:
        return client(target).get_run(run_id)
    except kfp_server_api.ApiException as error:
        if error.status == 404:
            raise SubmitError(f"no run {run_id} at {target.host}") from None
        raise _api_error(target, f"get run {run_id}", error) from None


def task_rows(run) -> list[dict]:
    """Each task: name, state, pods, and the error if it failed."""
    details = getattr(run, "run_details", None)
    rows = []
    for task in getattr(details, "task_details", None) or []:
        pods = [c.pod_name for c in (task.child_tasks or []) if getattr(c, "pod_name", None)]
        error = task.error.message if getattr(task, "error", None) and task.error.message else ""
        rows.append({"task": task.display_name or task.task_id, "state": task.state or "-", "pods": pods,
                     "error": error})
    return rows


def task_lines(run) -> list[str]:
    """One line per task: name, state, pod, and the error if it failed."""
    return [f"{row['task']}  {row['state']}" + (f"  pod {','.join(row['pods'])}" if row["pods"] else "")
            + (f"  error: {row['error']}" if row["error"] else "") for row in task_rows(run)]
