import pytest

from llamaops.platform.config import PRESETS, ConfigError, load_preset
from llamaops.platform.config.eval import EvalConfig


def test_every_preset_has_eval_caps():
    for name in PRESETS:
        assert isinstance(load_preset(name).eval, EvalConfig)


def test_eval_caps_are_overridable_and_validated_in_one_line():
    assert load_preset("tiny", overrides=["eval.multiple_choice_questions=8"]).eval.multiple_choice_questions == 8
    with pytest.raises(ConfigError, match="multiple_choice_languages.*not shipped"):
        load_preset("tiny", overrides=["eval.multiple_choice_languages=[de, xx]"])
    with pytest.raises(ConfigError, match="eval.max_new_tokens"):
        load_preset("tiny", overrides=["eval.max_new_tokens=0"])
