"""Where a training job's batches come from: the two kinds of training data a stage reads.

- TokenWindows: pretraining, long context and annealing read windows of the packed token stream
  (batches.py); the data position is a token cursor.
- ExampleSteps: fine-tuning reads whole examples, each step the rows the driver listed for it
  (example_set.py); the data position is the number of steps taken.

Either way a rank's batch is a function of (step, data position, layout) alone.
"""
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.data.shards import TokenStream

from .batches import Batch, check_stream_fits, next_cursor, rank_batch
from .errors import TrainingConfigError
from .example_set import TRAIN, ExampleSet, example_batch, step_rows
from .schedule import StepPlan

BatchKind = Literal["token_windows", "examples"]


class BatchSource(Protocol):
    def check(self, plan: list[StepPlan]) -> None:
        """Refuse, in one line, a plan this data cannot feed."""

    def batch(self, step: int, cursor: int, spec: StepPlan, dp_rank: int, layout: ParallelLayout) -> Batch:
        """DP rank `dp_rank`'s rows of 0-based step `step`, which starts at data position `cursor`."""

    def next_cursor(self, cursor: int, spec: StepPlan) -> int:
        """The data position after a step that started at `cursor`."""


class TokenWindows:
    def __init__(self, directory: Path, seed: int) -> None:
        self.stream = TokenStream.open(directory, "train")
        self.seed = seed

    def check(self, plan: list[StepPlan]) -> None:
        check_stream_fits(self.stream, {step.seq_len for step in plan})

    def batch(self, step: int, cursor: int, spec: StepPlan, dp_rank: int, layout: ParallelLayout) -> Batch:
        return rank_batch(self.stream, cursor, spec.seq_len, spec.sequences, dp_rank, layout.dp, self.seed)

    def next_cursor(self, cursor: int, spec: StepPlan) -> int:
        return next_cursor(cursor, spec.seq_len, spec.sequences)


class ExampleSteps:
    def __init__(self, directory: Path) -> None:
        self.examples = ExampleSet.open(directory, TRAIN)
        self.rows = step_rows(directory)

    def check(self, plan: list[StepPlan]) -> None:
        for index, spec in enumerate(plan):
            if index >= len(self.rows) or self.rows.shape[1] != spec.sequences:
                raise TrainingConfigError(
                    f"the example set lists {len(self.rows)} steps of {self.rows.shape[1]} rows; the plan's"
                    f" step {index + 1} needs {spec.sequences} rows (an earlier attempt with other settings?):"
                    " write to a new output URI"
                )

    def batch(self, step: int, cursor: int, spec: StepPlan, dp_rank: int, layout: ParallelLayout) -> Batch:
        per_rank = spec.sequences // layout.dp
        mine = self.rows[step][dp_rank * per_rank : (dp_rank + 1) * per_rank]
        packed = spec.seq_len if layout.pp == 1 else None  # the pipeline's microbatches are rows
        return example_batch([self.examples.example(int(i)) for i in mine], layout.cp, layout.tp, packed,
                             min_rows=layout.accumulation_steps)

    def next_cursor(self, cursor: int, spec: StepPlan) -> int:
        return cursor + 1

    def step_examples(self, step: int) -> np.ndarray:
        """The examples of 0-based step `step`, in the order the DP ranks share them."""
        return np.asarray(self.rows[step])


def open_batches(kind: BatchKind, directory: Path, seed: int) -> BatchSource:
    return TokenWindows(directory, seed) if kind == "token_windows" else ExampleSteps(directory)
