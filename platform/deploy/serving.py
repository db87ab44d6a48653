"""How to serve a registered model: the local command line, and the container argv for the cluster.

Engine "llamaops" runs `llamaops serve` on the native checkpoint; engine "vllm" runs vLLM's OpenAI
server on the Hugging Face export of the same model (same API, same served model name).
"""
import shlex
from collections.abc import Sequence

PRODUCTION_ALIAS = "production"
ENGINES = ("llamaops", "vllm")


class ServingError(ValueError):
    """A serving request that cannot be turned into a command."""


def container_command(
    engine: str,
    model: str,
    served_model_name: str,
    port: int = 8000,
    tensor_parallel_size: int = 1,
    host: str = "0.0.0.0",
    api_key_file: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The argv a serving container runs. `model` is what the engine loads: a models:/ s3:// or
    file:// URI or a directory for llamaops; the directory of the Hugging Face export for vllm."""
    if engine == "llamaops":
        if tensor_parallel_size != 1:
            raise ServingError("the llamaops engine serves on one device; use engine vllm for tensor parallelism")
        argv = ["llamaops", "serve", model, "--host", host, "--port", str(port), "--served-model-name", served_model_name]
        if api_key_file:
            argv += ["--api-key-file", api_key_file]  # else env LLAMAOPS_API_KEY
    elif engine == "vllm":
        if tensor_parallel_size < 1:
            raise ServingError("tensor_parallel_size must be at least 1")
        argv = ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", model]
        argv += ["--served-model-name", served_model_name, "--tensor-parallel-size", str(tensor_parallel_size)]
        argv += ["--host", host, "--port", str(port)]
        if api_key_file:
            raise ServingError("vllm reads its key from --api-key or env VLLM_API_KEY; pass it via the environment")
    else:
        raise ServingError(f"unknown serving engine {engine!r}; expected one of {', '.join(ENGINES)}")
    return argv + list(extra_args)


def serve_command(model_name: str, alias: str = PRODUCTION_ALIAS, host: str = "127.0.0.1", port: int = 8000) -> str:
    """The shell command serving `model_name@alias` locally with llamaops."""
    argv = container_command("llamaops", f"models:/{model_name}@{alias}", model_name, port=port, host=host)
    return shlex.join(argv[: argv.index("--served-model-name")])
