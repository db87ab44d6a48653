"""The lifecycle pipeline: data -> pretrain -> long_context -> anneal -> post-training (sft -> dpo, or
the preset's rounds and averaging; see stages.py) -> safety -> eval -> register. CPU presets train
inside the step (embedded Ray); GPU presets train through a KubeRay RayJob per training step, and
single-node steps request a whole node of the preset's pool. On a cluster, GPU presets and presets
with more than one data worker prepare data in a RayJob too (data_rayjob.data_runs_on_rayjob);
`local=True` (`pipeline submit --local`) keeps it in-process."""
from collections.abc import Callable
from pathlib import Path

from kfp import compiler, dsl

from llamaops.platform.config import Preset
from llamaops.platform.deploy import model_name_for

from . import components
from .data_rayjob import data_runs_on_rayjob
from .resources import PodShape, cpu_pod, gpu_node_pod, uses_gpus
from .stages import lifecycle_stages

PIPELINE_NAME_PREFIX = "llamaops-lifecycle"


def _size(task: dsl.PipelineTask, preset: Preset, shape: PodShape) -> dsl.PipelineTask:
    task.set_cpu_request(str(shape.cpus)).set_memory_request(shape.memory)
    if shape.gpus:
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(shape.gpus)
    # kfp-kubernetes (node selectors, tolerations) is not a dependency: the pool travels as env.
    task.set_env_variable("LLAMAOPS_NODE_POOL", preset.resources.node_pool)
    task.set_env_variable("LLAMAOPS_ACCELERATOR", preset.resources.accelerator)
    return task


def build_pipeline(preset: Preset, local: bool = False) -> Callable:
    """The pipeline function for `preset`; its parameters are filled by `llamaops pipeline submit`.
    `local`: for KFP's local runner, which cannot create RayJobs."""
    gpu = uses_gpus(preset)
    stages = lifecycle_stages(preset)
    names = [spec.name for spec in stages]
    post_training = stages[names.index("anneal") + 1: names.index("eval")]

    def sized(task: dsl.PipelineTask, shape: PodShape, name: str) -> dsl.PipelineTask:
        task.set_display_name(name).set_caching_options(False)
        return _size(task, preset, shape) if gpu else task

    @dsl.pipeline(name=f"{PIPELINE_NAME_PREFIX}-{preset.name}", description=preset.description)
    def lifecycle(
        preset_json: str = preset.model_dump_json(),
        run_id: str = "",
        artifact_root: str = "",
        tracking_uri: str = "",
        parent_run_id: str = "",
        model_name: str = model_name_for(preset),
    ) -> str:
        run = {"preset_json": preset_json, "run_id": run_id, "artifact_root": artifact_root,
               "tracking_uri": tracking_uri, "parent_run_id": parent_run_id}

        def on_rayjob(step: str, inputs: list) -> dsl.PipelineTask:
            return sized(components.train_on_rayjob(step=step, inputs=inputs, **run), cpu_pod(), step)

        # (`in_step`, not `local`: that name is build_pipeline's flag for the local runner)
        def train(step: str, in_step: Callable, **inputs: object) -> dsl.PipelineTask:
            if gpu:
                return on_rayjob(step, list(inputs.values()))
            return sized(in_step(**run, **inputs), cpu_pod(), step)

        if data_runs_on_rayjob(preset) and not local:
            data = sized(components.data_on_rayjob(**run), cpu_pod(), "data")
        else:
            data = sized(components.data_prep(**run), cpu_pod(), "data")
        pretrain = train("pretrain", components.pretrain, data_uri=data.output)
        long_context = train("long_context", components.long_context, data_uri=data.output,
                             init_model_uri=pretrain.output)
        anneal = train("anneal", components.anneal, data_uri=data.output, init_model_uri=long_context.output)
        # Post-training's steps depend on the preset (its rounds, averaging): one task per spec.
        tasks = {"anneal": anneal}
        for spec in post_training:
            inputs = [tasks[name].output for name in spec.inputs]
            if gpu and spec.trains:
                tasks[spec.name] = on_rayjob(spec.name, inputs)
            else:  # averaging holds whole models in memory: a whole node on GPU pools
                shape = gpu_node_pod(preset) if gpu else cpu_pod()
                tasks[spec.name] = sized(components.post_training(step=spec.name, inputs=inputs, **run), shape, spec.name)
        safety = tasks["safety"]
        evaluate = sized(components.evaluate(**run, model_uri=safety.output, data_uri=data.output),
                         gpu_node_pod(preset) if gpu else cpu_pod(), "eval")
        registered = sized(components.register(
            preset_json=preset_json, run_id=run_id, tracking_uri=tracking_uri, parent_run_id=parent_run_id,
            model_uri=safety.output, report_uri=evaluate.output, model_name=model_name,
        ), cpu_pod(), "register")
        return registered.output

    return lifecycle


def compile_pipeline(preset: Preset, path: str | Path) -> Path:
    """Write the pipeline of `preset` as KFP IR YAML to `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(preset), str(target))
    return target


