import pytest

from llamaops.platform.deploy.serving import container_command, export_command


def test_llamaops_engine_runs_llamaops_serve_on_all_interfaces():
    argv = container_command("llamaops", "models:/m@production", "m", port=9000)
    assert argv[:3] == ["llamaops", "serve", "models:/m@production"]
    assert argv[argv.index("--port") + 1] == "9000" and argv[argv.index("--host") + 1] == "0.0.0.0"


def test_vllm_engine_serves_the_hf_export_under_the_same_name():
    argv = container_command("vllm", "models:/m@production", "m", tensor_parallel=8)
    assert argv[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--served-model-name") + 1] == "m"
    assert argv[argv.index("--tensor-parallel-size") + 1] == "8"
    assert export_command("/models/ckpt")[-2] == "/models/hf"


@pytest.mark.parametrize(("gpus", "device"), [(True, "cuda"), (False, "cpu")])
def test_the_llamaops_engine_splits_over_the_pods_devices(gpus, device):
    argv = container_command("llamaops", "m", "m", tensor_parallel=8, gpus=gpus)
    assert argv[argv.index("--tensor-parallel") + 1] == "8"
    assert argv[argv.index("--device") + 1] == device


def test_unknown_engines_are_refused():
    with pytest.raises(ValueError, match="unknown engine"):
        container_command("tgi", "m", "m")
