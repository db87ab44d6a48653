"""A task's result (its metrics and per-item details) and lm-eval's standard error of a mean."""
import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class TaskResult:
    task: str
    kind: str
    metrics: dict[str, float]  # the kind's METRICS
    items: list = field(repr=False)  # one dataclass per item
    # Per-item scores of the headline metrics (e.g. acc: 1.0 or 0.0 per item): paired comparisons.
    scores: dict[str, list[float]] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        return len(self.items)


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    """The mean and its standard error: the sample standard deviation over sqrt(n), as lm-eval."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)
