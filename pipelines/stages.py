"""The lifecycle's steps in order: what each one reads, publishes, and where it runs."""
from dataclasses import dataclass


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
STAGES_BY_NAME = {spec.name: spec for spec in STAGES}
REGISTER_STEP = "register"
STEP_NAMES: tuple[str, ...] = tuple(spec.name for spec in STAGES) + (REGISTER_STEP,)
