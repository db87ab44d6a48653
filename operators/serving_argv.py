"""The serving container's command line: `platform/deploy/serving.container_command`, with vLLM
pointed at `spec.model` directly (a Hugging Face directory or URI it can read)."""
from llamaops.platform.deploy.serving import SERVING_PORT as PORT
from llamaops.platform.deploy.serving import container_command

from .spec import DeploymentSpec


def server_argv(spec: DeploymentSpec) -> list[str]:
    # The llamaops engine serves on one device; a tensorParallelSize only sizes vLLM's shards.
    tensor_parallel = spec.tensorParallelSize if spec.engine == "vllm" else 1
    return container_command(spec.engine, spec.model, spec.servedModelName, port=PORT,
                             tensor_parallel=tensor_parallel, hf_dir=spec.model)
