"""The data step's launcher against the REAL kube-apiserver: it creates the data RayJob, waits on
its status and hands on the shards' URI. KubeRay's controller cannot run here (no kubelet runs Ray
pods), so a FAKE KubeRay thread writes the status sequence the controller would write, through the
real API server's status subresource; everything else is real."""
import shlex
import threading
import time
from collections.abc import Callable

import pytest

from llamaops.pipelines.data_rayjob import run_data_on_rayjob
from llamaops.pipelines.rayjob_launch import RayJobFailed
from llamaops.platform.config import load_preset
from llamaops.platform.config.cluster import ClusterContract
from llamaops.platform.store import is_complete, run_uri, staged_output

pytestmark = pytest.mark.cluster
RUN_ID = "run-7"
JOB_NAME = "run-7-data"


class FakeKubeRay:
    """Waits for the RayJob to exist (one other than `replaces`), then writes `statuses` one by one;
    `before_last` runs before the last one (the job's own work, e.g. publishing the shards)."""

    def __init__(self, kube, namespace: str, statuses: list[dict], before_last: Callable[[], None] = lambda: None,
                 name: str = JOB_NAME, replaces: dict | None = None):
        from kubernetes import client

        self.api, self.namespace, self.name = client.CustomObjectsApi(kube), namespace, name
        self.statuses, self.before_last = statuses, before_last
        self.replaced_uid = replaces["metadata"]["uid"] if replaces else None
        self.seen: dict | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._play, daemon=True)

    def _play(self) -> None:
        from kubernetes.client.exceptions import ApiException

        while self.seen is None and not self.stop.wait(0.05):
            try:
                found = self.api.get_namespaced_custom_object("ray.io", "v1", self.namespace, "rayjobs", self.name)
            except ApiException as error:
                if error.status != 404:
                    raise
                continue
            if found["metadata"]["uid"] != self.replaced_uid:
                self.seen = found
        for index, status in enumerate(self.statuses):
            if self.stop.wait(0.2):
                return
            if index == len(self.statuses) - 1:
                self.before_last()
            self.api.patch_namespaced_custom_object_status(
                "ray.io", "v1", self.namespace, "rayjobs", self.name, {"status": status})

    def __enter__(self) -> "FakeKubeRay":
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture
def launch(kube, k8s_namespace, rayjob_crd, tmp_path, monkeypatch):
    """Run the data launcher for the 8b preset (3 data workers) into a file:// artifact root."""
    monkeypatch.setenv("LLAMAOPS_IMAGE", "registry.test/llamaops:1")
    monkeypatch.setenv("LLAMAOPS_RAYJOB_POLL_S", "0.1")
    monkeypatch.setenv("LLAMAOPS_RAYJOB_START_TIMEOUT_S", "30")  # a broken launcher fails, never hangs
    monkeypatch.setenv("LLAMAOPS_RAYJOB_RUN_TIMEOUT_S", "30")
    preset = load_preset("8b", overrides=["data.workers=3", "data.min_chars=300"])
    root = tmp_path.as_uri()

    def run() -> str:
        return run_data_on_rayjob(preset.model_dump_json(), RUN_ID, root, "http://mlflow.test:5000", "parent-1",
                                  ClusterContract().model_dump_json(), namespace=k8s_namespace)  # fmt: skip

    run.output_uri = run_uri(RUN_ID, "data", root)
    run.preset = preset
    return run


def publish_output(uri: str) -> Callable[[], None]:
    def publish() -> None:
        with staged_output(uri) as out:
            (out / "shards.json").write_text("{}")
    return publish


SUCCEEDED = [{"jobDeploymentStatus": "Initializing"}, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
             {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}]  # fmt: skip


def test_creates_the_data_rayjob_and_returns_the_shards_uri_when_it_succeeds(kube, k8s_namespace, launch):
    from kubernetes import client

    with FakeKubeRay(kube, k8s_namespace, SUCCEEDED, publish_output(launch.output_uri)) as kuberay:
        assert launch() == launch.output_uri
    assert is_complete(launch.output_uri)
    job = kuberay.seen
    assert job["metadata"]["labels"]["llamaops.io/step"] == "data"
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["llamaops", "data", "prep"]
    assert argv[3 : 3 + len(launch.preset.data.sources)] == launch.preset.data.sources
    assert argv[argv.index("--output") + 1] == launch.output_uri
    assert argv[argv.index("--workers") + 1] == "3" and argv[argv.index("--preset") + 1] == "8b"
    assert "min_chars=300" in argv
    assert argv[argv.index("--tracking-uri") + 1 :][:3] == ["http://mlflow.test:5000", "--parent-run-id", "parent-1"]
    cluster = job["spec"]["rayClusterSpec"]
    (workers,) = cluster["workerGroupSpecs"]
    assert workers["replicas"] == 1 and cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for spec in (cluster["headGroupSpec"]["template"]["spec"], workers["template"]["spec"]):
        (container,) = spec["containers"]
        assert container["image"] == "registry.test/llamaops:1"
        env = {item["name"]: item["valueFrom"] for item in container["env"]}  # references only, no values
        assert env["LLAMAOPS_S3_ENDPOINT"] == {"configMapKeyRef": {"name": "llamaops-platform",
                                                                   "key": "LLAMAOPS_S3_ENDPOINT"}}
        assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "llamaops-s3", "key": "secret-key"}}

    # A resumed run finds the shards complete and creates no RayJob.
    custom = client.CustomObjectsApi(kube)
    custom.delete_namespaced_custom_object("ray.io", "v1", k8s_namespace, "rayjobs", JOB_NAME)
    assert launch() == launch.output_uri
    assert custom.list_namespaced_custom_object("ray.io", "v1", k8s_namespace, "rayjobs")["items"] == []


def test_a_retried_launcher_waits_on_the_rayjob_its_first_attempt_created(kube, k8s_namespace, launch):
    with FakeKubeRay(kube, k8s_namespace, SUCCEEDED[:1]) as first:
        with pytest.raises(RayJobFailed):  # the first attempt's pod is lost while the job starts
            launch_with_start_timeout(launch, 1)
    with FakeKubeRay(kube, k8s_namespace, SUCCEEDED[1:], publish_output(launch.output_uri)) as second:
        assert launch() == launch.output_uri
    assert second.seen["metadata"]["uid"] == first.seen["metadata"]["uid"]


FAILED_FOR_GOOD = [{"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
                   {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "failed": 1, "message": "node lost"}]


def test_a_retried_launcher_replaces_a_rayjob_that_failed_for_good(kube, k8s_namespace, launch):
    with FakeKubeRay(kube, k8s_namespace, FAILED_FOR_GOOD) as first, pytest.raises(RayJobFailed, match="node lost"):
        launch()
    with FakeKubeRay(kube, k8s_namespace, SUCCEEDED, publish_output(launch.output_uri), replaces=first.seen) as second:
        assert launch() == launch.output_uri
    assert second.seen["metadata"]["uid"] != first.seen["metadata"]["uid"]


def launch_with_start_timeout(launch, seconds: float) -> str:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLAMAOPS_RAYJOB_START_TIMEOUT_S", str(seconds))
        return launch()


def test_a_failed_rayjob_fails_the_step_in_one_line(kube, k8s_namespace, launch):
    failed = [{"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
              {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "message": "Job entrypoint command failed with exit code 2"}]  # fmt: skip
    with FakeKubeRay(kube, k8s_namespace, failed), pytest.raises(RayJobFailed) as error:
        launch()
    assert str(error.value) == (f"RayJob {k8s_namespace}/{JOB_NAME} ended FAILED: Job entrypoint command failed "
                                "with exit code 2")  # fmt: skip
    assert not is_complete(launch.output_uri)


def test_a_rayjob_that_never_starts_fails_the_step_after_the_start_timeout(kube, k8s_namespace, launch):
    started = time.monotonic()
    with FakeKubeRay(kube, k8s_namespace, SUCCEEDED[:1]), pytest.raises(RayJobFailed) as error:
        launch_with_start_timeout(launch, 1)
    assert time.monotonic() - started < 30
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"RayJob {k8s_namespace}/{JOB_NAME} has not started after 1 s (deployment status 'Initializing')")


def test_a_rayjob_that_succeeds_without_complete_shards_fails_the_step(kube, k8s_namespace, launch):
    with FakeKubeRay(kube, k8s_namespace, SUCCEEDED), pytest.raises(RayJobFailed, match="succeeded but .* is not complete"):
        launch()


def test_training_steps_share_the_launch_path(kube, k8s_namespace, launch, tmp_path):
    from llamaops.pipelines.rayjob_launch import run_step_on_rayjob

    root = tmp_path.as_uri()
    output = run_uri(RUN_ID, "pretrain", root)
    with FakeKubeRay(kube, k8s_namespace, SUCCEEDED, publish_output(output), name="run-7-pretrain") as kuberay:
        assert run_step_on_rayjob("pretrain", launch.preset.model_dump_json(), RUN_ID, root, "", "parent", [launch.output_uri],
                                  ClusterContract().model_dump_json(), namespace=k8s_namespace) == output  # fmt: skip
    assert kuberay.seen["spec"]["entrypoint"] == "python -m llamaops.pipelines.stage_main"
