from llamaops.pipelines.rayjob import ENTRYPOINT, KUEUE_QUEUE_LABEL, STEP_ENV, build_rayjob, rayjob_name
from llamaops.pipelines.resources import nodes_for, training_layout
from llamaops.platform.config import load_preset
from llamaops.platform.config.cluster import ClusterContract, Queueing


def _manifest(preset_name: str, step: str, contract: ClusterContract | None = None) -> dict:
    preset = load_preset(preset_name)
    return build_rayjob(preset, training_layout(preset, step), step, "70b-20250101-000000-ab12",
                        "registry.example/llamaops:1", {STEP_ENV: "{}"}, contract or ClusterContract(), namespace="ml")


def test_pretraining_rayjob_spans_the_layouts_nodes_with_gpus_on_the_pool():
    manifest = _manifest("70b", "pretrain")
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayJob"
    assert manifest["metadata"]["namespace"] == "ml"
    spec = manifest["spec"]
    assert spec["entrypoint"] == ENTRYPOINT and spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] == 0  # the next step's RayJob waits for these nodes
    (workers,) = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert workers["replicas"] == workers["minReplicas"] == workers["maxReplicas"] == 2048 // 8  # tp8 pp4 dp64
    pod = workers["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert container["image"] == "registry.example/llamaops:1"
    assert {"name": STEP_ENV, "value": "{}"} in container["env"]
    referenced = {item["name"]: item["valueFrom"] for item in container["env"] if "valueFrom" in item}
    assert referenced["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "llamaops-s3", "key": "secret-key"}}
    assert referenced["MLFLOW_TRACKING_URI"] == {"configMapKeyRef": {"name": "llamaops-platform",
                                                                     "key": "MLFLOW_TRACKING_URI"}}
    assert pod["nodeSelector"] == {"llamaops.io/pool": "h100"}  # the chart's pool, as the contract declares it
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["automountServiceAccountToken"] is False and "priorityClassName" not in pod
    assert KUEUE_QUEUE_LABEL not in manifest["metadata"]["labels"]
    head = spec["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert spec["rayClusterSpec"]["authOptions"] == {"mode": "token"}  # the dashboard runs code: token only
    assert "nvidia.com/gpu" not in head["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_each_training_step_gets_its_own_layouts_node_count():
    preset = load_preset("8b")
    assert nodes_for(preset, training_layout(preset, "pretrain")) == 64  # dp 512
    assert nodes_for(preset, training_layout(preset, "long_context")) == 64  # tp8 cp8 dp8
    sft = _manifest("8b", "sft")["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert sft["replicas"] == 8  # dp 64


def test_rayjob_names_are_dns_labels():
    name = rayjob_name("Full-405B_run.2025", "long_context")
    assert len(name) <= 40 and name == name.lower() and "_" not in name and "." not in name


def test_cut_rayjob_names_stay_distinct_per_step():
    run_id = "full-405b-20260101-000000-ab12"
    names = {rayjob_name(run_id, f"round{n}-{stage}") for n in (1, 2) for stage in ("reward_model", "rejection_sampling")}
    assert len(names) == 4 and all(len(name) <= 40 and name[-7] == "-" for name in names)
    assert rayjob_name("tiny-20260101-000000-ab12", "sft") == "tiny-20260101-000000-ab12-sft"  # short names stay as they are


def test_queueing_puts_the_kueue_queue_on_the_job_and_the_priority_on_every_pod():
    contract = ClusterContract(queueing=Queueing(kueueQueue="research", priorityClass="training-high"))
    manifest = _manifest("8b", "pretrain", contract)
    assert manifest["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "research"
    cluster = manifest["spec"]["rayClusterSpec"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        assert group["template"]["spec"]["priorityClassName"] == "training-high"


def test_kuberay_recreates_the_ray_cluster_as_often_as_the_preset_allows():
    preset = load_preset("405b", overrides=["restarts.rayjob=5"])
    manifest = build_rayjob(preset, training_layout(preset, "pretrain"), "pretrain", "run-1", "registry.example/llamaops:1",
                            {}, ClusterContract())
    assert manifest["spec"]["backoffLimit"] == 5
    assert _manifest("405b", "pretrain")["spec"]["backoffLimit"] == load_preset("405b").restarts.rayjob > 0
