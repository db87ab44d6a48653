"""The deploy step's LlamaDeployment: manifest, checks against the cluster contract, apply and wait
(against a fake CustomObjectsApi whose statuses come from the operator's own status functions)."""
import copy

import pytest
from kubernetes.client.exceptions import ApiException

from llamaops.operators import manifests as operator_manifests
from llamaops.operators import spec as operator_spec
from llamaops.operators.status import check_spec, degraded_conditions, rollout_conditions
from llamaops.platform.config import load_preset
from llamaops.platform.config.cluster import ClusterContract, NodePool, SecretRef
from llamaops.platform.deploy import (
    DeployError,
    apply_deployment,
    deployment_manifest,
    deployment_name,
    rollout,
    wait_until_ready,
)

CONTRACT = ClusterContract()  # the chart's defaults: pool h100 with 8 GPUs per node, Secret llamaops-s3


def _manifest(preset="8b", sets=(), contract=CONTRACT, name="llamaops-8b", version="3"):
    return deployment_manifest(contract, load_preset(preset, None, list(sets)), name, version, "ns")


def test_manifest_is_pinned_to_the_version_and_labelled():
    m = _manifest(version="7")
    assert (m["apiVersion"], m["kind"]) == ("llamaops.io/v1alpha1", "LlamaDeployment")
    assert m["metadata"]["name"] == "llamaops-8b" and m["metadata"]["namespace"] == "ns"
    assert m["spec"]["model"] == "models:/llamaops-8b/7" and "@" not in m["spec"]["model"]
    assert m["metadata"]["labels"] == {"app.kubernetes.io/part-of": "llamaops", "llamaops.io/model-version": "7"}
    assert m["spec"] == {"model": "models:/llamaops-8b/7", "nodePool": "h100", "tensorParallelSize": 1,
                         "engine": "llamaops", "replicas": 1, "servedModelName": "llama", "storageSecret": "llamaops-s3",
                         "storageSecretKeys": {"accessKey": "access-key", "secretKey": "secret-key"}}


@pytest.mark.parametrize("preset", ["8b", "70b", "405b", "full-405b"])
def test_manifest_validates_against_the_operators_spec_and_checks(preset):
    m = _manifest(preset, name=f"llamaops-{preset}")
    spec = operator_spec.DeploymentSpec.model_validate(m["spec"])
    checked, _ = check_spec(m["spec"], CONTRACT.nodePools, lambda uri: None)  # no Degraded reason
    assert checked == spec and spec.tensorParallelSize == load_preset(preset).deploy.tensor_parallel
    assert spec.quantization == load_preset(preset).deploy.quantization  # 405B: fp8, to fit one node


def test_the_presets_serving_pod_size_reaches_the_serving_pods():
    m = _manifest(sets=['deploy.pod={"cpus": 0.5, "memoryGiB": 1.5}'])
    assert m["spec"]["resources"] == {"cpu": "500m", "memory": "1536Mi"}
    spec = operator_spec.DeploymentSpec.model_validate(m["spec"])
    pool = CONTRACT.nodePools["h100"]
    assert operator_manifests._resources(spec, pool)["requests"] == {"cpu": "500m", "memory": "1536Mi"}


@pytest.mark.parametrize("keys", [("access-key", "secret-key"), ("id", "key")])
def test_names_and_keys_match_the_operator(keys):
    assert (rollout.GROUP, rollout.VERSION, rollout.PLURAL, rollout.KIND) == (
        operator_spec.GROUP, operator_spec.VERSION, operator_spec.PLURAL, operator_spec.KIND)
    contract = CONTRACT.model_copy(update={"s3Secret": SecretRef(name="store", userKey=keys[0], passwordKey=keys[1])})
    spec = operator_spec.DeploymentSpec.model_validate(_manifest(contract=contract)["spec"])
    env = operator_manifests._env(spec)  # what the operator gives the serving pods
    refs = tuple(e["valueFrom"]["secretKeyRef"] for e in env if e["name"] in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
    assert refs == ({"name": "store", "key": keys[0]}, {"name": "store", "key": keys[1]})


def test_names_are_dns_labels_bounded_and_distinct():
    assert deployment_name("llamaops-8b") == "llamaops-8b"
    names = [deployment_name(n) for n in ("My_Model", "my-model", "my.model", "8b", "x" * 200)]
    assert len(set(names)) == len(names)
    for name in names:
        assert len(name) <= 63 and name[0].isalpha() and name[-1].isalnum()
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


def _one_line_error(**kwargs) -> str:
    with pytest.raises(DeployError) as error:
        _manifest(**kwargs)
    message = str(error.value)
    assert "\n" not in message and isinstance(error.value, ValueError)
    return message


def test_undeclared_pool_is_one_line():
    message = _one_line_error(sets=["deploy.node_pool=a100"])
    assert "deploy.node_pool names node pool 'a100'" in message and "declared: h100" in message


def test_training_pool_is_the_default_and_must_be_declared():
    message = _one_line_error(preset="tiny", name="llamaops-tiny")  # tiny's pool `local` is no cluster pool
    assert "resources.node_pool" in message and "'local'" in message


def test_a_pool_without_gpus_serves_the_llamaops_engine_and_refuses_vllm():
    contract = CONTRACT.model_copy(update={"nodePools": {**CONTRACT.nodePools, "cpu": NodePool()}})
    message = _one_line_error(sets=["deploy.node_pool=cpu", "deploy.engine=vllm"], contract=contract)
    assert "no GPUs" in message and "deploy.engine=llamaops" in message
    spec = _manifest(sets=["deploy.node_pool=cpu"], contract=contract)["spec"]
    assert spec["nodePool"] == "cpu" and spec["engine"] == "llamaops"
    assert "nvidia.com/gpu" not in operator_manifests._resources(operator_spec.DeploymentSpec.model_validate(spec),
                                                                 contract.nodePools["cpu"])["limits"]


def test_fewer_gpus_per_node_than_tensor_parallel_is_one_line():
    contract = CONTRACT.model_copy(update={"nodePools": {"h100": NodePool(gpusPerNode=4)}})
    message = _one_line_error(preset="405b", name="llamaops-405b", contract=contract)
    assert "tensor_parallel 8" in message and "4 per node" in message


@pytest.mark.parametrize("name, version, words", [("bad name", "1", "model name"), ("m", "production", "version")])
def test_bad_model_names_and_versions(name, version, words):
    assert words in _one_line_error(name=name, version=version)


class FakeApi:
    """Stores one LlamaDeployment; `statuses` are what the operator writes on successive reads."""

    def __init__(self, statuses=()):
        self.obj, self.statuses, self.calls = None, list(statuses), []

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.calls.append("create")
        if self.obj is not None:
            raise ApiException(status=409, reason="Conflict")
        self.obj = copy.deepcopy(body)
        self.obj["metadata"]["generation"] = 1
        return copy.deepcopy(self.obj)

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self.calls.append("patch")
        if body["spec"] != {k: v for k, v in self.obj["spec"].items() if k in body["spec"]}:
            self.obj["metadata"]["generation"] += 1
        self.obj["spec"].update(body["spec"])
        self.obj["metadata"]["labels"].update(body["metadata"]["labels"])
        return copy.deepcopy(self.obj)

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        if self.obj is None:
            raise ApiException(status=404, reason="Not Found")
        if self.statuses:
            self.obj["status"] = self.statuses.pop(0)
        return copy.deepcopy(self.obj)


def test_apply_creates_then_patches_to_roll_forward_keeping_added_fields():
    api = FakeApi()
    created = apply_deployment(api, _manifest(version="1"))
    api.obj["spec"]["apiKeySecret"] = "keys"  # an admin's addition
    updated = apply_deployment(api, _manifest(version="2"))
    assert api.calls == ["create", "create", "patch"]
    assert (created["metadata"]["generation"], updated["metadata"]["generation"]) == (1, 2)
    assert updated["spec"]["model"] == "models:/llamaops-8b/2" and updated["spec"]["apiKeySecret"] == "keys"
    assert updated["metadata"]["labels"]["llamaops.io/model-version"] == "2"


def _status(generation, conditions):
    return {"observedGeneration": generation, "conditions": conditions}


def _wait(clock, api, timeout=100.0, generation=None):
    return wait_until_ready(api, "ns", "llamaops-8b", timeout, 10, clock, clock.sleep, generation=generation), clock


def test_wait_returns_when_ready_for_the_applied_generation_only(fake_clock):
    api = FakeApi([{},                                                             # not reconciled yet
                   _status(1, rollout_conditions({"readyReplicas": 1, "updatedReplicas": 1}, 1)),  # old generation
                   _status(2, rollout_conditions({}, 1)),                          # rolling out
                   _status(2, rollout_conditions({"readyReplicas": 1, "updatedReplicas": 1}, 1))])
    apply_deployment(api, _manifest(version="1"))
    applied = apply_deployment(api, _manifest(version="2"))
    obj, clock = _wait(fake_clock, api, generation=applied["metadata"]["generation"])
    assert obj["status"]["observedGeneration"] == 2 and clock.now == 30


def test_degraded_fails_with_the_operators_reason_in_one_line(fake_clock):
    api = FakeApi([_status(1, degraded_conditions("UnknownNodePool", "node pool 'h100' is not configured\n(known: none)"))])
    apply_deployment(api, _manifest())
    with pytest.raises(DeployError) as error:
        _wait(fake_clock, api)
    message = str(error.value)
    assert "Degraded: UnknownNodePool: node pool 'h100' is not configured (known: none)" in message
    assert "kubectl -n ns describe llamadeployment llamaops-8b" in message and "\n" not in message


def test_a_stale_degraded_generation_is_not_the_verdict(fake_clock):
    api = FakeApi([_status(1, degraded_conditions("PoolTooSmall", "old spec")),
                   _status(2, rollout_conditions({"readyReplicas": 1, "updatedReplicas": 1}, 1))])
    apply_deployment(api, _manifest(version="1"))
    apply_deployment(api, _manifest(version="2"))
    obj, _ = _wait(fake_clock, api)
    assert obj["status"]["observedGeneration"] == 2


def test_timeout_names_the_ready_reason_and_the_describe_command(fake_clock):
    unschedulable = rollout_conditions({}, 1, ("Unschedulable", "0/3 nodes are available"))
    api = FakeApi([_status(1, unschedulable)])
    apply_deployment(api, _manifest())
    with pytest.raises(DeployError) as error:
        _wait(fake_clock, api, timeout=45)
    message = str(error.value)
    assert "not Ready after 45 s" in message and "Unschedulable" in message and "0/3 nodes" in message
    assert message.endswith("kubectl -n ns describe llamadeployment llamaops-8b")


def test_timeout_without_an_operator_says_so_and_a_deleted_object_fails(fake_clock):
    api = FakeApi()
    apply_deployment(api, _manifest())
    with pytest.raises(DeployError, match="has not reconciled generation 1 yet"):
        _wait(fake_clock, api, timeout=5)
    api.obj = None
    with pytest.raises(DeployError, match="was deleted"):
        _wait(fake_clock, api)


def test_create_errors_are_one_line_with_a_hint():
    class Forbidden(FakeApi):
        def create_namespaced_custom_object(self, *args):
            raise ApiException(status=403, reason="Forbidden")

    with pytest.raises(DeployError, match=r"HTTP 403 Forbidden; the step's service account needs"):
        apply_deployment(Forbidden(), _manifest())
