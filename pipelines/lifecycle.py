"""The lifecycle pipeline: start -> data -> pretrain -> long_context -> anneal -> post-training (sft -> dpo,
or the preset's rounds and averaging; see stages.py) -> safety -> eval -> register -> deploy.

`start` settles the run id and the MLflow parent run, so a run needs nothing but its parameters.
A training step runs in a KubeRay RayJob of its own where its ranks span pods (GPU presets, and CPU
presets whose layout has more than one rank: one pod per rank), else inside its step (embedded Ray);
on GPU presets single-node steps request a whole node of the preset's pool. On a cluster, GPU
presets and presets with more than one data worker prepare data in a RayJob too
(data_rayjob.data_runs_on_rayjob). Each step pod is configured from the cluster contract
(pod_config.py). `local=True` (`pipeline submit --local`) keeps everything in-process and makes
the deploy step print the serve command instead of deploying.
"""
from collections.abc import Callable
from pathlib import Path

import yaml
from kfp import compiler, dsl

from llamaops.platform.config import Preset
from llamaops.platform.config.cluster import ClusterContract
from llamaops.platform.config.images import llamaops_image
from llamaops.platform.deploy import model_name_for
from llamaops.platform.deploy.rollout import serving_pool

from . import components
from .data_rayjob import data_runs_on_rayjob
from .pod_config import configure_step_pod
from .resources import PodShape, cpu_pod, gpu_node_pod, trains_on_rayjob, uses_gpus
from .stages import DEPLOY_STEP, REGISTER_STEP, START_STEP, lifecycle_stages

PIPELINE_NAME_PREFIX = "llamaops-lifecycle"


def build_pipeline(preset: Preset, local: bool = False, contract: ClusterContract | None = None) -> Callable:
    """The pipeline function for `preset`; its parameters are filled by `llamaops pipeline submit`.
    `local`: for KFP's local runner, which cannot create RayJobs. `contract`: the names of the
    cluster the run will use (default: the chart's defaults)."""
    contract = contract or ClusterContract()
    gpu = uses_gpus(preset)
    stages = lifecycle_stages(preset)
    names = [spec.name for spec in stages]
    post_training = stages[names.index("anneal") + 1: names.index("eval")]
    gpu_pool = contract.pool(preset.resources.node_pool, f"preset {preset.name}") if gpu and not local else None
    cpu_nodes = None if local else contract.cpu_nodes()

    def on_rayjobs(step: str) -> bool:  # KFP's local runner cannot create RayJobs: local runs train in-process
        return not local and trains_on_rayjob(preset, step)
    if preset.deploy.enabled and not local:
        serving_pool(contract, preset)  # a pool that cannot serve fails here, not after weeks of training

    def sized(task: dsl.PipelineTask, shape: PodShape, name: str, works_here: bool = True) -> dsl.PipelineTask:
        """`works_here`: the step computes in its own pod (not a launcher or bookkeeping)."""
        task.set_display_name(name).set_caching_options(False)
        if gpu:
            task.set_cpu_request(shape.cpu).set_memory_request(shape.memory)
            if shape.gpus:
                task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(shape.gpus)
        if not local:
            configure_step_pod(task, contract, gpu_pool if shape.gpus else cpu_nodes, shared_memory=works_here)
        return task

    @dsl.pipeline(name=f"{PIPELINE_NAME_PREFIX}-{preset.name}", description=preset.description)
    def lifecycle(
        preset_json: str = preset.model_dump_json(),
        run_id: str = "",
        artifact_root: str = "",
        tracking_uri: str = "",
        parent_run_id: str = "",
        model_name: str = model_name_for(preset),
        cluster_json: str = contract.model_dump_json(),
    ) -> str:
        start = sized(components.start_run(preset_json=preset_json, run_id=run_id, tracking_uri=tracking_uri,
                                           parent_run_id=parent_run_id, kfp_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER),
                      cpu_pod(contract), START_STEP, works_here=False)  # fmt: skip
        ids = {"run_id": start.outputs["run_id"], "parent_run_id": start.outputs["parent_run_id"]}
        run = {"preset_json": preset_json, "artifact_root": artifact_root, "tracking_uri": tracking_uri, **ids}

        def launcher(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
            """A step that launches a RayJob and waits on it: KFP retries its pod (a drained node),
            and the retry re-attaches to the RayJob."""
            if preset.restarts.launcher:
                task.set_retry(num_retries=preset.restarts.launcher)
            return sized(task, cpu_pod(contract), name, works_here=False)

        def on_rayjob(step: str, inputs: list) -> dsl.PipelineTask:
            return launcher(components.train_on_rayjob(step=step, inputs=inputs, cluster_json=cluster_json, **run), step)

        # (`in_step`, not `local`: that name is build_pipeline's flag for the local runner)
        def train(step: str, in_step: Callable, **inputs: object) -> dsl.PipelineTask:
            if on_rayjobs(step):
                return on_rayjob(step, list(inputs.values()))
            return sized(in_step(**run, **inputs), cpu_pod(contract), step)

        if data_runs_on_rayjob(preset) and not local:
            data = launcher(components.data_on_rayjob(cluster_json=cluster_json, **run), "data")
        else:
            data = sized(components.data_prep(**run), cpu_pod(contract), "data")
        pretrain = train("pretrain", components.pretrain, data_uri=data.output)
        long_context = train("long_context", components.long_context, data_uri=data.output,
                             init_model_uri=pretrain.output)
        anneal = train("anneal", components.anneal, data_uri=data.output, init_model_uri=long_context.output)
        # Post-training's steps depend on the preset (its rounds, averaging): one task per spec.
        tasks = {"anneal": anneal}
        for spec in post_training:
            inputs = [tasks[name].output for name in spec.inputs]
            if spec.trains and on_rayjobs(spec.name):
                tasks[spec.name] = on_rayjob(spec.name, inputs)
            else:  # averaging holds whole models in memory: a whole node on GPU pools
                shape = gpu_node_pod(preset, contract) if gpu else cpu_pod(contract)
                tasks[spec.name] = sized(components.post_training(step=spec.name, inputs=inputs, **run), shape, spec.name)
        safety = tasks["safety"]
        evaluate = sized(components.evaluate(**run, model_uri=safety.output, data_uri=data.output),
                         gpu_node_pod(preset, contract) if gpu else cpu_pod(contract), "eval")
        registered = sized(components.register(
            preset_json=preset_json, tracking_uri=tracking_uri, model_uri=safety.output, report_uri=evaluate.output,
            model_name=model_name, **ids,
        ), cpu_pod(contract), REGISTER_STEP, works_here=False)
        sized(components.deploy(
            preset_json=preset_json, tracking_uri=tracking_uri, model_name=model_name,
            version=registered.outputs["version"], promoted=registered.outputs["promoted"],
            cluster_json=cluster_json, to_cluster=not local, **ids,
        ), cpu_pod(contract), DEPLOY_STEP, works_here=False)
        return registered.outputs["version"]

    return lifecycle


# libyaml where PyYAML has it (its wheels do): ten times the pure-Python pace on a compiled spec.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def compile_pipeline(preset: Preset, path: str | Path, contract: ClusterContract | None = None) -> Path:
    """Write the pipeline of `preset` as KFP IR YAML to `path`, every step in the contract's image."""
    contract = contract or ClusterContract()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(preset, contract=contract), str(target))
    image = contract.image or llamaops_image()
    docs = list(yaml.load_all(target.read_text(), Loader=YAML_LOADER))
    for executor in docs[0]["deploymentSpec"]["executors"].values():
        executor["container"]["image"] = image
    target.write_text(yaml.dump_all(docs, Dumper=YAML_DUMPER, sort_keys=False))
    return target
