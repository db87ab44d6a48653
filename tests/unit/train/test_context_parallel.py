"""Context parallelism's single-process parts: the chunk split, the mask and positions it builds,
and the model's generic hooks it relies on. The multi-process equivalence checks are in
tests/integration/train/test_context_parallel.py."""
import pytest
import torch
import torch.nn.functional as F

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model.transformer import Transformer, positions_within_documents
from llamaops.platform.train.context_parallel import (
    ContextParallelError,
    RankChunks,
    check_seq_len,
    gathered_token_index,
    local_token_index,
    shard_context,
)
from llamaops.platform.train.parallelize import check_layout

from .parallel_worker import MICRO


def test_rank_i_holds_chunks_i_and_its_mirror():
    assert local_token_index(8, 2, 0).tolist() == [0, 1, 6, 7]
    assert local_token_index(8, 2, 1).tolist() == [2, 3, 4, 5]
    assert local_token_index(16, 4, 1).tolist() == [2, 3, 12, 13]
    assert sorted(gathered_token_index(48, 4).tolist()) == list(range(48))


@pytest.mark.parametrize("cp", [2, 4, 8])
def test_every_rank_gets_the_same_causal_attention_work(cp):
    seq = 64 * cp
    work = [int((local_token_index(seq, cp, rank) + 1).sum()) for rank in range(cp)]  # keys each query sees
    assert len(set(work)) == 1
    contiguous = [sum(range(rank * seq // cp + 1, (rank + 1) * seq // cp + 1)) for rank in range(cp)]
    assert max(contiguous) > 2 * min(contiguous)  # what the mirrored chunks avoid


@pytest.mark.parametrize("cp", [2, 4, 16])
def test_each_local_chunk_attends_to_the_key_prefix_ending_with_it(cp):
    chunk = 8
    for rank in range(cp):
        chunks = RankChunks(cp, rank)
        assert chunks.chunks == (rank, 2 * cp - 1 - rank)
        assert chunks.key_spans(chunk) == ((rank + 1) * chunk, (2 * cp - rank) * chunk)
        # (2 cp + 1) c keys per pair of queries instead of all 2 cp c for each: about half the scores
        assert sum(chunks.key_spans(chunk)) == (2 * cp + 1) * chunk


def test_a_sequence_that_does_not_split_into_2_cp_chunks_is_refused_in_one_line():
    with pytest.raises(ContextParallelError, match="sequence length 12 is not divisible by 2 x cp x tp = 8"):
        local_token_index(12, 4, 0)
    check_seq_len(131_072, 16, 8)
    with pytest.raises(ContextParallelError, match="2 x cp x tp = 32; pick a seq_len"):
        check_seq_len(48, 2, 8)


def test_shard_mask_and_positions_are_the_full_ones_at_global_indices():
    seq, cp = 16, 2
    document_ids = torch.tensor([[0] * 3 + [1] * 6 + [2] * 5 + [3] * 2, [0] * 16])  # cuts cross chunk ends
    tokens = torch.arange(2 * seq).view(2, seq)
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    full_mask = causal & (document_ids.unsqueeze(-1) == document_ids.unsqueeze(-2))
    keys = gathered_token_index(seq, cp)
    for rank in range(cp):
        local = local_token_index(seq, cp, rank)
        shard = shard_context(tokens, tokens + 1, document_ids, cp, rank)
        assert torch.equal(shard.tokens, tokens[:, local]) and torch.equal(shard.targets, tokens[:, local] + 1)
        assert torch.equal(shard.mask[:, 0], full_mask[:, local][:, :, keys])
        assert torch.equal(shard.positions, positions_within_documents(document_ids)[:, local])
        plain = shard_context(tokens, None, None, cp, rank)
        assert torch.equal(plain.mask[0, 0], causal[local][:, keys]) and torch.equal(plain.positions[0], local)


def test_an_attention_kernel_and_explicit_positions_reproduce_the_document_masked_forward():
    # The model's generic hook: an attention kernel that brings its keys in another order with a
    # mask built for that order, and explicit positions, give the same logits and summed loss as
    # the model's own document mask.
    torch.manual_seed(0)
    model = Transformer(MICRO)
    model.init_weights(seed=0)
    tokens = torch.randint(0, MICRO.vocab_size, (2, 12))
    document_ids = torch.tensor([[0] * 5 + [1] * 7, [0] * 2 + [1] * 8 + [2] * 2])
    order = torch.randperm(12)
    same = document_ids.unsqueeze(-1) == document_ids.unsqueeze(-2)
    mask = (same & torch.ones(12, 12, dtype=torch.bool).tril())[:, :, order].unsqueeze(1)

    def reordered_keys(q, k, v, kernel_mask):
        return F.scaled_dot_product_attention(q, k[:, :, order], v[:, :, order], attn_mask=kernel_mask, enable_gqa=True)

    for block in model.layers.values():
        block.attention.attention_kernel = reordered_keys
    positions = positions_within_documents(document_ids)
    hooked = model(tokens, positions=positions, attention_mask=mask)
    hooked_sum = model(tokens, positions=positions, attention_mask=mask, targets=tokens, loss_reduction="sum")
    with pytest.raises(ValueError, match="attention_kernel needs forward's explicit positions"):
        model(tokens)  # e.g. a context-parallel model called without cp_forward_loss
    for block in model.layers.values():
        block.attention.attention_kernel = None
    torch.testing.assert_close(hooked, model(tokens, document_ids=document_ids))
    mean = model(tokens, document_ids=document_ids, targets=tokens)
    torch.testing.assert_close(hooked_sum, mean * tokens.numel())
    with pytest.raises(ValueError, match="attention_mask needs explicit positions"):
        model(tokens, attention_mask=mask)


def test_a_model_with_an_attention_kernel_refuses_a_call_without_positions():
    model = Transformer(MICRO)
    model.layers["1"].attention.attention_kernel = lambda q, k, v, mask: q  # e.g. context parallelism's
    with pytest.raises(ValueError, match="attention_kernel needs forward's explicit positions"):
        model(torch.zeros(1, 4, dtype=torch.long))  # e.g. a context-parallel model called without cp_forward_loss


def test_context_parallel_layouts_are_accepted():
    check_layout(Transformer(MICRO.model_copy(update={"vocab_size": 64})), ParallelLayout(tp=2, cp=4, dp=2))
