"""Every preset compiles to KFP IR whose DAG runs the lifecycle in order, sized for its pool."""
import pytest
import yaml

from llamaops.pipelines.lifecycle import compile_pipeline
from llamaops.pipelines.stages import STEP_NAMES
from llamaops.platform.config import PRESETS, load_preset


def _compiled(name: str, tmp_path) -> dict:
    path = compile_pipeline(load_preset(name), tmp_path / f"{name}.yaml")
    return yaml.safe_load(path.read_text())


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
    assert _order(ir["root"]["dag"]["tasks"]) == list(STEP_NAMES)
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
    for step in ["pretrain", "long_context", "anneal", "sft", "dpo", "safety"]:
        task = next(t for t in ir["root"]["dag"]["tasks"].values() if _step_of(t) == step)
        assert task["componentRef"]["name"].startswith("comp-train-on-rayjob")
        assert task["inputs"]["parameters"]["step"]["runtimeValue"]["constant"] == step
        assert "accelerator" not in _executor_resources(ir, step)  # the launcher pod needs no GPU


def test_the_cpu_preset_runs_training_in_its_steps_without_resource_requests(tmp_path):
    ir = _compiled("tiny", tmp_path)
    assert not any(name.startswith("comp-train-on-rayjob") for name in ir["components"])
    assert all(not _executor_resources(ir, step) for step in STEP_NAMES)


def _component_of(ir: dict, step: str) -> str:
    return next(t for t in ir["root"]["dag"]["tasks"].values() if _step_of(t) == step)["componentRef"]["name"]


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


def test_more_than_one_data_worker_launches_the_rayjob_on_a_cluster_but_not_locally(tmp_path):
    from kfp import compiler

    from llamaops.pipelines.lifecycle import build_pipeline

    preset = load_preset("tiny", overrides=["data.workers=2"])
    path = compile_pipeline(preset, tmp_path / "tiny2.yaml")
    assert _component_of(yaml.safe_load(path.read_text()), "data").startswith("comp-data-on-rayjob")
    assert _component_of(_compiled("tiny", tmp_path), "data") == "comp-data-prep"
    compiler.Compiler().compile(build_pipeline(preset, local=True), str(tmp_path / "local.yaml"))
    assert _component_of(yaml.safe_load((tmp_path / "local.yaml").read_text()), "data") == "comp-data-prep"
