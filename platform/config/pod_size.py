"""A pod's size as configs state it, and as Kubernetes quantities."""
from pydantic import Field

from .base import Config


class PodSize(Config):
    """What one pod requests: CPUs (fractions allowed, e.g. 0.5) and memory, which is its limit too."""

    cpus: float = Field(gt=0, le=1024)
    memoryGiB: float = Field(gt=0, le=65536)


def cpu_quantity(cpus: float) -> str:
    """As a Kubernetes quantity: whole CPUs, or millicores."""
    return str(int(cpus)) if cpus == int(cpus) else f"{round(cpus * 1000)}m"


def memory_quantity(gib: float) -> str:
    """As a Kubernetes quantity: whole GiB, or MiB."""
    return f"{int(gib)}Gi" if gib == int(gib) else f"{round(gib * 1024)}Mi"
