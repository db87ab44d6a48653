"""The lifecycle's steps in order: what each one reads, publishes, and where it runs.

A preset with one post-training round runs SFT -> DPO once; with more, each round is
reward model -> rejection sampling -> SFT -> DPO (steps `round<N>-<stage>`), each round from the
previous round's DPO model; `average` then averages the last rounds' DPO models if asked.
"""
from dataclasses import dataclass, replace

from llamaops.platform.config import Preset


@dataclass(frozen=True)
class StageSpec:
    name: str  # step name, MLflow child-run name and artifact folder
    run_function: str  # "module:function" under llamaops.platform
    inputs: tuple[str, ...]  # upstream steps whose outputs the run function takes, in its argument order
    output: str  # key of StageResult.outputs that holds the published URI
    trains: bool  # runs Ray Train workers: a KubeRay RayJob on GPU node pools


STAGES: tuple[StageSpec, ...] = (
    StageSpec("data", "data.prep:run_data_prep", (), "shards", trains=False),
    StageSpec("pretrain", "train.pretrain:run_pretrain", ("data",), "model", trains=True),
    StageSpec("long_context", "train.long_context:run_long_context", ("data", "pretrain"), "model", trains=True),
    StageSpec("anneal", "train.anneal:run_anneal", ("data", "long_context"), "model", trains=True),
    StageSpec("sft", "align.sft:run_sft", ("anneal",), "model", trains=True),
    StageSpec("dpo", "align.dpo:run_dpo", ("sft",), "model", trains=True),
    StageSpec("safety", "align.safety:run_safety", ("dpo",), "model", trains=True),
    StageSpec("eval", "eval.evaluate:run_eval", ("safety", "data"), "report", trains=False),
)
START_STEP = "start"  # settles the run id and MLflow parent run; not a stage
REGISTER_STEP = "register"
DEPLOY_STEP = "deploy"
AVERAGE_STEP = "average"
_ROUND_PREFIX = "round"


def _round_stages(rounds: int, first_model: str) -> list[StageSpec]:
    specs, model = [], first_model
    for number in range(1, rounds + 1):
        def step(stage: str, number: int = number) -> str:
            return f"{_ROUND_PREFIX}{number}-{stage}"

        specs += [
            StageSpec(step("reward_model"), "align.reward_stage:run_reward_model", (model,), "reward_model", trains=True),
            StageSpec(step("rejection_sampling"), "align.rejection_sampling:run_rejection_sampling",
                      (model, step("reward_model")), "samples", trains=True),
            StageSpec(step("sft"), "align.rounds:run_round_sft", (model, step("rejection_sampling")), "model", trains=True),
            StageSpec(step("dpo"), "align.dpo:run_dpo", (step("sft"),), "model", trains=True),
        ]
        model = step("dpo")
    return specs


def lifecycle_stages(preset: Preset) -> tuple[StageSpec, ...]:
    """The steps `preset`'s pipeline runs, in order."""
    post = preset.post_training
    if post.rounds == 1:
        return STAGES
    *pretraining, _, _, safety, evaluate = STAGES
    specs = _round_stages(post.rounds, "anneal")
    if post.average_last_rounds:
        last = range(post.rounds - post.average_last_rounds + 1, post.rounds + 1)
        averaged = tuple(f"{_ROUND_PREFIX}{number}-dpo" for number in last)
        specs.append(StageSpec(AVERAGE_STEP, "align.averaging:run_average", averaged, "model", trains=False))
    return (*pretraining, *specs, replace(safety, inputs=(specs[-1].name,)), evaluate)


def stage_spec(preset: Preset, step: str) -> StageSpec:
    by_name = {spec.name: spec for spec in lifecycle_stages(preset)}
    if step not in by_name:
        raise KeyError(f"preset {preset.name} has no pipeline step {step!r}; its steps: {', '.join(by_name)}")
    return by_name[step]


def step_names(preset: Preset) -> tuple[str, ...]:
    return tuple(spec.name for spec in lifecycle_stages(preset)) + (REGISTER_STEP, DEPLOY_STEP)


def stage_kind(step: str) -> str:
    """The stage a step runs: `round2-sft` -> `sft`."""
    return step.split("-", 1)[1] if step.startswith(_ROUND_PREFIX) else step
