"""The operator's pure parts: spec checks, manifests and status, without a cluster."""
import pytest

from llamaops.operators import manifests
from llamaops.operators.pools import PoolConfigError, parse_pools
from llamaops.operators.serving_argv import server_argv
from llamaops.operators.spec import DeploymentSpec, crd
from llamaops.operators.status import Degraded, check_spec, merge_conditions, pod_problem, rollout_conditions

POOLS = parse_pools({"pools.yaml": """
h100:
  nodeSelector: {llamaops.io/pool: h100}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  gpusPerNode: 8
cpu: {}
"""})
SPEC = {"model": "s3://models/llama-8b", "nodePool": "h100", "tensorParallelSize": 4}


def _check(raw, exists=None):
    return check_spec(raw, POOLS, lambda uri: exists)


def test_deployment_targets_the_pool_with_tp_gpus_and_an_owner():
    spec, pool = _check(SPEC)
    d = manifests.deployment("m", "ns", "uid-1", spec, pool)
    pod = d["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["nodeSelector"] == {"llamaops.io/pool": "h100"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert c["command"][:3] == ["llamaops", "serve", "s3://models/llama-8b"]
    # The llamaops engine runs on the pod's GPUs, split over all of them, talking through /dev/shm.
    assert c["command"][c["command"].index("--device") + 1] == "cuda"
    assert c["command"][c["command"].index("--tensor-parallel") + 1] == "4"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}} in pod["volumes"]
    assert d["metadata"]["ownerReferences"][0] == manifests.owner_reference("m", "uid-1")
    assert d["spec"]["replicas"] == 1
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_vllm_argv_carries_tp_and_served_name():
    spec = DeploymentSpec.model_validate({**SPEC, "engine": "vllm", "servedModelName": "llama-8b"})
    argv = server_argv(spec, POOLS["h100"])
    assert argv[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4"
    assert argv[argv.index("--served-model-name") + 1] == "llama-8b"


@pytest.mark.parametrize("engine, variable", [("llamaops", "LLAMAOPS_API_KEY"), ("vllm", "VLLM_API_KEY")])
def test_each_engine_gets_the_api_key_where_it_reads_it(engine, variable):
    spec, pool = _check({**SPEC, "engine": engine, "apiKeySecret": "serving-key"})
    env = manifests.deployment("m", "ns", "uid-1", spec, pool)["spec"]["template"]["spec"]["containers"][0]["env"]
    keys = [e for e in env if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "serving-key"]
    assert [e["name"] for e in keys] == [variable]


def test_autoscaling_gives_hpa_and_leaves_replicas_to_it():
    spec, pool = _check({**SPEC, "autoscaling": {"minReplicas": 2, "maxReplicas": 5}})
    assert "replicas" not in manifests.deployment("m", "ns", "u", spec, pool)["spec"]
    h = manifests.hpa("m", "ns", "u", spec, "autoscaling/v2beta2")
    assert (h["spec"]["minReplicas"], h["spec"]["maxReplicas"]) == (2, 5)
    assert manifests.hpa("m", "ns", "u", _check(SPEC)[0], "autoscaling/v2") is None


def test_hpa_version_prefers_v2_and_falls_back_to_v2beta2():
    assert manifests.hpa_api_version({"autoscaling/v1", "autoscaling/v2beta2", "autoscaling/v2"}) == "autoscaling/v2"
    assert manifests.hpa_api_version({"autoscaling/v1", "autoscaling/v2beta2"}) == "autoscaling/v2beta2"
    with pytest.raises(ValueError):
        manifests.hpa_api_version({"autoscaling/v1"})


@pytest.mark.parametrize("raw, exists, reason", [
    ({**SPEC, "nodePool": "a100"}, None, "UnknownNodePool"),
    ({**SPEC, "tensorParallelSize": 16}, None, "PoolTooSmall"),
    ({**SPEC, "nodePool": "cpu", "engine": "vllm"}, None, "NoGPUs"),
    (SPEC, False, "ModelNotFound"),
    ({**SPEC, "model": "http://x"}, None, "InvalidSpec"),
    ({**SPEC, "autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, None, "InvalidSpec"),
])
def test_unusable_specs_are_degraded_with_a_reason(raw, exists, reason):
    with pytest.raises(Degraded) as e:
        _check(raw, exists)
    assert e.value.reason == reason and e.value.message


def test_bad_pool_configmap_is_one_clear_error():
    with pytest.raises(PoolConfigError, match="pools.yaml"):
        parse_pools({"pools.yaml": "h100: {gpusPerNode: many}"})
    assert parse_pools(None) == {}


def test_rollout_conditions_and_stable_transition_times():
    progressing = rollout_conditions({"readyReplicas": 0, "updatedReplicas": 1}, 1)
    by = {c["type"]: c for c in progressing}
    assert by["Ready"]["status"] == "False" and by["Progressing"]["status"] == "True"
    done = {c["type"]: c for c in rollout_conditions({"readyReplicas": 2, "updatedReplicas": 2}, 2)}
    assert done["Ready"]["reason"] == "ReplicasReady" and done["Degraded"]["status"] == "False"
    old = [{**by["Ready"], "lastTransitionTime": "2020-01-01T00:00:00Z"}]
    assert merge_conditions(old, progressing)[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z"


def test_crd_schema_is_structural_and_matches_the_typed_spec():
    version = crd()["spec"]["versions"][0]
    props = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert set(props) == set(DeploymentSpec.model_fields)
    assert version["subresources"] == {"status": {}}


def test_s3_models_get_the_endpoint_and_the_storage_secret_and_readiness_waits_for_weights(monkeypatch):
    monkeypatch.setenv("LLAMAOPS_S3_ENDPOINT", "http://s3.internal:9000")
    spec, pool = _check({**SPEC, "storageSecret": "model-store"})
    c = manifests.deployment("m", "ns", "uid-1", spec, pool)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["LLAMAOPS_S3_ENDPOINT"]["value"] == "http://s3.internal:9000"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "model-store", "key": "secret-key"}
    assert not any("value" in e and "secret" in e["name"].lower() for e in c["env"])  # never inline
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"  # 200 only once the weights are loaded
    assert c["securityContext"]["readOnlyRootFilesystem"] and {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    monkeypatch.delenv("LLAMAOPS_S3_ENDPOINT")
    spec, pool = _check(SPEC)
    c = manifests.deployment("m", "ns", "uid-1", spec, pool)["spec"]["template"]["spec"]["containers"][0]
    assert not [e for e in c["env"] if e["name"].startswith(("AWS_", "LLAMAOPS_S3"))]


def test_models_registry_account_reaches_servers_by_reference_only(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.llamaops.svc:5000")
    monkeypatch.setenv(manifests.MLFLOW_ACCOUNT_ENV, "llamaops-mlflow-auth")
    spec, pool = _check({**SPEC, "model": "models:/llama-8b@production"})
    c = manifests.deployment("m", "ns", "uid-1", spec, pool)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "llamaops-mlflow-auth", "key": "password", "optional": True}
    assert env["MLFLOW_TRACKING_USERNAME"]["valueFrom"]["secretKeyRef"]["key"] == "username"
    monkeypatch.delenv(manifests.MLFLOW_ACCOUNT_ENV)  # a tracking server without auth
    c = manifests.deployment("m", "ns", "uid-1", spec, pool)["spec"]["template"]["spec"]["containers"][0]
    assert not [e for e in c["env"] if e["name"].startswith("MLFLOW_TRACKING_") and e["name"] != "MLFLOW_TRACKING_URI"]


def _pod(conditions=(), waiting=None):
    status = {"conditions": list(conditions)}
    if waiting:
        status["containerStatuses"] = [{"name": "server", "state": {"waiting": waiting}}]
    return {"status": status}


def test_pod_problems_explain_a_rollout_that_is_not_ready():
    unschedulable = _pod([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": "0/1 nodes are available: 1 node(s) didn't match node selector."}])
    crashing = _pod([{"type": "PodScheduled", "status": "True"}], {"reason": "CrashLoopBackOff", "message": "back-off 10s"})
    assert pod_problem([_pod([{"type": "PodScheduled", "status": "True"}])]) is None
    assert pod_problem([crashing, unschedulable])[0] == "Unschedulable"  # scheduling is the first cause
    by = {c["type"]: c for c in rollout_conditions({"readyReplicas": 0}, 1, pod_problem([unschedulable]))}
    assert by["Ready"]["reason"] == "Unschedulable" and "didn't match node selector" in by["Ready"]["message"]
    assert by["Progressing"]["status"] == "True" and by["Degraded"]["status"] == "False"
    by = {c["type"]: c for c in rollout_conditions({"readyReplicas": 0}, 1, pod_problem([crashing]))}
    assert by["Degraded"]["status"] == "True" and by["Degraded"]["reason"] == "CrashLoopBackOff"
    # Once ready, a stale problem does not override the rollout's own conditions.
    by = {c["type"]: c for c in rollout_conditions({"readyReplicas": 1, "updatedReplicas": 1}, 1, ("Unschedulable", "x"))}
    assert by["Ready"]["reason"] == "ReplicasReady"


def test_a_changed_deployment_is_not_ready_until_its_controller_has_observed_the_change():
    old_pods = {"readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": 1}
    rolling = {c["type"]: c for c in rollout_conditions(old_pods, 1, generation=2)}  # new model version applied
    assert rolling["Ready"]["status"] == "False" and rolling["Progressing"]["status"] == "True"
    done = {c["type"]: c for c in rollout_conditions({**old_pods, "observedGeneration": 2}, 1, generation=2)}
    assert done["Ready"]["status"] == "True"


@pytest.mark.parametrize("version", ["autoscaling/v2", "autoscaling/v2beta2"])
def test_load_autoscaling_averages_the_requests_in_flight_per_pod(version):
    import kubernetes_validate

    spec, _ = _check({**SPEC, "autoscaling": {"minReplicas": 1, "maxReplicas": 4, "targetRequestsInFlight": 24}})
    h = manifests.hpa("m", "ns", "u", spec, version)
    assert h["spec"]["metrics"] == [{"type": "Pods", "pods": {"metric": {"name": "llamaops_requests_in_flight"},
                                                              "target": {"type": "AverageValue", "averageValue": "24"}}}]
    assert h["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    kubernetes_validate.validate(h, "1.27.0" if version == "autoscaling/v2" else "1.25.0", strict=True)


def test_a_new_version_rolls_out_without_ever_dropping_to_zero_ready_pods():
    spec, pool = _check(SPEC)
    d = manifests.deployment("m", "ns", "uid-1", spec, pool)
    assert d["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    pod = d["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert server["readinessProbe"]["httpGet"]["path"] == "/ready"  # weights loaded
    # SIGTERM waits for the endpoints to drop the pod, then the drain; the kubelet waits for both.
    delay = int(server["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] > delay + 60
