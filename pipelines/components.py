"""KFP v2 lightweight components: thin wrappers that run one platform stage per step.

Bodies import inside the function (KFP runs each body from its source in a fresh process) and
pass only small strings: large artifacts travel as URIs. `run_step` resolves the output URI,
skips finished artifacts on resume, and binds the stage to its MLflow child run.
"""
from typing import NamedTuple

from kfp import dsl

from llamaops.platform.config.images import llamaops_image

IMAGE = llamaops_image()


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def start_run(
    preset_json: str, run_id: str, tracking_uri: str, parent_run_id: str, kfp_run_name: str
) -> NamedTuple("RunIds", [("run_id", str), ("parent_run_id", str)]):
    """The run's artifact id and MLflow parent run: given by `submit --local`, made here otherwise."""
    from llamaops.pipelines.step import start_run as settle

    return tuple(settle(preset_json, run_id, tracking_uri, parent_run_id, kfp_run_name))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def data_prep(preset_json: str, run_id: str, artifact_root: str, tracking_uri: str, parent_run_id: str) -> str:
    from llamaops.pipelines.step import run_step

    return run_step("data", preset_json, run_id, artifact_root, tracking_uri, parent_run_id, [])


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def pretrain(
    preset_json: str, run_id: str, artifact_root: str, tracking_uri: str, parent_run_id: str, data_uri: str
) -> str:
    from llamaops.pipelines.step import run_step

    return run_step("pretrain", preset_json, run_id, artifact_root, tracking_uri, parent_run_id, [data_uri])


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def long_context(
    preset_json: str, run_id: str, artifact_root: str, tracking_uri: str, parent_run_id: str, data_uri: str,
    init_model_uri: str,
) -> str:
    from llamaops.pipelines.step import run_step

    inputs = [data_uri, init_model_uri]
    return run_step("long_context", preset_json, run_id, artifact_root, tracking_uri, parent_run_id, inputs)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def anneal(
    preset_json: str, run_id: str, artifact_root: str, tracking_uri: str, parent_run_id: str, data_uri: str,
    init_model_uri: str,
) -> str:
    from llamaops.pipelines.step import run_step

    inputs = [data_uri, init_model_uri]
    return run_step("anneal", preset_json, run_id, artifact_root, tracking_uri, parent_run_id, inputs)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def post_training(
    step: str, preset_json: str, run_id: str, artifact_root: str, tracking_uri: str, parent_run_id: str,
    inputs: list,
) -> str:
    """A post-training step (SFT, DPO, a round's stages, averaging, safety), run in this pod."""
    from llamaops.pipelines.step import run_step

    return run_step(step, preset_json, run_id, artifact_root, tracking_uri, parent_run_id, inputs)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    preset_json: str, run_id: str, artifact_root: str, tracking_uri: str, parent_run_id: str, model_uri: str,
    data_uri: str,
) -> str:
    from llamaops.pipelines.step import run_step

    return run_step("eval", preset_json, run_id, artifact_root, tracking_uri, parent_run_id, [model_uri, data_uri])


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(
    preset_json: str, run_id: str, tracking_uri: str, parent_run_id: str, model_uri: str, report_uri: str,
    model_name: str,
) -> NamedTuple("Registration", [("version", str), ("promoted", bool)]):
    from llamaops.pipelines.step import register_step

    return tuple(register_step(preset_json, run_id, tracking_uri, parent_run_id, model_uri, report_uri, model_name))


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_on_rayjob(
    step: str, preset_json: str, run_id: str, artifact_root: str, tracking_uri: str, parent_run_id: str,
    inputs: list, cluster_json: str,
) -> str:
    """A multi-node training step: create a KubeRay RayJob that runs `step` on the GPU pool, wait for it."""
    from llamaops.pipelines.rayjob_launch import run_step_on_rayjob

    return run_step_on_rayjob(step, preset_json, run_id, artifact_root, tracking_uri, parent_run_id, inputs,
                              cluster_json)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def data_on_rayjob(
    preset_json: str, run_id: str, artifact_root: str, tracking_uri: str, parent_run_id: str, cluster_json: str
) -> str:
    """The data step on a cluster: create the RayJob that runs `llamaops data prep` on CPU pods, wait for it."""
    from llamaops.pipelines.data_rayjob import run_data_on_rayjob

    return run_data_on_rayjob(preset_json, run_id, artifact_root, tracking_uri, parent_run_id, cluster_json)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def deploy(
    preset_json: str, run_id: str, tracking_uri: str, parent_run_id: str, model_name: str, version: str,
    promoted: bool, cluster_json: str, to_cluster: bool,
) -> str:
    """Serve the promoted version: a LlamaDeployment on the cluster, or the `llamaops serve` command locally."""
    from llamaops.pipelines.deploy_step import deploy_step

    return deploy_step(preset_json, run_id, tracking_uri, parent_run_id, model_name, version, promoted, cluster_json,
                       to_cluster)
