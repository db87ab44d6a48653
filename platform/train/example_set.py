"""Fine-tuning data as the training engine reads it: tokenized examples and each step's rows.

An example set is a directory written once by the stage's driver:
    {name}.ids.npy      int32 [tokens]      every example's token ids, back to back
    {name}.learned.npy  bool  [tokens]      whether the model learns to produce each token
    {name}.offsets.npy  int64 [examples+1]  where each example starts (and the end)
    steps.npy           int64 [steps, rows] the global batch of every optimizer step, as example
                                            indices into the `train` set
Every step's rows are decided before training, so a rank's batch is a function of the step alone
(resume needs only the step) and a rank reads only its own rows from the memory-mapped files.

A batch is one example per row, right-padded to the longest row of the rank's batch (rounded up
so that context and tensor parallelism can cut it); padding is a document of its own that counts
no target, so no real token attends to it and nothing is learned from it.
"""
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llamaops.platform.model.loss import IGNORE_INDEX

from .batches import Batch
from .errors import TrainingConfigError

STEPS_FILE = "steps.npy"
TRAIN = "train"
ROW_MULTIPLE = 64  # padded lengths are multiples of this (and of what CP x TP needs)

TokenizedExample = tuple[Sequence[int], Sequence[bool]]  # (ids, learned)


def write_example_set(directory: Path, name: str, examples: Sequence[TokenizedExample]) -> None:
    """Write the examples of set `name` into `directory`."""
    lengths = [len(ids) for ids, _ in examples]
    offsets = np.zeros(len(examples) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.fromiter((t for example_ids, _ in examples for t in example_ids), dtype=np.int32, count=int(offsets[-1]))
    learned = np.fromiter((m for _, mask in examples for m in mask), dtype=bool, count=int(offsets[-1]))
    np.save(directory / f"{name}.ids.npy", ids)
    np.save(directory / f"{name}.learned.npy", learned)
    np.save(directory / f"{name}.offsets.npy", offsets)


def write_step_rows(directory: Path, rows: Sequence[Sequence[int]]) -> None:
    """Write every step's global batch (indices into the `train` set)."""
    np.save(directory / STEPS_FILE, np.asarray(rows, dtype=np.int64))


@dataclass(frozen=True)
class ExampleSet:
    """One set of an example-set directory, memory-mapped."""

    ids: np.ndarray
    learned: np.ndarray
    offsets: np.ndarray

    @classmethod
    def open(cls, directory: Path, name: str) -> "ExampleSet":
        files = [directory / f"{name}.{part}.npy" for part in ("ids", "learned", "offsets")]
        missing = [path.name for path in files if not path.is_file()]
        if missing:
            raise TrainingConfigError(f"{directory} is not an example set with a '{name}' set: no {', '.join(missing)}")
        return cls(*(np.load(path, mmap_mode="r") for path in files))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def example(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        return np.asarray(self.ids[start:stop]), np.asarray(self.learned[start:stop])


def step_rows(directory: Path) -> np.ndarray:
    """[steps, rows] the global batch of every step, memory-mapped."""
    return np.load(directory / STEPS_FILE, mmap_mode="r")


def padded_length(longest: int, cp: int, tp: int) -> int:
    multiple = math.lcm(ROW_MULTIPLE, 2 * cp * tp)  # CP cuts a row into 2 x cp chunks, each split over TP
    return max(1, math.ceil(longest / multiple)) * multiple


def example_batch(examples: Sequence[tuple[np.ndarray, np.ndarray] | None], cp: int = 1, tp: int = 1) -> Batch:
    """One row per example (None: a row that counts nothing, for ranks short of examples): inputs
    are the ids but the last, targets the next id where it is learned, IGNORE_INDEX elsewhere."""
    length = padded_length(max((len(e[0]) - 1 for e in examples if e is not None), default=1), cp, tp)
    inputs = torch.zeros(len(examples), length, dtype=torch.long)
    targets = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    documents = torch.ones(len(examples), length, dtype=torch.long)  # padding: document 1
    for row, example in enumerate(examples):
        if example is None:
            continue
        ids, learned = (torch.from_numpy(np.asarray(a)) for a in example)
        n = len(ids) - 1
        inputs[row, :n] = ids[:-1].long()
        targets[row, :n] = torch.where(learned[1:], ids[1:].long(), IGNORE_INDEX)
        documents[row, :n] = 0
    return Batch(inputs, targets, documents)
