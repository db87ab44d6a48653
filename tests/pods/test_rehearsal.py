"""The cluster rehearsal (`pytest tests/pods -m rehearsal`): the tiny lifecycle's data and pretraining
steps run as a cluster runs them, as RayJobs whose Ray clusters are real pods of the llamaops image
on the local node, one training rank per pod, each pod with its own filesystem (emptyDir /tmp),
data and checkpoints in the node's S3, against the chart's installed contract and MLflow.

Stand-ins, each because the real part cannot run here: KubeRay's operator (kuberay_stand_in.py,
it follows KubeRay's documented behaviour); the KFP steps (`start`, which makes the MLflow parent
run, and the launchers: `launch_rayjob`, what a step pod runs) run in this process with the
kubeconfig and MLflow's account; no cluster DNS, so
steps are given MLflow's Service address (the platform ConfigMap names it by its DNS name).

The fault: a worker pod deleted after pretraining's first complete checkpoint; KubeRay (the
stand-in) recreates it, Ray Train restarts the worker group from the last checkpoint in S3, and
the final weights equal the uninterrupted run's.
"""
import base64
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch
from pod_helpers import REPORT, wait_until
from rank_processes import RankSampler

from llamaops.pipelines.data_rayjob import data_step_rayjob
from llamaops.pipelines.rayjob_launch import RayJobFailed, launch_rayjob, step_rayjob
from llamaops.pipelines.step import start_run
from llamaops.platform.config import load_preset
from llamaops.platform.config.cluster import CLUSTER_CONFIGMAP, CLUSTER_KEY, MLFLOW_CREDENTIAL_ENV, parse_contract
from llamaops.platform.model.checkpoint import load_model
from llamaops.platform.store import fetched, is_complete, run_uri
from llamaops.platform.train.checkpointing import checkpoints_uri, step_uri

pytestmark = [pytest.mark.pods, pytest.mark.slow, pytest.mark.rehearsal]

ARTIFACTS = "s3://llamaops/rehearsal"
# The tiny lifecycle at its smallest, with two data workers (so data prep gets a RayJob too) and
# checkpoints every two steps (so the fault has a checkpoint to resume from and work to lose).
SETTINGS = [
    "data.max_documents_per_source=60", "data.workers=2",
    "pretrain.total_tokens=8192", "pretrain.checkpoint_every_steps=2", "pretrain.keep_checkpoints=2",
    "pretrain.keep_checkpoints_after_publish=1",  # the last checkpoint stays, for its figures
    'pretrain.batch_ramp=[{"after_tokens": 0, "seq_len": 128, "global_batch_tokens": 2048}]',
]
# A rank's files in a checkpoint: its DCP shards and its RNG state; the rest (metadata, progress) is rank 0's.
RANK_FILE = re.compile(r"(?:__(\d+)_\d+\.distcp|rank_(\d+)\.pt)$")


@dataclass
class Rehearsal:
    namespace: str
    contract_json: str
    tracking_uri: str
    stand_in: object
    docker_env: dict

    core: object

    def launch(self, manifest: dict, output_uri: str) -> float:
        """What the step's launcher pod does; returns the seconds it took. A failure says what the
        job's driver printed (the submitter pod's log, as `ray job logs` would)."""
        t0 = time.monotonic()
        try:
            assert launch_rayjob(manifest, output_uri) == output_uri
        except RayJobFailed as error:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={manifest['metadata']['name']}")
            logs = [self.core.read_namespaced_pod_log(pod.metadata.name, self.namespace)[-6000:] for pod in pods.items]
            raise AssertionError(f"{error}\n--- driver log ---\n" + "\n".join(logs)) from None
        return time.monotonic() - t0


@pytest.fixture(scope="module")
def rehearsal(release, kuberay_stand_in, node_s3, node_cluster, kube) -> Iterator[Rehearsal]:
    from kubernetes import client

    core = client.CoreV1Api(kube)
    contract = core.read_namespaced_config_map(CLUSTER_CONFIGMAP, release.namespace).data[CLUSTER_KEY]
    mlflow = next(s for s in core.list_namespaced_service(release.namespace).items if s.metadata.name.endswith("-mlflow"))
    secret = parse_contract(contract, CLUSTER_CONFIGMAP).mlflowSecret
    account = core.read_namespaced_secret(secret.name, release.namespace).data
    with pytest.MonkeyPatch.context() as env:  # a step pod's view: the kubeconfig, the bucket, MLflow's account
        env.setenv("KUBECONFIG", str(node_cluster.kubeconfig))
        env.setenv("LLAMAOPS_RAYJOB_POLL_S", "1")
        for name, value in node_s3.env().items():
            env.setenv(name, value)
        for name, key in zip(MLFLOW_CREDENTIAL_ENV, (secret.userKey, secret.passwordKey)):
            env.setenv(name, base64.b64decode(account[key]).decode())
        docker = {"PATH": "/usr/bin:/bin", "DOCKER_HOST": f"unix://{node_cluster.settings.docker_sock}"}
        yield Rehearsal(release.namespace, contract, f"http://{mlflow.spec.cluster_ip}:5000", kuberay_stand_in, docker,
                        core)


def _preset():
    return load_preset("tiny", None, SETTINGS)


def _parent_run(rehearsal: Rehearsal, run_id: str) -> str:
    """The pipeline's `start` step: the run's MLflow parent run."""
    return start_run(_preset().model_dump_json(), run_id, rehearsal.tracking_uri, "", run_id).parent_run_id


def _pretrain_job(rehearsal: Rehearsal, run_id: str, data_uri: str) -> dict:
    preset = _preset()
    return step_rayjob("pretrain", preset.model_dump_json(), run_id, ARTIFACTS, rehearsal.tracking_uri,
                       _parent_run(rehearsal, run_id), [data_uri], rehearsal.namespace,
                       parse_contract(rehearsal.contract_json, CLUSTER_CONFIGMAP))


@pytest.fixture(scope="module")
def data_uri(rehearsal: Rehearsal) -> str:
    contract = parse_contract(rehearsal.contract_json, CLUSTER_CONFIGMAP)
    manifest = data_step_rayjob(_preset(), "rehearsal-data", ARTIFACTS, rehearsal.tracking_uri, rehearsal.namespace,
                                contract, _parent_run(rehearsal, "rehearsal-data"))
    REPORT["rehearsal_data_step_s"] = rehearsal.launch(manifest, run_uri("rehearsal-data", "data", ARTIFACTS))
    return run_uri("rehearsal-data", "data", ARTIFACTS)


@pytest.fixture(scope="module")
def uninterrupted(rehearsal: Rehearsal, data_uri: str) -> tuple[str, RankSampler]:
    manifest = _pretrain_job(rehearsal, "rehearsal-a", data_uri)
    output = run_uri("rehearsal-a", "pretrain", ARTIFACTS)
    with RankSampler(rehearsal.docker_env, rehearsal.namespace) as ranks:
        REPORT["rehearsal_pretrain_step_s"] = rehearsal.launch(manifest, output)
    return output, ranks


def _bytes_by_rank(uri: str) -> dict[str, int]:
    """The bytes of the published artifact at `uri` in S3, by the rank that wrote them."""
    from llamaops.platform.store.s3 import published_files

    sizes: dict[str, int] = {}
    for relative, size in published_files(uri).items():
        match = RANK_FILE.search(relative)
        rank = f"rank {int(next(filter(None, match.groups()))) if match else 0}"
        sizes[rank] = sizes.get(rank, 0) + size
    return sizes


def _weights(uri: str) -> dict[str, torch.Tensor]:
    with fetched(uri) as directory:
        return load_model(directory).state_dict()


def test_data_and_pretraining_run_as_rayjobs_with_one_rank_per_pod(uninterrupted, data_uri: str):
    output, ranks = uninterrupted
    assert is_complete(data_uri) and is_complete(output)
    assert len(ranks.pods) == 2 and ranks.most_in_one_pod == 1, (ranks.pods, ranks.most_in_one_pod)
    # What each rank wrote: its own shards of every checkpoint, from its own pod. Each read the
    # whole data set (fetched per pod) and, when resuming, its own shards back.
    written = _bytes_by_rank(step_uri(checkpoints_uri(output), 4))
    assert set(written) == {"rank 0", "rank 1"} and written["rank 1"] > 0, written
    REPORT["rehearsal_checkpoint_bytes_by_rank"] = str(written)
    REPORT["rehearsal_data_bytes_read_per_rank"] = sum(_bytes_by_rank(data_uri).values())


def test_a_deleted_worker_pod_costs_a_restart_from_the_last_checkpoint_and_nothing_else(
        rehearsal: Rehearsal, uninterrupted, data_uri: str, kube):
    from kubernetes import client

    manifest = _pretrain_job(rehearsal, "rehearsal-b", data_uri)
    output = run_uri("rehearsal-b", "pretrain", ARTIFACTS)
    first = step_uri(checkpoints_uri(output), 2)
    failure: list[BaseException] = []

    def launch() -> None:
        try:
            REPORT["rehearsal_pretrain_with_fault_s"] = rehearsal.launch(manifest, output)
        except BaseException as error:  # reaches the test's thread below
            failure.append(error)

    launcher = threading.Thread(target=launch, daemon=True)
    launcher.start()
    wait_until(f"{first} complete", lambda: (is_complete(first), None), timeout=900, every=0.5)
    core = client.CoreV1Api(kube)
    workers = core.list_namespaced_pod(rehearsal.namespace, label_selector="ray.io/node-type=worker").items
    victim = next(pod.metadata.name for pod in workers if pod.metadata.name.startswith(manifest["metadata"]["name"]))
    core.delete_namespaced_pod(victim, rehearsal.namespace)
    killed = time.monotonic()
    last = step_uri(checkpoints_uri(output), 4)
    assert not is_complete(last), "the pod was deleted after the last checkpoint: nothing was left to lose"
    REPORT["rehearsal_fault"] = f"deleted {victim} once checkpoint step 2 of 4 was complete"
    launcher.join(timeout=1200)
    assert not launcher.is_alive(), "the pretraining step did not end within 20 min of the fault"
    assert not failure, failure
    REPORT["rehearsal_fault_to_end_s"] = time.monotonic() - killed
    created = rehearsal.stand_in.pods_created[f"{rehearsal.namespace}/{manifest['metadata']['name']}"]
    assert len(created) == 4, created  # head, two workers and the deleted one's replacement
    expected, got = _weights(uninterrupted[0]), _weights(output)
    assert expected.keys() == got.keys()
    different = [name for name in expected if not torch.equal(expected[name], got[name])]
    assert not different, f"weights differ from the uninterrupted run's: {different[:5]}"
