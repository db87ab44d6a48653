"""The serving container's command line: `platform/deploy/serving.container_command` (vLLM reads
the Hugging Face export its pod's init container writes)."""
from llamaops.platform.deploy.serving import SERVING_PORT as PORT
from llamaops.platform.deploy.serving import container_command

from .pools import NodePool
from .spec import DeploymentSpec


def server_argv(spec: DeploymentSpec, pool: NodePool) -> list[str]:
    """Either engine splits the model over the pod's tensorParallelSize GPUs (or, on a CPU pool, the
    llamaops engine over as many processes)."""
    return container_command(spec.engine, spec.model, spec.servedModelName, port=PORT,
                             tensor_parallel=spec.tensorParallelSize, gpus=bool(pool.gpusPerNode),
                             quantization=spec.quantization)
