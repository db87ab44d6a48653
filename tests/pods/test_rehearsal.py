"""The cluster rehearsal (`pytest tests/pods -m rehearsal`): the tiny lifecycle as a cluster runs it,
from the create-run request `llamaops pipeline submit tiny --host` sends, on the local node with the
chart installed. Every step is a pod of the llamaops image with only what the compiled spec gives
it; the data and pretraining steps are RayJob launchers whose Ray clusters are real pods, one
training rank per pod, each pod with its own filesystem (emptyDir /tmp); data, checkpoints and
models in the node's S3; runs and the registry in the chart's MLflow; the deploy step's
LlamaDeployment served by the chart's operator answers a chat completion through its Service.

Stand-ins, each because the real part cannot run here: the KFP API server (fake_kfp_api.py records
the request), KFP's driver and launcher (kfp_stand_in.py runs the request's tasks as pods), KubeRay's
operator (kuberay_stand_in.py) and cluster DNS (tests/cluster/localup/cluster_dns.py). All follow
the real parts' documented behaviour and know nothing of llamaops.

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
from fake_kfp_api import TOKEN, created_run, fake_kfp_api
from kfp_stand_in import KfpStandIn, TaskFailed, TaskRun
from pod_helpers import REPORT, attempt, chat_completion, wait_until
from rank_processes import RankSampler
from smallest_tiny import SMALLEST_TINY, set_arguments
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.pipelines.rayjob import rayjob_name
from llamaops.pipelines.rayjob_launch import RayJobFailed, launch_rayjob, step_rayjob
from llamaops.pipelines.step import start_run
from llamaops.platform.config import load_preset
from llamaops.platform.config.cluster import CLUSTER_CONFIGMAP, CLUSTER_KEY, MLFLOW_CREDENTIAL_ENV, parse_contract
from llamaops.platform.model.checkpoint import load_model
from llamaops.platform.store import fetched, is_complete, run_uri
from llamaops.platform.train.checkpointing import checkpoints_uri, step_uri

pytestmark = [pytest.mark.pods, pytest.mark.slow, pytest.mark.rehearsal]

ARTIFACTS = "s3://llamaops/rehearsal"  # the fault run's; the lifecycle's go where the chart says
# The tiny lifecycle at its smallest, with two data workers (so data prep gets a RayJob too),
# pretraining on two ranks with checkpoints every two steps (so the fault has a checkpoint to resume
# from and work to lose), the other training steps on one rank each (in their step's pod), and the
# deploy step on: a serving pod small enough for the node.
SETTINGS = SMALLEST_TINY | {
    "data.workers": "2",
    "pretrain.total_tokens": "8192", "pretrain.checkpoint_every_steps": "2", "pretrain.keep_checkpoints": "2",
    "pretrain.keep_checkpoints_after_publish": "1",  # the last checkpoint stays, for its figures
    "pretrain.batch_ramp": '[{"after_tokens": 0, "seq_len": 128, "global_batch_tokens": 2048}]',
    "long_context.layout.dp": "1", "post_training.sft.layout.dp": "1", "post_training.dpo.layout.dp": "1",
    "deploy.enabled": "true", "deploy.pod": '{"cpus": 0.25, "memoryGiB": 1.5}', "deploy.ready_timeout_s": "600",
}
STEPS = ("start", "data", "pretrain", "long_context", "anneal", "sft", "dpo", "safety", "eval", "register", "deploy")
# A rank's files in a checkpoint: its DCP shards and its RNG state; the rest (metadata, progress) is rank 0's.
RANK_FILE = re.compile(r"(?:__(\d+)_\d+\.distcp|rank_(\d+)\.pt)$")


@dataclass
class Rehearsal:
    namespace: str
    contract_json: str
    tracking_uri: str  # MLflow's Service address: this process is on the host, outside cluster DNS
    stand_in: object
    docker_env: dict
    kube: object
    core: object

    def launch(self, manifest: dict, output_uri: str) -> float:
        """What a launcher step's pod does, from this process; returns the seconds it took. A failure
        says what the job's driver printed (the submitter pod's log, as `ray job logs` would)."""
        t0 = time.monotonic()
        try:
            assert launch_rayjob(manifest, output_uri) == output_uri
        except RayJobFailed as error:
            raise AssertionError(f"{error}\n--- driver log ---\n{self.job_logs(manifest['metadata']['name'])}") from None
        return time.monotonic() - t0

    def job_logs(self, job: str | None = None) -> str:
        """The logs of the RayJob submitter pods still there (of `job`, or all)."""
        selector = f"job-name={job}" if job else "job-name"
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return "\n".join(f"--- {pod.metadata.name} ---\n"
                         + self.core.read_namespaced_pod_log(pod.metadata.name, self.namespace)[-4000:]
                         for pod in pods)


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
                        kube, core)


@dataclass
class Lifecycle:
    run_id: str
    steps: dict[str, TaskRun]  # by step name
    ranks: RankSampler  # where Ray Train ranks ran, in every pod of the run
    seconds: float

    def output(self, step: str) -> str:
        return self.steps[step].outputs["Output"]


def _submitted_request(rehearsal: Rehearsal, home) -> dict:
    """The create-run request `llamaops pipeline submit tiny --host` sends, with the contract it reads
    from the installed chart's ConfigMap."""
    with fake_kfp_api() as fake, pytest.MonkeyPatch.context() as env:
        env.setenv("HOME", str(home))
        env.setenv("LLAMAOPS_HOME", str(home / ".llamaops"))
        for name in ("MLFLOW_TRACKING_URI", "KFP_TOKEN"):
            env.delenv(name, raising=False)
        (home / "token").write_text(TOKEN)
        argv = ["pipeline", "submit", "tiny", "--host", fake.url, "--token-file", str(home / "token"),
                "--namespace", rehearsal.namespace, *set_arguments(SETTINGS)]
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 0, result.output
        return created_run(fake)


@pytest.fixture(scope="module")
def lifecycle(rehearsal: Rehearsal, local_pool, tmp_path_factory) -> Iterator[Lifecycle]:
    from kubernetes import client

    from llamaops.operators.spec import GROUP, PLURAL, VERSION

    request = _submitted_request(rehearsal, tmp_path_factory.mktemp("submitter"))
    run_id = request["runtime_config"]["parameters"]["run_id"]
    kfp = KfpStandIn(rehearsal.kube, rehearsal.namespace, request)
    t0 = time.monotonic()
    try:
        with RankSampler(rehearsal.docker_env, rehearsal.namespace) as ranks:
            kfp.run()
    except TaskFailed as failure:
        raise AssertionError(f"{failure}\n--- RayJob drivers ---\n{rehearsal.job_logs()}") from None
    steps = kfp.by_display_name()
    for name, step in steps.items():
        REPORT[f"rehearsal_step_{name}_s"] = step.seconds
    yield Lifecycle(run_id, steps, ranks, time.monotonic() - t0)
    client.CustomObjectsApi(rehearsal.kube).delete_collection_namespaced_custom_object(
        GROUP, VERSION, rehearsal.namespace, PLURAL)


def _preset():
    return load_preset("tiny", None, [f"{key}={value}" for key, value in SETTINGS.items()])


def _parent_run(rehearsal: Rehearsal, run_id: str) -> str:
    """The pipeline's `start` step: the run's MLflow parent run."""
    return start_run(_preset().model_dump_json(), run_id, rehearsal.tracking_uri, "", run_id).parent_run_id


def _pretrain_job(rehearsal: Rehearsal, run_id: str, data_uri: str) -> dict:
    preset = _preset()
    return step_rayjob("pretrain", preset.model_dump_json(), run_id, ARTIFACTS, rehearsal.tracking_uri,
                       _parent_run(rehearsal, run_id), [data_uri], rehearsal.namespace,
                       parse_contract(rehearsal.contract_json, CLUSTER_CONFIGMAP))


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


def test_every_step_runs_as_a_pod_from_the_submitted_request_and_the_model_is_served(
        rehearsal: Rehearsal, lifecycle: Lifecycle):
    from mlflow.tracking import MlflowClient

    from llamaops.platform.deploy import deployment_name, model_name_for

    assert set(lifecycle.steps) == set(STEPS), sorted(lifecycle.steps)
    assert all(len(step.pods) == 1 for step in lifecycle.steps.values()), {s.name: s.pods for s in lifecycle.steps.values()}
    # Only the data and pretraining steps span pods: they ran as RayJobs (the stand-in's), the rest in their pods.
    jobs = {key.split("/", 1)[1]: pods for key, pods in rehearsal.stand_in.pods_created.items()
            if key.startswith(f"{rehearsal.namespace}/{rayjob_name(lifecycle.run_id, '')}")}
    assert set(jobs) == {rayjob_name(lifecycle.run_id, "data"), rayjob_name(lifecycle.run_id, "pretrain")}, jobs
    register = lifecycle.steps["register"].outputs
    assert register["version"] == "1" and register["promoted"] is True, register
    model_name = model_name_for(_preset())
    client = MlflowClient(rehearsal.tracking_uri, registry_uri=rehearsal.tracking_uri)
    production = client.get_model_version_by_alias(model_name, "production")
    assert str(production.version) == "1" and production.source == lifecycle.output("safety")
    name = deployment_name(model_name)
    assert lifecycle.output("deploy") == f"{rehearsal.namespace}/{name}"
    service = rehearsal.core.read_namespaced_service(name, rehearsal.namespace)
    url = f"http://{service.spec.cluster_ip}:80"  # ClusterIP: kube-proxy's iptables rules carry it
    served = _preset().deploy.served_model_name
    answer = wait_until("a chat completion through the Service", lambda: attempt(lambda: chat_completion(url, served)),
                        timeout=60)
    assert answer["object"] == "chat.completion" and answer["usage"]["completion_tokens"] >= 1, answer
    REPORT["rehearsal_lifecycle_s"] = lifecycle.seconds
    REPORT["rehearsal_pods_created"] = (
        f"{sum(len(step.pods) for step in lifecycle.steps.values())} step pods, "
        + ", ".join(f"{job}: {len(pods)}" for job, pods in sorted(jobs.items())))


def test_data_and_pretraining_run_as_rayjobs_with_one_rank_per_pod(rehearsal: Rehearsal, lifecycle: Lifecycle):
    data_uri, output = lifecycle.output("data"), lifecycle.output("pretrain")
    assert is_complete(data_uri) and is_complete(output)
    pretrain_pods = {pod for pod in lifecycle.ranks.pods if pod.startswith(rayjob_name(lifecycle.run_id, "pretrain"))}
    assert len(pretrain_pods) == 2 and lifecycle.ranks.most_in_one_pod == 1, (lifecycle.ranks.pods,
                                                                               lifecycle.ranks.most_in_one_pod)
    # What each rank wrote: its own shards of every checkpoint, from its own pod. Each read the
    # whole data set (fetched per pod) and, when resuming, its own shards back.
    written = _bytes_by_rank(step_uri(checkpoints_uri(output), 4))
    assert set(written) == {"rank 0", "rank 1"} and written["rank 1"] > 0, written
    REPORT["rehearsal_checkpoint_bytes_by_rank"] = str(written)
    REPORT["rehearsal_data_bytes_read_per_rank"] = sum(_bytes_by_rank(data_uri).values())


def test_a_deleted_worker_pod_costs_a_restart_from_the_last_checkpoint_and_nothing_else(
        rehearsal: Rehearsal, lifecycle: Lifecycle, kube):
    from kubernetes import client

    manifest = _pretrain_job(rehearsal, "rehearsal-b", lifecycle.output("data"))
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
    expected, got = _weights(lifecycle.output("pretrain")), _weights(output)
    assert expected.keys() == got.keys()
    different = [name for name in expected if not torch.equal(expected[name], got[name])]
    assert not different, f"weights differ from the uninterrupted run's: {different[:5]}"
