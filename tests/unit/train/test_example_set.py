"""Fine-tuning batches: an example set written by the driver reads back the same, a batch learns
exactly the learned tokens (padding counts nothing), and its loss is the packed one-process
SFT loss of the same examples."""
from pathlib import Path

import pytest

from llamaops.platform.align.examples import Example
from llamaops.platform.align.losses import masked_loss_sum
from llamaops.platform.model import Transformer
from llamaops.platform.model.loss import IGNORE_INDEX
from llamaops.platform.train.batch_sources import ExampleSteps
from llamaops.platform.train.errors import TrainingConfigError
from llamaops.platform.train.example_set import (
    TRAIN,
    ExampleSet,
    example_batch,
    padded_length,
    write_example_set,
    write_step_rows,
)
from llamaops.platform.train.schedule import StepPlan

from .micro import micro_preset

EXAMPLES = [([5, 6, 7, 8, 9], [False, False, True, True, True]), ([1, 2, 3], [False, True, True]), ([4, 4], [False, True])]


def test_an_example_set_reads_back_what_was_written(tmp_path: Path):
    write_example_set(tmp_path, TRAIN, EXAMPLES)
    examples = ExampleSet.open(tmp_path, TRAIN)
    assert len(examples) == 3
    assert [(ids.tolist(), learned.tolist()) for ids, learned in map(examples.example, range(3))] == EXAMPLES


def test_a_batch_learns_only_the_learned_next_tokens(tmp_path: Path):
    write_example_set(tmp_path, TRAIN, EXAMPLES)
    examples = ExampleSet.open(tmp_path, TRAIN)
    batch = example_batch([examples.example(0), examples.example(1), None], cp=2, tp=2)
    assert batch.inputs.shape == (3, 64)
    assert batch.targets[0, :4].tolist() == [IGNORE_INDEX, 7, 8, 9]
    assert batch.targets[1, :2].tolist() == [2, 3]
    assert (batch.targets[0, 4:] == IGNORE_INDEX).all() and (batch.targets[2] == IGNORE_INDEX).all()
    assert batch.document_ids[0].tolist() == [0] * 4 + [1] * 60  # padding: a document of its own
    assert padded_length(65, cp=1, tp=1) == 128 and padded_length(10, cp=16, tp=8) == 256


def test_packed_rows_hold_whole_examples_as_documents_of_their_own(tmp_path: Path):
    write_example_set(tmp_path, TRAIN, EXAMPLES)
    examples = ExampleSet.open(tmp_path, TRAIN)
    batch = example_batch([examples.example(i) for i in range(3)] + [None], row_tokens=5)
    assert batch.inputs.shape == (2, 64)  # 4 + 2 + 1 next-token pairs in rows of 5: [4, 1] and [2]
    assert batch.document_ids[0, :6].tolist() == [0, 0, 0, 0, 1, 2]  # then padding: document 2
    assert batch.targets[0, :5].tolist() == [IGNORE_INDEX, 7, 8, 9, 4]
    assert batch.document_ids[1, :3].tolist() == [0, 0, 1]
    assert example_batch([None], row_tokens=5).targets.eq(IGNORE_INDEX).all()


@pytest.mark.parametrize("row_tokens", [None, 5, 64])
def test_the_batch_loss_is_the_one_process_sft_loss(tmp_path: Path, row_tokens):
    """Packed or one per row, the mean loss over learned tokens is the in-process SFT loss."""
    write_example_set(tmp_path, TRAIN, EXAMPLES)
    examples = ExampleSet.open(tmp_path, TRAIN)
    model = Transformer(micro_preset().model)
    model.init_weights(0)
    batch = example_batch([examples.example(i) for i in range(3)], row_tokens=row_tokens)
    engine = model(batch.inputs, document_ids=batch.document_ids, targets=batch.targets)
    packed, count = masked_loss_sum(model, [Example(tuple(ids), tuple(learned)) for ids, learned in EXAMPLES])
    assert float(engine) == pytest.approx(float(packed) / count, rel=1e-5)


def test_a_plan_the_listed_steps_cannot_feed_is_refused(tmp_path: Path):
    write_example_set(tmp_path, TRAIN, EXAMPLES)
    write_step_rows(tmp_path, [[0, 1], [2, 0]])
    steps = ExampleSteps(tmp_path)
    steps.check([StepPlan(64, 2, 1e-3)] * 2)
    with pytest.raises(TrainingConfigError, match="lists 2 steps of 2 rows; the plan's step 3 needs 2 rows"):
        steps.check([StepPlan(64, 2, 1e-3)] * 3)
    with pytest.raises(TrainingConfigError, match="not an example set"):
        ExampleSet.open(tmp_path, "held_out")
