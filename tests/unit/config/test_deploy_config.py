import pytest

from llamaops.platform.config import PRESETS, ConfigError, DeployConfig, load_preset


def test_presets_deploy_settings():
    tiny = load_preset("tiny")
    assert not tiny.deploy.enabled and tiny.resources.gpus_per_node == 0
    settings = {name: (p.deploy.enabled, p.deploy.engine, p.deploy.tensor_parallel, p.deploy.quantization)
                for name in PRESETS if (p := load_preset(name))}
    assert settings == {"tiny": (False, "llamaops", 1, None), "8b": (True, "llamaops", 1, None),
                        "70b": (True, "vllm", 4, None), "405b": (True, "vllm", 8, "fp8"),
                        "full-405b": (True, "vllm", 8, "fp8")}
    for name in PRESETS:
        deploy = load_preset(name).deploy
        assert deploy.node_pool is None and deploy.replicas == 1 and deploy.served_model_name == "llama"
        assert deploy.ready_timeout_s > 0
        assert DeployConfig.model_validate(deploy.model_dump()) == deploy


def test_deploy_overrides_go_through_the_override_machinery():
    assert load_preset("8b", None, ["deploy.enabled=false"]).deploy.enabled is False
    assert load_preset("8b", None, ["deploy.tensor_parallel=2"]).deploy.tensor_parallel == 2  # either engine splits
    changed = load_preset("70b", None, ["deploy.node_pool=a100", "deploy.replicas=3", "deploy.served_model_name=m"]).deploy
    assert (changed.node_pool, changed.replicas, changed.served_model_name) == ("a100", 3, "m")


@pytest.mark.parametrize("override, words", [
    ("deploy.tensor_parallel=0", "deploy.tensor_parallel"),
    ("deploy.replicas=0", "deploy.replicas"),
    ("deploy.engine=tgi", "deploy.engine"),
    ("deploy.served_model_name=a b", "deploy.served_model_name"),
    ("deploy.tensor_parallel=3", "must divide n_heads"),
    ("deploy.nope=1", "unknown config field 'deploy.nope'"),
])
def test_bad_deploy_settings_are_one_config_error_line(override, words):
    with pytest.raises(ConfigError) as error:
        load_preset("8b", None, [override])
    assert words in str(error.value) and "\n" not in str(error.value)
