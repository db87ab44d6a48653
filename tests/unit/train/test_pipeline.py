"""Pipeline stages cut by platform/train/pipeline.py, run one after another in one process: the
split itself (no schedule, no communication) must reproduce the whole model."""
import copy

import pytest
import torch

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.train.pipeline import check_step_microbatches, split_stage, stage_layer_ids, step_microbatches

from .parallel_worker import MICRO


def test_stage_layer_ids_follow_the_llama3_split_and_cover_every_layer_once():
    ids = [list(stage_layer_ids(126, 16, stage)) for stage in range(16)]
    assert [len(i) for i in ids] == [7] + [8] * 14 + [7]
    assert sum(ids, []) == list(range(126))
    with pytest.raises(ValueError, match="stage 4 is not in 0..3"):
        stage_layer_ids(8, 4, 4)


@pytest.mark.parametrize("n_stages", [2, 4])
def test_stages_run_in_sequence_give_the_whole_models_loss_and_gradients(n_stages):
    torch.manual_seed(0)
    cfg = MICRO.model_copy(update={"n_layers": 6})
    whole = Transformer(cfg)
    whole.init_weights(seed=0)
    stages = [split_stage(copy.deepcopy(whole), n_stages, stage) for stage in range(n_stages)]
    tokens = torch.randint(0, cfg.vocab_size, (2, 16))
    targets = torch.randint(0, cfg.vocab_size, (2, 16))
    document_ids = (torch.arange(16) >= 8).long().expand(2, 16)

    h = tokens
    for stage in stages[:-1]:
        h = stage(h, document_ids=document_ids)
    loss = stages[-1](h, targets=targets, document_ids=document_ids)
    loss.backward()
    want = whole(tokens, targets=targets, document_ids=document_ids)
    want.backward()

    torch.testing.assert_close(loss, want)
    got = {name: p.grad for stage in stages for name, p in stage.named_parameters()}
    assert sorted(got) == sorted(name for name, _ in whole.named_parameters())  # global names kept
    for name, p in whole.named_parameters():
        torch.testing.assert_close(got[name], p.grad, msg=name)


INTERLEAVED_PP16 = ParallelLayout(pp=16, pp_microbatches=16, pp_schedule="interleaved_1f1b")


@pytest.mark.parametrize(("layout", "rows", "count", "problem"), [
    (INTERLEAVED_PP16, 16, 16, None),
    (INTERLEAVED_PP16, 8, 8, None),  # full-405b's ramp start: fewer microbatches than stages
    (INTERLEAVED_PP16, 32, 16, None),
    (INTERLEAVED_PP16, 24, 16, "pp_microbatches=16 does not divide the 24 sequences"),
    (INTERLEAVED_PP16.model_copy(update={"pp_microbatches": 24}), 24, 24, None),  # one round of 24
    (INTERLEAVED_PP16.model_copy(update={"pp_microbatches": 33}), 33, 33, "33 is not a multiple of 2 rounds"),
    (ParallelLayout(pp=16, pp_microbatches=16), 8, 8, "the 1F1B schedule needs at least pp=16 microbatches"),
    (ParallelLayout(pp=4, pp_microbatches=16), 8, 8, None),
])
def test_a_step_runs_its_rows_as_microbatches_the_schedule_accepts(layout, rows, count, problem):
    assert step_microbatches(layout, rows) == count
    found = check_step_microbatches(layout, rows)
    if problem is None:
        assert found is None
    else:
        assert problem in found
