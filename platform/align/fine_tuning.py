"""Fine-tuning on the training engine, for SFT and safety tuning.

The driver tokenizes the stage's examples and lists every step's rows, publishes both as an
example set next to the output (`<output>-examples`, train/example_set.py), and trains like any
training stage (train/stage_runner.py): Ray Train workers with the stage's layout, the model
built sharded from the input model, the stage's optimizer, checkpoints, exact resume, per-step
metrics and MFU (stage_runner's check_inputs, run_job, publish_trained). The loss is the mean next-token loss over the learned tokens of the step's
examples (assistant tokens only). The workers measure the held-out sets' losses before the first
step and after the last; the driver reads those figures and never holds the model.
"""
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from llamaops.platform.config import Preset
from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.config.stages import FineTuningOptimizer
from llamaops.platform.stage import MetricsSink, StageResult
from llamaops.platform.store import is_complete, staged_output
from llamaops.platform.train.example_set import TRAIN, write_example_set, write_step_rows
from llamaops.platform.train.held_out import HeldOutChecks, held_out_example_values, held_out_losses
from llamaops.platform.train.preference_step import PairwiseObjective
from llamaops.platform.train.schedule import StepPlan
from llamaops.platform.train.stage_runner import check_inputs, check_job_layout, publish_trained, run_job, stage_job

from .errors import AlignmentError
from .examples import Example
from .preferences import EncodedPair


@dataclass(frozen=True)
class FineTuning:
    """A fine-tuning stage's settings, from its preset section."""

    stage: str  # its name in logs, Ray and errors
    layout: ParallelLayout
    seq_len: int  # the longest example, in next-token pairs
    lr: float
    optimizer: FineTuningOptimizer
    checkpoint_every_steps: int
    seed: int


@dataclass(frozen=True)
class FineTuned:
    result: StageResult
    held_out_before: dict[str, float]  # {held-out set: mean loss over its learned tokens}
    held_out_after: dict[str, float]
    # {held-out set: each example's value (summed loss, or score)}; with an objective only
    example_values_before: dict[str, np.ndarray] = field(default_factory=dict)
    example_values_after: dict[str, np.ndarray] = field(default_factory=dict)


HELD_OUT = "held_out"  # the held-out example set of SFT, DPO and the reward model


def in_pairs(pairs: Sequence[EncodedPair]) -> list[Example]:
    """chosen, rejected, chosen, ...: the order the engine's pairwise objectives read."""
    return [example for pair in pairs for example in (pair.chosen, pair.rejected)]


def pair_values(values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) of per-example values listed `in_pairs`' order."""
    interleaved = torch.from_numpy(np.asarray(values))
    return interleaved[0::2], interleaved[1::2]


def pair_steps(steps: Iterable[Sequence[int]]) -> list[list[int]]:
    """Each step's pairs as the rows of `in_pairs`' examples."""
    return [[2 * pair + side for pair in pairs for side in (0, 1)] for pairs in steps]


def examples_uri(output_uri: str) -> str:
    return output_uri.rstrip("/") + "-examples"


def fine_tune(
    preset: Preset,
    spec: FineTuning,
    init_model_uri: str,
    output_uri: str,
    train: Sequence[Example],
    step_rows: Sequence[Sequence[int]],
    held_out: dict[str, Sequence[Example]],
    metrics: MetricsSink,
    objective: PairwiseObjective | None = None,
) -> FineTuned:
    """Train from `init_model_uri` on `train`, step k on the examples `step_rows[k]`, and publish
    the model at `output_uri`. A stage run again after a failure resumes from its checkpoints.
    objective: DPO's or the reward model's instead of the mean next-token loss (`train` and every
    step's rows then in pairs: chosen, rejected, ...); the workers then also measure each
    held-out example's value (summed loss, or score)."""
    if TRAIN in held_out:
        raise AlignmentError(f"a held-out set cannot be named {TRAIN!r}")
    data_uri = examples_uri(output_uri)
    plan = [StepPlan(seq_len=spec.seq_len, sequences=len(step_rows[0]), lr=spec.lr)] * len(step_rows)
    job = stage_job(preset, spec.layout, plan, data_uri, output_uri, spec.checkpoint_every_steps,
                    preset.pretrain.keep_checkpoints, init_model_uri, spec.seed, optimizer=spec.optimizer)
    checks = HeldOutChecks(tuple(held_out), (0, len(plan)), spec.seq_len, per_example=objective is not None,
                           score_token=None if objective is None else objective.score_token)
    job = replace(job, batches="examples", held_out=checks, objective=objective)
    check_job_layout(preset, job, spec.stage)  # a layout the plan cannot run on writes nothing
    if not is_complete(data_uri):  # else written by an earlier attempt of this stage
        with staged_output(data_uri) as directory:
            write_example_set(directory, TRAIN, [(e.ids, e.trained) for e in train])
            for name, examples in held_out.items():
                write_example_set(directory, name, [(e.ids, e.trained) for e in examples])
            write_step_rows(directory, step_rows)
    check_inputs(preset, job, output_uri, spec.stage)
    # Workers start even when the last checkpoint is there but its held-out losses are not (a run
    # stopped between the two): they restore it and measure.
    measured = held_out_losses(job.checkpoint_root, len(plan)) is not None
    resumed_from = run_job(preset, job, spec.stage, metrics, always=not measured)
    result = publish_trained(preset, job, output_uri, metrics, resumed_from)
    before, after = (held_out_losses(job.checkpoint_root, step) for step in (0, len(plan)))
    if before is None or after is None:
        raise AlignmentError(f"{spec.stage}: the workers published no held-out losses at {job.checkpoint_root}")
    if objective is None:
        return FineTuned(result, before, after)
    examples_before, examples_after = (held_out_example_values(job.checkpoint_root, step) for step in (0, len(plan)))
    return FineTuned(result, before, after, examples_before or {}, examples_after or {})
