import pytest
import torch

from llamaops.platform.config import ModelConfig, load_preset
from llamaops.platform.model import KVCache, Transformer

SMALL = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=160, vocab_size=300, max_seq_len=64)


@pytest.fixture(scope="module")
def model() -> Transformer:
    torch.manual_seed(0)
    m = Transformer(SMALL)
    m.init_weights(seed=0)
    return m.eval()


@pytest.mark.parametrize(
    "preset, parameters",
    [("8b", 8_030_261_248), ("70b", 70_553_706_496), ("405b", 405_853_388_800), ("full-405b", 405_853_388_800)],
)
def test_paper_presets_have_exact_llama_3_1_parameter_counts_and_build_on_meta_without_weights(preset, parameters):
    cfg = load_preset(preset).model
    with torch.device("meta"):
        model = Transformer(cfg)
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert all(p.is_meta for p in model.parameters())
    assert all(b.is_meta for b in model.buffers())
    assert (cfg.n_kv_heads, cfg.head_dim, cfg.vocab_size, cfg.rope_theta) == (8, 128, 128_256, 500_000.0)


def test_output_projection_is_not_tied_to_the_embedding(model):
    assert model.output.weight.data_ptr() != model.tok_embeddings.weight.data_ptr()


def test_logits_are_causal(model):
    tokens = torch.randint(0, SMALL.vocab_size, (2, 12))
    changed = tokens.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % SMALL.vocab_size
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_packed_documents_do_not_attend_across_boundaries(model):
    docs = [torch.randint(0, SMALL.vocab_size, (n,)) for n in (5, 9, 6)]
    packed = torch.cat(docs).unsqueeze(0)
    document_ids = torch.cat([torch.full((len(d),), i) for i, d in enumerate(docs)]).unsqueeze(0)
    with torch.no_grad():
        packed_logits = model(packed, document_ids=document_ids)[0]
        alone = torch.cat([model(d.unsqueeze(0))[0] for d in docs])
    torch.testing.assert_close(packed_logits, alone, atol=1e-5, rtol=1e-5)


def test_kv_cache_decoding_matches_full_forward_for_rows_at_different_lengths(model):
    tokens = torch.randint(0, SMALL.vocab_size, (2, 16))
    with torch.no_grad():
        full = model(tokens)
        cache = KVCache.allocate(SMALL, batch_size=2, max_seq_len=32)
        # Row 0 prefills 10 tokens, row 1 prefills 4 then both decode one token at a time.
        steps = []
        prefill = model(tokens[:1, :10], positions=torch.arange(10).unsqueeze(0), cache=_rows(cache, [0]))
        steps.append((0, slice(0, 10), prefill[0]))
        prefill = model(tokens[1:, :4], positions=torch.arange(4).unsqueeze(0), cache=_rows(cache, [1]))
        steps.append((1, slice(0, 4), prefill[0]))
        for offset in range(6):
            pos = torch.tensor([[10 + offset], [4 + offset]])
            step = model(tokens.gather(1, pos), positions=pos, cache=cache)
            steps.append((0, slice(10 + offset, 11 + offset), step[0]))
            steps.append((1, slice(4 + offset, 5 + offset), step[1]))
    for row, span, logits in steps:
        torch.testing.assert_close(logits, full[row, span], atol=1e-5, rtol=1e-5)


def _rows(cache: KVCache, rows: list[int]) -> KVCache:
    """A view of some rows of a cache: writes through it land in the shared cache."""
    index = torch.tensor(rows)
    assert rows == list(range(rows[0], rows[-1] + 1))
    return KVCache(cache.keys[:, index[0] : index[-1] + 1], cache.values[:, index[0] : index[-1] + 1])


def test_init_weights_after_meta_build_gives_a_working_model():
    with torch.device("meta"):
        model = Transformer(SMALL)
    model.to_empty(device="cpu")
    model.init_weights(seed=1)
    logits = model(torch.randint(0, SMALL.vocab_size, (1, 8)))
    assert torch.isfinite(logits).all()
    # Initial logits are O(1) so the first loss is close to log(vocab).
    loss = torch.nn.functional.cross_entropy(logits[0], torch.randint(0, SMALL.vocab_size, (8,)))
    assert abs(loss.item() - torch.log(torch.tensor(SMALL.vocab_size)).item()) < 1.0


def test_kv_cache_rejects_a_length_beyond_the_model_context():
    with pytest.raises(ValueError, match="exceeds the model's max_seq_len"):
        KVCache.allocate(SMALL, batch_size=1, max_seq_len=SMALL.max_seq_len + 1)
