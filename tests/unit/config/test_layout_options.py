"""ParallelLayout's precision, activation checkpointing and compile: old files still load, bad
values are one line, and the presets carry the recipe's values."""
import pytest

from llamaops.platform.config import ConfigError, load_preset


@pytest.mark.parametrize(("value", "mode"), [("true", "full"), ("false", "none"), ("selective", "selective")])
def test_old_boolean_checkpointing_still_loads_from_set(value: str, mode: str):
    preset = load_preset("tiny", overrides=[f"pretrain.layout.activation_checkpointing={value}"])
    assert preset.pretrain.layout.activation_checkpointing == mode


def test_old_boolean_checkpointing_still_loads_from_a_file(tmp_path):
    config = tmp_path / "old.yaml"
    config.write_text("long_context:\n  layout:\n    dp: 2\n    activation_checkpointing: true\n")
    assert load_preset("tiny", config).long_context.layout.activation_checkpointing == "full"


@pytest.mark.parametrize(("override", "message"), [
    ("pretrain.layout.activation_checkpointing=some", "pretrain.layout.activation_checkpointing: got 'some': Input should be 'none', 'full' or 'selective'"),
    ("pretrain.layout.param_dtype=fp16", "pretrain.layout.param_dtype: got 'fp16': Input should be 'fp32' or 'bf16'"),
])
def test_bad_values_are_one_line(override: str, message: str):
    with pytest.raises(ConfigError) as info:
        load_preset("tiny", overrides=[override])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_presets_train_in_bf16_on_gpus_and_fp32_on_the_tiny_cpu_run():
    tiny = load_preset("tiny")
    for layout in (tiny.pretrain.layout, tiny.long_context.layout):
        assert (layout.param_dtype, layout.activation_checkpointing, layout.compile) == ("fp32", "none", False)
    for name in ("8b", "70b", "405b", "full-405b"):
        preset = load_preset(name)
        assert preset.pretrain.layout.param_dtype == preset.long_context.layout.param_dtype == "bf16"
        assert preset.pretrain.layout.activation_checkpointing == "none"  # fits 80 GB without
        selective = "selective" if "405b" in name else "none"  # 405B at 128K: 70 GiB without, 47.5 with
        assert preset.long_context.layout.activation_checkpointing == selective
