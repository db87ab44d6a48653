import pytest
from pydantic import ValidationError

from llamaops.platform.config import PRESETS, ConfigError, load_preset


def test_every_preset_validates_and_carries_its_name():
    for name in PRESETS:
        assert load_preset(name).name == name


def test_paper_layouts_of_the_405b_presets():
    full = load_preset("full-405b")
    assert (full.pretrain.layout.tp, full.pretrain.layout.cp, full.pretrain.layout.pp, full.pretrain.layout.dp) == (8, 1, 16, 128)
    assert (full.long_context.layout.tp, full.long_context.layout.cp, full.long_context.layout.pp, full.long_context.layout.dp) == (8, 16, 16, 8)
    assert full.pretrain.layout.world_size == full.long_context.layout.world_size == 16_384 == full.resources.accelerators
    assert full.pretrain.seq_len == 8192 and full.long_context.seq_lens[-1] == 131_072
    assert load_preset("405b").pretrain.layout.world_size == 8192


def test_paper_recipe_numbers():
    preset = load_preset("full-405b")
    opt = preset.pretrain.optimizer
    assert (opt.peak_lr, opt.min_lr, opt.warmup_steps, opt.decay_steps) == (8e-5, 8e-7, 8000, 1_200_000)
    ramp = [(s.after_tokens, s.seq_len, s.global_batch_tokens) for s in preset.pretrain.batch_ramp]
    assert ramp == [(0, 4096, 4 * 2**20), (252_000_000, 8192, 8 * 2**20), (2_870_000_000_000, 8192, 16 * 2**20)]
    assert preset.anneal.total_tokens == 40_000_000
    assert (preset.post_training.dpo.beta, preset.post_training.dpo.nll_coefficient) == (0.1, 0.2)
    rope = preset.model.rope_scaling
    assert (rope.factor, rope.low_freq_factor, rope.high_freq_factor, rope.original_max_seq_len) == (8, 1, 4, 8192)


def test_overrides_from_set_and_yaml_file(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("pretrain:\n  optimizer:\n    peak_lr: 0.01\nlong_context:\n  seq_lens: [512, 768]\n")
    preset = load_preset("tiny", config, ["pretrain.optimizer.warmup_steps=3", "pretrain.batch_ramp.0.seq_len=64"])
    assert preset.pretrain.optimizer.peak_lr == 0.01
    assert preset.pretrain.optimizer.warmup_steps == 3
    assert preset.pretrain.batch_ramp[0].seq_len == 64
    assert preset.long_context.seq_lens == [512, 768]


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("nope", [], "unknown preset 'nope'; choose one of: tiny, 8b"),
        ("tiny", ["pretrain.lrr=1"], "unknown config field 'pretrain.lrr'; allowed here: layout, total_tokens"),
        ("tiny", ["pretrain.optimizer.peak_lr=fast"], "pretrain.optimizer.peak_lr: got 'fast': Input should be a valid number"),
        ("tiny", ["pretrain.optimizer.peak_lr=-1"], "pretrain.optimizer.peak_lr: got -1: Input should be greater than 0"),
        ("tiny", ["model.n_heads=3"], "model: dim 128 is not divisible by n_heads 3"),
        ("tiny", ["pretrain.layout.tp=4"], "preset: pretrain.layout: tp 4 must divide n_kv_heads 2"),
        ("tiny", ["pretrain.layout.dp=64"], "needs more accelerators than the pool's 2"),
        ("tiny", ["peak_lr"], "override 'peak_lr' must look like key=value"),
        ("tiny", ["pretrain.batch_ramp.7.seq_len=1"], "'pretrain.batch_ramp.7' needs a list index from 0 to 1"),
    ],
)
def test_bad_configuration_is_one_line_naming_field_value_and_fix(name, overrides, message):
    with pytest.raises(ConfigError) as info:
        load_preset(name, overrides=overrides)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_preset("tiny", tmp_path / "missing.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_preset("tiny", listing)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("modle:\n  dim: 4\n")
    with pytest.raises(ConfigError, match="unknown config field 'modle'"):
        load_preset("tiny", unknown)


def test_presets_are_immutable():
    preset = load_preset("tiny")
    with pytest.raises(ValidationError, match="frozen"):
        preset.model.dim = 4


@pytest.mark.parametrize("key", ["pretrain.optimizer.betas", "post_training.sft.optimizer.betas"])
def test_an_adam_beta_outside_0_1_is_refused_in_one_line(key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        load_preset("tiny", overrides=[f"{key}=[1.0, 0.95]"])
    assert "\n" not in str(info.value)
