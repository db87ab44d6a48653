"""The container images llamaops runs in, always by version tag, never `latest`: one llamaops image
for every pipeline step, the operator and the llamaops serving engine; vLLM's for the vllm engine."""
import os

from llamaops import __version__

IMAGE_ENV = "LLAMAOPS_IMAGE"
VLLM_IMAGE_ENV = "LLAMAOPS_VLLM_IMAGE"
VLLM_IMAGE = "vllm/vllm-openai:v0.6.3"  # the chart's operator.vllmImage default


def llamaops_image() -> str:
    """LLAMAOPS_IMAGE if set (a private registry), else the released image of this version."""
    return os.environ.get(IMAGE_ENV) or f"ghcr.io/llamaops/llamaops:{__version__.replace('+', '-')}"


def vllm_image() -> str:
    """LLAMAOPS_VLLM_IMAGE if set, else the vLLM release the chart pins."""
    return os.environ.get(VLLM_IMAGE_ENV) or VLLM_IMAGE
