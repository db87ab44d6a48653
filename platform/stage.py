"""The contract every lifecycle stage follows.

A stage is a plain function `run_<stage>(preset, inputs..., output_uri, metrics=...) -> StageResult`
that works in-process. It reads artifacts by URI (`store.fetched`), writes its output only through
`store.staged_output(output_uri)` (so an interrupted stage leaves nothing readable behind), and
reports per-step metrics to a `MetricsSink` as it goes; its final metrics are in the result, which
the caller logs once (`StageRun.log_result`). The pipeline component, the CLI and the tests all call
the same function.
"""
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class StageResult:
    outputs: dict[str, str]  # name -> artifact URI
    metrics: dict[str, float] = field(default_factory=dict)  # final scalar metrics
    report: dict[str, Any] = field(default_factory=dict)  # JSON-able detail (per-filter counts, ...)


class MetricsSink(Protocol):
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...


class NoMetrics:
    """Drops metrics: for tests and ad-hoc calls without tracking."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass
