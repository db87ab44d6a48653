"""The serving container's command line per engine.

Issue 5 owns the serving server; once its argv builder lands in platform/deploy/serving.py,
point `server_argv` at it (the flags below are the agreed contract).
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
