"""How a model is served: the `llamaops serve` command line locally, and the container argv of each
engine on a cluster (the operator's LlamaDeployment uses these; clients see one OpenAI API either way)."""
from typing import Literal

PRODUCTION_ALIAS = "production"
SERVING_PORT = 8000
GRACEFUL_DRAIN_S = 60  # on SIGTERM the server finishes the requests in flight for up to this long
Engine = Literal["llamaops", "vllm"]
# The path that answers 200 only once weights are loaded: llamaops' /ready, vLLM's /health.
READY_PATH: dict[str, str] = {"llamaops": "/ready", "vllm": "/health"}
HF_ROOT = "/models"  # the serving pod's volume for vLLM's Hugging Face export
HF_DIR = f"{HF_ROOT}/hf"


def registry_uri(model_name: str, version: str | int) -> str:
    """The registry URI pinned to one version (an alias would move under a running service)."""
    return f"models:/{model_name}/{version}"


def serve_command(model_name: str, alias: str = PRODUCTION_ALIAS, host: str = "127.0.0.1", port: int = SERVING_PORT,
                  *, version: str | int | None = None) -> str:
    """`llamaops serve` for the model under `alias`, or pinned to `version` when given."""
    model = registry_uri(model_name, version) if version is not None else f"models:/{model_name}@{alias}"
    return f"llamaops serve {model} --host {host} --port {port}"


def container_command(
    engine: Engine, model: str, served_name: str, *, port: int = SERVING_PORT, tensor_parallel: int = 1,
    gpus: bool = False, quantization: str | None = None, hf_dir: str = HF_DIR,
) -> list[str]:
    """The serving container's argv. `model` is what `llamaops serve` accepts (models:/NAME@ALIAS,
    s3://, file://); `gpus`: the pod holds `tensor_parallel` GPUs (else it runs on its CPUs). vLLM
    reads the Hugging Face export of the same weights at `hf_dir`, which `export_command` writes
    first (an init container). quantization: "fp8", which both engines take as `--quantization fp8`."""
    quantize = ["--quantization", quantization] if quantization else []
    if engine == "llamaops":
        return ["llamaops", "serve", model, "--host", "0.0.0.0", "--port", str(port), "--name", served_name,
                "--device", "cuda" if gpus else "cpu", "--tensor-parallel", str(tensor_parallel), *quantize]
    if engine == "vllm":
        return [
            "python", "-m", "vllm.entrypoints.openai.api_server", "--model", hf_dir, "--served-model-name", served_name,
            "--tensor-parallel-size", str(tensor_parallel), "--host", "0.0.0.0", "--port", str(port), *quantize,
        ]
    raise ValueError(f"unknown engine '{engine}'; use llamaops or vllm")


def export_command(model: str, hf_dir: str = HF_DIR) -> list[str]:
    """Writes the Hugging Face export (weights, config, tokenizer, chat template) vLLM serves;
    `model` is any model reference export-hf takes (models:/, s3://, file://, a directory)."""
    return ["llamaops", "model", "export-hf", model, hf_dir, "--overwrite"]
