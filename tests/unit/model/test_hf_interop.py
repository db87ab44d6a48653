import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM  # noqa: E402

from llamaops.platform.config import ModelConfig, RopeScaling  # noqa: E402
from llamaops.platform.model import Transformer, hf  # noqa: E402
from llamaops.platform.model.checkpoint import ModelDirectoryError, load_model, save_model  # noqa: E402
from llamaops.platform.model.hf import export_hf, import_hf, load_hf, save_hf  # noqa: E402
from llamaops.platform.model.hf_config import (  # noqa: E402
    UnsupportedHFConfigError,
    hf_config_from_model_config,
    model_config_from_hf,
)

# Positions run to 128, four times the original context of 32: the llama3 scaling matters.
SCALING = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
CFG = ModelConfig(
    dim=64,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    ffn_hidden_dim=160,
    vocab_size=512,
    max_seq_len=128,
    norm_eps=1e-5,
    rope_scaling=RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_seq_len=32),
)


def hf_llama(vocab_size: int = 512, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_theta=500_000.0,
        rope_scaling={"rope_type": "llama3", **SCALING},
        **overrides,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # norms start at 1: randomise them so a mix-up of norm weights shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def hf_model() -> LlamaForCausalLM:
    return hf_llama()


@pytest.fixture(scope="module")
def hf_dir(hf_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "llama"
    hf_model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def native_dir(tmp_path_factory):
    model = Transformer(CFG)
    model.init_weights(seed=1)
    return save_model(model, tmp_path_factory.mktemp("native") / "model")


TOKENS = torch.randint(0, 512, (2, 128), generator=torch.Generator().manual_seed(0))


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        out = model(TOKENS)
    return getattr(out, "logits", out)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def test_names_and_rotary_permutation_round_trip():
    for name, tensor in Transformer(CFG).state_dict().items():
        back_name, back = hf.from_hf_tensor(CFG, *hf.to_hf_tensor(CFG, name, tensor))
        assert back_name == name and torch.equal(back, tensor)
    assert hf.hf_name("layers.1.feed_forward.w1.weight") == "model.layers.1.mlp.gate_proj.weight"
    assert hf.hf_name("layers.0.feed_forward.w2.weight") == "model.layers.0.mlp.down_proj.weight"
    # Head 0 of wq: Meta row 2i+j holds pair i, component j; HF puts it at row j*head_dim/2 + i.
    wq = torch.arange(CFG.dim, dtype=torch.float32).repeat_interleave(CFG.dim).view(CFG.dim, CFG.dim)
    _, hf_wq = hf.to_hf_tensor(CFG, "layers.0.attention.wq.weight", wq)
    assert hf_wq[:4, 0].tolist() == [0, 2, 4, 6] and hf_wq[8, 0].item() == 1


def test_import_matches_transformers_beyond_the_original_context(hf_model, hf_dir, tmp_path):
    model = load_hf(hf_dir).eval()
    assert model.cfg == CFG
    expected = logits(hf_model)
    assert max_diff(logits(model), expected) <= 1e-4
    native = import_hf(hf_dir, tmp_path / "native")
    assert max_diff(logits(load_model(native)), expected) <= 1e-4


def test_import_reads_sharded_checkpoints(hf_model, tmp_path):
    hf_model.save_pretrained(tmp_path / "hf", max_shard_size="100KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").exists()
    assert max_diff(logits(load_hf(tmp_path / "hf")), logits(hf_model)) <= 1e-4


def test_export_loads_in_transformers_with_the_same_logits(native_dir, tmp_path):
    dst = export_hf(native_dir, tmp_path / "hf", dtype=torch.float32, tokenizer=False)
    theirs = AutoModelForCausalLM.from_pretrained(dst).eval()
    assert theirs.config.rope_parameters == {"rope_type": "llama3", "rope_theta": 500_000.0, **SCALING}
    assert theirs.dtype == torch.float32
    assert max_diff(logits(theirs), logits(load_model(native_dir))) <= 1e-4


def test_export_shards_with_a_complete_index(native_dir, tmp_path):
    dst = export_hf(native_dir, tmp_path / "hf", max_shard_bytes=40_000, tokenizer=False)
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    files = sorted(p.name for p in dst.glob("*.safetensors"))
    assert len(files) > 3 and files[0] == f"model-00001-of-{len(files):05d}.safetensors"
    found, total = {}, 0
    for file in files:
        with safe_open(dst / file, framework="pt") as f:
            for key in f.keys():
                tensor = f.get_tensor(key)
                assert tensor.dtype == torch.bfloat16
                found[key], total = file, total + tensor.numel() * 2
    assert index == {"metadata": {"total_size": total}, "weight_map": dict(sorted(found.items()))}
    assert len(found) == 3 + 9 * CFG.n_layers
    config = json.loads((dst / "config.json").read_text())
    assert config["torch_dtype"] == "bfloat16" and config["rope_scaling"]["rope_type"] == "llama3"
    # bf16 export reloads to the bf16-rounded weights, and one shard still gets an index.
    reloaded = load_hf(dst)
    assert all(p.dtype == torch.bfloat16 for p in reloaded.parameters())
    single = export_hf(native_dir, tmp_path / "one", tokenizer=False)
    assert [p.name for p in single.glob("*.safetensors")] == ["model-00001-of-00001.safetensors"]


def test_failed_export_leaves_no_destination(native_dir, tmp_path, monkeypatch):
    calls = []

    def fail_on_second_shard(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")

    monkeypatch.setattr(hf, "save_file", fail_on_second_shard)
    with pytest.raises(OSError, match="disk full"):
        export_hf(native_dir, tmp_path / "hf", max_shard_bytes=40_000, tokenizer=False)
    assert list(tmp_path.iterdir()) == []


def test_complete_export_with_the_llama_3_tokenizer(tmp_path):
    from transformers import AutoTokenizer, GenerationConfig

    cfg = CFG.model_copy(update={"vocab_size": 128_256, "dim": 32, "ffn_hidden_dim": 64, "n_layers": 1})
    model = Transformer(cfg)
    model.init_weights(seed=0)
    dst = save_hf(model, tmp_path / "hf")
    expected = ["config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json"]
    expected += ["tokenizer_config.json", "special_tokens_map.json"]
    assert all((dst / name).is_file() for name in expected)
    assert AutoTokenizer.from_pretrained(dst)("Hello world!").input_ids == [128000, 9906, 1917, 0]
    generation = GenerationConfig.from_pretrained(dst)
    assert generation.eos_token_id == [128001, 128008, 128009] and generation.temperature == 0.6
    assert AutoModelForCausalLM.from_pretrained(dst).config.vocab_size == 128_256


def test_config_round_trips_and_reads_both_rope_forms():
    exported = hf_config_from_model_config(CFG)
    assert model_config_from_hf(exported) == CFG
    assert LlamaConfig(**exported).rope_parameters == {"rope_type": "llama3", "rope_theta": 500_000.0, **SCALING}
    modern = {k: v for k, v in exported.items() if k not in ("rope_scaling", "rope_theta")}
    modern["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500_000.0, **SCALING}
    assert model_config_from_hf(modern) == CFG
    plain = {**exported, "rope_scaling": None}
    assert model_config_from_hf(plain).rope_scaling is None
    unscaled = CFG.model_copy(update={"rope_scaling": None})
    assert model_config_from_hf(hf_config_from_model_config(unscaled)) == unscaled


@pytest.mark.parametrize(
    "change, match",
    [
        ({"model_type": "mistral"}, "model_type 'mistral'"),
        ({"architectures": ["LlamaForSequenceClassification"]}, "architectures"),
        ({"tie_word_embeddings": True}, "tie_word_embeddings"),
        ({"attention_bias": True}, "attention_bias"),
        ({"mlp_bias": True}, "mlp_bias"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"head_dim": 32}, "head_dim"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_type 'yarn'"),
        ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "lacks low_freq_factor"),
        ({"num_key_value_heads": 3}, "not divisible"),
    ],
)
def test_unsupported_hf_configs_are_rejected_in_one_line(change, match):
    with pytest.raises(UnsupportedHFConfigError, match=match) as info:
        model_config_from_hf({**hf_config_from_model_config(CFG), **change})
    assert "\n" not in str(info.value)


def test_bad_hf_directories_are_one_line_errors(hf_dir, tmp_path):
    def error(src, match):
        with pytest.raises(ModelDirectoryError, match=match) as info:
            import_hf(src, tmp_path / "out")
        assert "\n" not in str(info.value) and not (tmp_path / "out").exists()

    error(tmp_path / "nope", "is not a directory")
    broken = tmp_path / "broken"
    broken.mkdir()
    error(broken, "config.json is missing")
    (broken / "config.json").write_text((hf_dir / "config.json").read_text())
    error(broken, "neither model.safetensors nor")
    save_file({"model.layers.0.self_attn.q_proj.bias": torch.zeros(64)}, broken / "model.safetensors")
    error(broken, "unexpected tensor 'model.layers.0.self_attn.q_proj.bias'")
    (broken / "model.safetensors").write_bytes((hf_dir / "model.safetensors").read_bytes()[:500])
    error(broken, "model.safetensors is corrupt")
    (broken / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "gone.safetensors"}}))
    error(broken, "gone.safetensors is missing")
    (broken / "config.json").write_text("[]")
    error(broken, "not a JSON object")


def test_destination_is_checked_before_converting(native_dir, hf_dir):
    with pytest.raises(ModelDirectoryError, match="not empty"):
        import_hf(hf_dir, native_dir)
    with pytest.raises(ModelDirectoryError, match="not empty"):
        export_hf(native_dir, hf_dir)
