import pytest

from llamaops.platform.deploy.serving import ServingError, container_command, serve_command


def test_llamaops_and_vllm_commands():
    assert container_command("llamaops", "models:/m@production", "m", port=9000) == [
        "llamaops", "serve", "models:/m@production", "--host", "0.0.0.0", "--port", "9000", "--served-model-name", "m",
    ]
    assert container_command("vllm", "/models/m-hf", "m", port=8000, tensor_parallel_size=8) == [
        "python", "-m", "vllm.entrypoints.openai.api_server", "--model", "/models/m-hf", "--served-model-name", "m",
        "--tensor-parallel-size", "8", "--host", "0.0.0.0", "--port", "8000",
    ]


def test_the_local_serve_command_is_unchanged():
    assert serve_command("tiny") == "llamaops serve models:/tiny@production --host 127.0.0.1 --port 8000"


@pytest.mark.parametrize(
    "kwargs, message",
    [({"engine": "tgi"}, "unknown serving engine"), ({"engine": "llamaops", "tensor_parallel_size": 2}, "one device")],
)
def test_bad_requests(kwargs, message):
    with pytest.raises(ServingError, match=message):
        container_command(model="x", served_model_name="x", **kwargs)
