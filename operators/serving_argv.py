"""The serving container's command line per engine.

vLLM is pointed at `spec.model` directly (a Hugging Face directory or URI it can read);
`platform/deploy/serving.container_command` builds the same argv for an exported model and is
meant to replace this once the operator adds the export init container it needs.
"""
from .spec import DeploymentSpec

PORT = 8000


def server_argv(spec: DeploymentSpec) -> list[str]:
    if spec.engine == "vllm":
        return [
            "python", "-m", "vllm.entrypoints.openai.api_server",
            "--model", spec.model, "--served-model-name", spec.servedModelName,
            "--tensor-parallel-size", str(spec.tensorParallelSize), "--port", str(PORT),
        ]
    return ["llamaops", "serve", spec.model, "--host", "0.0.0.0", "--port", str(PORT)]
