"""The pipeline's deploy step against the real kube-apiserver (with the LlamaDeployment CRD).

No kubelet runs here, so no operator could ever report serving pods Ready: a named stand-in thread,
`OperatorStandIn`, plays the operator's status write, computing the conditions with the operator's
own functions (operators/status.py) for each new generation. Everything else is real: the step
reads its namespace from the kubeconfig, creates / patches the custom resource through the API
server (which validates it against the CRD's schema) and polls its status; MLflow is sqlite.
"""
import threading
import time

import pytest
import yaml
from kubernetes import client

from llamaops.operators.spec import GROUP, PLURAL, VERSION, crd
from llamaops.operators.status import degraded_conditions, merge_conditions, rollout_conditions
from llamaops.pipelines.deploy_step import POLL_ENV, deploy_step
from llamaops.pipelines.events import EVENTS_ENV, EventFollower
from llamaops.platform.config import load_preset
from llamaops.platform.config.cluster import ClusterContract
from llamaops.platform.deploy import DeployError
from llamaops.platform.tracking import PipelineTracker, tracking_client

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
NAME = "llamaops-8b"  # the LlamaDeployment named after the registered model
CONTRACT_JSON = ClusterContract().model_dump_json()  # the chart's defaults: pool h100, 8 GPUs per node


@pytest.fixture(scope="module")
def llamadeployment_crd(kube):
    ext = client.ApiextensionsV1Api(kube)
    try:
        ext.create_custom_resource_definition(crd())
    except client.ApiException as error:
        if error.status != 409:  # already there (the operator and chart tests install it too)
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}").status
        if any(c.type == "Established" and c.status == "True" for c in status.conditions or []):
            return
        time.sleep(0.2)
    raise AssertionError("the LlamaDeployment CRD was not established in 30 s")


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


@pytest.fixture
def step_env(k8s_cluster, k8s_namespace, llamadeployment_crd, tmp_path, monkeypatch):
    """The step's world: a kubeconfig whose current context is the test's namespace (the step's
    namespace outside a pod), fast polling, and the local run's events file."""
    config = yaml.safe_load(k8s_cluster.kubeconfig.read_text())
    current = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    current["context"]["namespace"] = k8s_namespace
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv(POLL_ENV, "0.2")
    monkeypatch.setenv(EVENTS_ENV, str(tmp_path / "events.jsonl"))
    return tmp_path / "events.jsonl"


class OperatorStandIn(threading.Thread):
    """Stands in for the llamaops operator, which cannot make serving pods Ready without a kubelet:
    for each new generation of LlamaDeployment `name` it writes the status the operator would
    (`conditions_for(spec)`, from operators/status.py), first 'rolling out', then the verdict."""

    def __init__(self, kube, namespace: str, name: str, conditions_for):
        super().__init__(name="operator-stand-in", daemon=True)
        self.api = client.CustomObjectsApi(kube)
        self.namespace, self.name, self.conditions_for = namespace, name, conditions_for
        self.halt, self.errors, self.verdicts = threading.Event(), [], []

    def run(self):
        rolling: set[int] = set()
        while not self.halt.wait(0.1):
            try:
                obj = self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
            except client.ApiException as error:
                if error.status != 404:
                    self.errors.append(error)
                continue
            generation, status = obj["metadata"]["generation"], obj.get("status") or {}
            if status.get("observedGeneration") == generation and generation not in rolling:
                continue
            if generation not in rolling:  # what the operator writes while the new pods start
                rolling.add(generation)
                conditions = rollout_conditions({}, obj["spec"]["replicas"])
            else:
                rolling.discard(generation)
                conditions = self.conditions_for(obj["spec"])
                self.verdicts.append((generation, obj["spec"]["model"]))
            new = {"observedGeneration": generation,
                   "conditions": merge_conditions(status.get("conditions") or [], conditions)}
            try:
                self.api.patch_namespaced_custom_object_status(GROUP, VERSION, self.namespace, PLURAL, self.name,
                                                               {"status": new})
            except client.ApiException as error:
                self.errors.append(error)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *_):
        self.halt.set()
        self.join(timeout=10)
        assert not self.errors, self.errors


def ready(spec):
    replicas = spec["replicas"]
    return rollout_conditions({"readyReplicas": replicas, "updatedReplicas": replicas}, replicas)


def _deploy(tracking_uri, version, promoted=True, sets=("deploy.ready_timeout_s=60",)):
    preset = load_preset("8b", None, list(sets))
    parent_run_id = PipelineTracker(tracking_uri, "llamaops", f"run-{version}", preset.name).run_id
    result = deploy_step(preset.model_dump_json(), f"run-{version}", tracking_uri, parent_run_id, NAME, version,
                         promoted, CONTRACT_JSON, True)
    return result, parent_run_id


def _llamadeployments(kube, namespace):
    return client.CustomObjectsApi(kube).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]


def test_promoted_model_is_deployed_then_rolled_forward_with_an_operator_stand_in_writing_ready(
        kube, k8s_namespace, step_env, tracking_uri):
    follower = EventFollower(step_env)
    with OperatorStandIn(kube, k8s_namespace, NAME, ready) as operator:
        first, _ = _deploy(tracking_uri, "1")
        [obj] = _llamadeployments(kube, k8s_namespace)
        assert first == f"{k8s_namespace}/{NAME}"
        assert obj["spec"]["model"] == "models:/llamaops-8b/1" and obj["spec"]["nodePool"] == "h100"
        assert obj["metadata"]["labels"]["llamaops.io/model-version"] == "1"
        second, _ = _deploy(tracking_uri, "2")
    [obj] = _llamadeployments(kube, k8s_namespace)  # the same object, rolled forward
    assert second == first and obj["metadata"]["generation"] == 2
    assert obj["spec"]["model"] == "models:/llamaops-8b/2"
    assert obj["metadata"]["labels"]["llamaops.io/model-version"] == "2"
    assert obj["status"]["observedGeneration"] == 2
    assert {c["type"]: c["status"] for c in obj["status"]["conditions"]}["Ready"] == "True"
    assert operator.verdicts == [(1, "models:/llamaops-8b/1"), (2, "models:/llamaops-8b/2")]
    finished = [e for e in follower.new_events() if e.status == "finished"]
    assert [e.detail["deployment"] for e in finished] == [first, second]


def test_operator_stand_in_writing_degraded_fails_the_step_with_its_reason_in_one_line(
        kube, k8s_namespace, step_env, tracking_uri):
    def model_not_found(spec):  # what operators/status.check_spec reports for a missing model
        return degraded_conditions("ModelNotFound",
                                   f"model {spec['model']} does not exist or is unfinished (no _COMPLETE marker)")

    follower = EventFollower(step_env)
    with OperatorStandIn(kube, k8s_namespace, NAME, model_not_found), pytest.raises(DeployError) as error:
        _deploy(tracking_uri, "1")
    message = str(error.value)
    assert "\n" not in message
    assert (f"LlamaDeployment {k8s_namespace}/{NAME} is Degraded: ModelNotFound: model models:/llamaops-8b/1 "
            "does not exist") in message
    assert message.endswith(f"kubectl -n {k8s_namespace} describe llamadeployment {NAME}")
    failed = [e for e in follower.new_events() if e.status == "failed"]
    assert failed[0].detail["error"] == f"DeployError: {message}"


def test_unpromoted_model_creates_no_llamadeployment(kube, k8s_namespace, step_env, tracking_uri):
    follower = EventFollower(step_env)
    result, parent_run_id = _deploy(tracking_uri, "1", promoted=False)
    assert result == "" and _llamadeployments(kube, k8s_namespace) == []
    [started, finished] = follower.new_events()
    assert finished.status == "finished" and "was not promoted" in finished.detail["reason"]
    tracking = tracking_client(tracking_uri)
    [child] = tracking.search_runs([tracking.get_run(parent_run_id).info.experiment_id],
                                   filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    assert child.info.run_name == "deploy" and child.info.status == "FINISHED"


def test_a_pool_the_cluster_does_not_declare_fails_before_anything_is_created(kube, k8s_namespace, step_env,
                                                                              tracking_uri):
    with pytest.raises(DeployError, match="deploy.node_pool names node pool 'a100'"):
        _deploy(tracking_uri, "1", sets=["deploy.node_pool=a100"])
    assert _llamadeployments(kube, k8s_namespace) == []
