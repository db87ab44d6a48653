"""The one container image every pipeline step runs in (the llamaops package and its dependencies)."""
import os

from llamaops import __version__

IMAGE_ENV = "LLAMAOPS_IMAGE"


def llamaops_image() -> str:
    """LLAMAOPS_IMAGE if set (a private registry), else the released image of this version."""
    return os.environ.get(IMAGE_ENV) or f"ghcr.io/llamaops/llamaops:{__version__.replace('+', '-')}"
