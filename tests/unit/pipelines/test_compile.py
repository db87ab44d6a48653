"""Every preset compiles to KFP IR whose DAG runs the lifecycle in order, sized for its pool."""
import re

import pytest
import yaml

from llamaops.pipelines.lifecycle import compile_pipeline
from llamaops.pipelines.stages import START_STEP, lifecycle_stages, step_names
from llamaops.platform.config import PRESETS, load_preset
from llamaops.platform.config.cluster import ClusterContract, NodePool, SecretRef


def _compiled_docs(name: str, tmp_path, sets: list[str] | None = None, contract: ClusterContract | None = None) -> list:
    path = compile_pipeline(load_preset(name, None, sets or []), tmp_path / f"{name}.yaml", contract)
    return list(yaml.safe_load_all(path.read_text()))


def _compiled(name: str, tmp_path, sets: list[str] | None = None) -> dict:
    """The pipeline spec (the first document; the second is its Kubernetes platform spec)."""
    return _compiled_docs(name, tmp_path, sets)[0]


def _step_of(task: dict) -> str:
    return task["taskInfo"]["name"]


def _order(tasks: dict) -> list[str]:
    """Topological order of the DAG's tasks by display name (each has at most one new upstream)."""
    by_key = {key: task for key, task in tasks.items()}
    order, placed = [], set()
    while len(order) < len(by_key):
        ready = [key for key, task in by_key.items()
                 if key not in placed and set(task.get("dependentTasks", [])) <= placed]
        assert len(ready) == 1, f"DAG is not a chain at {order}: {ready}"
        placed.add(ready[0])
        order.append(_step_of(by_key[ready[0]]))
    return order


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_compiles_to_the_lifecycle_chain(name, tmp_path):
    ir = _compiled(name, tmp_path)
    assert _order(ir["root"]["dag"]["tasks"]) == [START_STEP, *step_names(load_preset(name))]
    assert ir["pipelineInfo"]["name"] == f"llamaops-lifecycle-{name}"
    defaults = ir["root"]["inputDefinitions"]["parameters"]
    assert load_preset(name).model_dump_json() == defaults["preset_json"]["defaultValue"]


def _executor_resources(ir: dict, step: str) -> dict:
    task = next(t for t in ir["root"]["dag"]["tasks"].values() if _step_of(t) == step)
    executor = ir["components"][task["componentRef"]["name"]]["executorLabel"]
    return ir["deploymentSpec"]["executors"][executor]["container"].get("resources", {})


@pytest.mark.parametrize("name", ["8b", "70b", "405b", "full-405b"])
def test_gpu_presets_train_through_rayjobs_and_evaluate_on_a_whole_node(name, tmp_path):
    ir = _compiled(name, tmp_path)
    preset = load_preset(name)
    evaluate = _executor_resources(ir, "eval")
    assert evaluate["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert int(evaluate["accelerator"]["resourceCount"]) == preset.resources.gpus_per_node
    assert evaluate["resourceCpuRequest"] and evaluate["resourceMemoryRequest"]
    training = [spec.name for spec in lifecycle_stages(preset) if spec.trains]
    assert training[3:7] == ["round1-reward_model", "round1-rejection_sampling", "round1-sft", "round1-dpo"]
    assert len(training) == 4 * preset.post_training.rounds + 4  # pretrain, long_context, anneal, safety
    for step in training:
        task = next(t for t in ir["root"]["dag"]["tasks"].values() if _step_of(t) == step)
        assert task["componentRef"]["name"].startswith("comp-train-on-rayjob")
        assert task["inputs"]["parameters"]["step"]["runtimeValue"]["constant"] == step
        assert "accelerator" not in _executor_resources(ir, step)  # the launcher pod needs no GPU


SINGLE_RANK = ["pretrain.layout.dp=1", "long_context.layout.dp=1", "post_training.sft.layout.dp=1",
               "post_training.dpo.layout.dp=1"]


def test_a_single_rank_cpu_preset_trains_in_its_steps_without_resource_requests(tmp_path):
    ir = _compiled("tiny", tmp_path, SINGLE_RANK)
    assert not any(name.startswith("comp-train-on-rayjob") for name in ir["components"])
    assert all(not _executor_resources(ir, step) for step in step_names(load_preset("tiny")))


def test_a_cpu_preset_whose_ranks_span_pods_launches_a_rayjob_per_training_step(tmp_path):
    ir = _compiled("tiny", tmp_path)
    launched = {_step_of(task) for task in ir["root"]["dag"]["tasks"].values()
                if task["componentRef"]["name"].startswith("comp-train-on-rayjob")}
    assert launched == {"pretrain", "long_context", "anneal", "sft", "dpo", "safety"}


def _task(ir: dict, step: str) -> dict:
    return next(t for t in ir["root"]["dag"]["tasks"].values() if _step_of(t) == step)


def _upstream_steps(ir: dict, step: str) -> list[str]:
    """The steps whose outputs `step` takes as its inputs, in argument order."""
    tasks = ir["root"]["dag"]["tasks"]
    parameters = _task(ir, step)["inputs"]["parameters"]
    if "inputs" in parameters:  # the post-training component: a list of upstream outputs
        items = parameters["inputs"]["runtimeValue"]["constant"]
        producers = [re.search(r"pipelinechannel--(.+)-Output", item).group(1) for item in items]
    else:
        producers = [p["taskOutputParameter"]["producerTask"] for p in parameters.values() if "taskOutputParameter" in p]
    return [_step_of(tasks[key]) for key in producers]


def test_a_two_round_preset_runs_each_round_from_the_previous_rounds_model_then_averages(tmp_path):
    ir = _compiled("tiny", tmp_path, ["post_training.rounds=2", "post_training.average_last_rounds=2"])
    rounds = [f"round{n}-{stage}" for n in (1, 2) for stage in ("reward_model", "rejection_sampling", "sft", "dpo")]
    assert _order(ir["root"]["dag"]["tasks"]) == [
        "start", "data", "pretrain", "long_context", "anneal", *rounds, "average", "safety", "eval", "register", "deploy"]
    assert _upstream_steps(ir, "round1-reward_model") == ["anneal"]
    assert _upstream_steps(ir, "round1-rejection_sampling") == ["anneal", "round1-reward_model"]
    assert _upstream_steps(ir, "round1-sft") == ["anneal", "round1-rejection_sampling"]
    assert _upstream_steps(ir, "round1-dpo") == ["round1-sft"]
    assert _upstream_steps(ir, "round2-reward_model") == ["round1-dpo"]
    assert _upstream_steps(ir, "round2-sft") == ["round1-dpo", "round2-rejection_sampling"]
    assert _upstream_steps(ir, "average") == ["round1-dpo", "round2-dpo"]
    assert _upstream_steps(ir, "safety") == ["average"]
    assert _task(ir, "round2-dpo")["inputs"]["parameters"]["step"]["runtimeValue"]["constant"] == "round2-dpo"


def test_without_averaging_safety_starts_from_the_last_rounds_dpo_model(tmp_path):
    ir = _compiled("tiny", tmp_path, ["post_training.rounds=3"])
    assert "average" not in _order(ir["root"]["dag"]["tasks"])
    assert _upstream_steps(ir, "safety") == ["round3-dpo"]


def _component_of(ir: dict, step: str) -> str:
    return _task(ir, step)["componentRef"]["name"]


@pytest.mark.parametrize("name", ["8b", "405b"])
def test_gpu_presets_prepare_data_through_the_data_rayjob_launcher(name, tmp_path):
    ir = _compiled(name, tmp_path)
    assert _component_of(ir, "data").startswith("comp-data-on-rayjob")
    executor = ir["components"][_component_of(ir, "data")]["executorLabel"]
    command = " ".join(ir["deploymentSpec"]["executors"][executor]["container"]["command"])
    assert "run_data_on_rayjob" in command
    assert "accelerator" not in _executor_resources(ir, "data")  # the launcher pod needs no GPU
    # its output (the shards' URI) feeds the training steps and eval
    tasks = {_step_of(t): t for t in ir["root"]["dag"]["tasks"].values()}
    assert tasks["pretrain"]["inputs"]["parameters"]["inputs"]["runtimeValue"]["constant"] == [
        "{{$.inputs.parameters['pipelinechannel--data-on-rayjob-Output']}}"]
    assert tasks["eval"]["inputs"]["parameters"]["data_uri"]["taskOutputParameter"]["producerTask"] == "data-on-rayjob"


def test_kfp_retries_the_rayjob_launchers_as_the_preset_says_and_nothing_else(tmp_path):
    ir = _compiled("405b", tmp_path, ["restarts.launcher=3"])
    retried = {_step_of(t): t["retryPolicy"]["maxRetryCount"] for t in ir["root"]["dag"]["tasks"].values()
               if "retryPolicy" in t}
    launchers = {step for step in retried if _component_of(ir, step).startswith(("comp-train-on-rayjob", "comp-data-on-rayjob"))}
    assert launchers == set(retried) and {"data", "pretrain", "safety"} <= launchers and set(retried.values()) == {3}
    assert not any("retryPolicy" in t for t in _compiled("405b", tmp_path, ["restarts.launcher=0"])["root"]["dag"]["tasks"].values())


def test_more_than_one_data_worker_launches_the_rayjob_on_a_cluster_but_not_locally(tmp_path):
    from kfp import compiler

    from llamaops.pipelines.lifecycle import build_pipeline

    preset = load_preset("tiny", overrides=["data.workers=2"])
    path = compile_pipeline(preset, tmp_path / "tiny2.yaml")
    assert _component_of(next(yaml.safe_load_all(path.read_text())), "data").startswith("comp-data-on-rayjob")
    assert _component_of(_compiled("tiny", tmp_path), "data") == "comp-data-prep"
    compiler.Compiler().compile(build_pipeline(preset, local=True), str(tmp_path / "local.yaml"))
    assert _component_of(yaml.safe_load((tmp_path / "local.yaml").read_text()), "data") == "comp-data-prep"


def _pod_config(docs: list, ir: dict, step: str) -> dict:
    executor = ir["components"][_component_of(ir, step)]["executorLabel"]
    return docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"][executor]


def test_step_pods_carry_the_contracts_references_in_the_kubernetes_platform_spec(tmp_path):
    contract = ClusterContract(
        image="registry.example/llamaops:7", imagePullPolicy="Always", cpuPool="cpu",
        s3Secret=SecretRef(name="store-creds", userKey="id", passwordKey="key"),
        mlflowSecret=SecretRef(name="mlflow-auth", userKey="username", passwordKey="password"),
        platformConfigMap="ml-platform",
        nodePools={"h100": NodePool(nodeSelector={"pool": "gpu"}, gpusPerNode=8,
                                    tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]),
                   "cpu": NodePool(nodeSelector={"pool": "cpu"})},
    )
    docs = _compiled_docs("full-405b", tmp_path, contract=contract)
    ir = docs[0]
    assert {executor["container"]["image"] for executor in ir["deploymentSpec"]["executors"].values()} == {
        "registry.example/llamaops:7"}
    for task in ir["root"]["dag"]["tasks"].values():
        config = _pod_config(docs, ir, _step_of(task))
        assert [(s["secretName"], s["keyToEnv"]) for s in config["secretAsEnv"]] == [
            ("store-creds", [{"secretKey": "id", "envVar": "AWS_ACCESS_KEY_ID"},
                             {"secretKey": "key", "envVar": "AWS_SECRET_ACCESS_KEY"}]),
            ("mlflow-auth", [{"secretKey": "username", "envVar": "MLFLOW_TRACKING_USERNAME"},
                             {"secretKey": "password", "envVar": "MLFLOW_TRACKING_PASSWORD"}])]
        assert config["configMapAsEnv"][0]["configMapName"] == "ml-platform"
        assert config["imagePullPolicy"] == "Always"
    evaluate = _pod_config(docs, ir, "eval")  # a whole GPU node: the pool's selector and taints
    assert evaluate["nodeSelector"] == {"labels": {"pool": "gpu"}}
    assert evaluate["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert evaluate["emptyDirMounts"] == [{"volumeName": "dshm", "mountPath": "/dev/shm", "medium": "Memory"}]
    launcher = _pod_config(docs, ir, "pretrain")  # creates a RayJob; computes nothing itself
    assert launcher["nodeSelector"] == {"labels": {"pool": "cpu"}} and "emptyDirMounts" not in launcher
    assert "secret" not in yaml.safe_dump(ir["deploymentSpec"]).lower().replace("secret_access_key", "")


def test_a_preset_on_a_pool_the_cluster_does_not_declare_fails_in_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"^preset 8b names node pool 'h100', which the cluster does not declare "
                                         r"\(declared: a100\)"):
        compile_pipeline(load_preset("8b"), tmp_path / "8b.yaml", ClusterContract(nodePools={"a100": NodePool()}))


def test_a_serving_pool_without_gpus_for_the_engine_fails_before_the_run(tmp_path):
    cpu_only = ClusterContract(nodePools={"h100": NodePool(gpusPerNode=8, nodeSelector={"pool": "gpu"}),
                                          "cpu": NodePool()})
    with pytest.raises(ValueError, match=r"^node pool 'cpu' has no GPUs \(gpusPerNode 0\) and engine vllm serves"):
        compile_pipeline(load_preset("70b", None, ["deploy.node_pool=cpu"]), tmp_path / "70b.yaml", cpu_only)
