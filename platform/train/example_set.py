"""Fine-tuning data as the training engine reads it: tokenized examples and each step's rows.

An example set is a directory written once by the stage's driver:
    {name}.ids.npy      int32 [tokens]      every example's token ids, back to back
    {name}.learned.npy  bool  [tokens]      whether the model learns to produce each token
    {name}.offsets.npy  int64 [examples+1]  where each example starts (and the end)
    steps.npy           int64 [steps, rows] the global batch of every optimizer step, as example
                                            indices into the `train` set
Every step's rows are decided before training, so a rank's batch is a function of the step alone
(resume needs only the step) and a rank reads only its own rows from the memory-mapped files.

A rank's batch packs its examples into rows of at most the step's length, each example a
document of its own (attention within it, positions from 0), as pretraining's windows hold
documents; under pipeline parallelism, whose schedule cuts a batch into microbatches by rows, one
example per row instead. Rows are right-padded to the longest (rounded up so that context and
tensor parallelism can cut them); padding is a document of its own that counts no target.
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
        return np.array(self.ids[start:stop]), np.array(self.learned[start:stop])  # copies: the files are read-only


def step_rows(directory: Path) -> np.ndarray:
    """[steps, rows] the global batch of every step, memory-mapped."""
    return np.load(directory / STEPS_FILE, mmap_mode="r")


def padded_length(longest: int, cp: int, tp: int) -> int:
    multiple = math.lcm(ROW_MULTIPLE, 2 * cp * tp)  # CP cuts a row into 2 x cp chunks, each split over TP
    return max(1, math.ceil(longest / multiple)) * multiple


def example_batch(examples: Sequence[tuple[np.ndarray, np.ndarray] | None], cp: int = 1, tp: int = 1,
                  row_tokens: int | None = None, min_rows: int = 1) -> Batch:
    """The examples' rows (None: nothing, for ranks short of examples): one example per row, or,
    with `row_tokens`, packed into rows of at most that many next-token pairs (first fit, longest
    first), each example a document of its own: attention stays within it and its positions start
    at 0, so it computes exactly as alone. Inputs are the ids but the last, targets the next id
    where it is learned, IGNORE_INDEX elsewhere; padding is one more document, counting nothing,
    and so are the empty rows added up to `min_rows` (one per gradient-accumulation pass)."""
    numbered = [(index, e) for index, e in enumerate(examples) if e is not None]
    if row_tokens:
        rows = _packed(numbered, row_tokens) or [[]]
    else:
        rows = [[(index, e)] if e is not None else [] for index, e in enumerate(examples)]
    rows += [[] for _ in range(min_rows - len(rows))]
    fills = [sum(len(ids) - 1 for _, (ids, _) in row) for row in rows]
    length = padded_length(max(fills, default=1), cp, tp)
    inputs = torch.zeros(len(rows), length, dtype=torch.long)
    targets = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    documents = torch.empty(len(rows), length, dtype=torch.long)
    example_index = torch.full((len(rows), length), -1, dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for document, (index, (ids, learned)) in enumerate(row):
            ids_t, learned_t = torch.from_numpy(np.asarray(ids)).long(), torch.from_numpy(np.asarray(learned))
            stop = start + len(ids_t) - 1
            inputs[r, start:stop] = ids_t[:-1]
            targets[r, start:stop] = torch.where(learned_t[1:], ids_t[1:], IGNORE_INDEX)
            documents[r, start:stop] = document
            example_index[r, start:stop] = index
            start = stop
        documents[r, start:] = len(row)  # the padding's own document
    return Batch(inputs, targets, documents, example_index)


def _packed(examples: list[tuple[int, tuple[np.ndarray, np.ndarray]]], row_tokens: int) -> list[list]:
    """First fit decreasing: each (index, example) into the first row with room, longest first."""
    rows: list[list] = []
    room: list[int] = []
    for example in sorted(examples, key=lambda e: -len(e[1][0])):
        pairs = len(example[1][0]) - 1
        fit = next((r for r, left in enumerate(room) if left >= pairs), None)
        if fit is None:
            rows.append([])
            room.append(row_tokens)
            fit = len(rows) - 1
        rows[fit].append(example)
        room[fit] -= pairs
    return rows
