"""A training stage's per-step metrics on its MLflow run while it trains, sent by rank 0, with the
machine's system metrics (MLflow's monitor) beside them, so the UI draws live curves.

Tracking must never stop training: a store that fails is warned about once and left alone; the
stage logs the steps that did not arrive when it publishes (`logged_through` says where to start).
Only rank 0 sends: 16,384 ranks each writing to one tracking server would be a denial of service,
and machine-wide figures of every node belong to the cluster's own monitoring.
"""
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .connection import tracking_client
from .runs import StageRun

if TYPE_CHECKING:
    from mlflow.entities import Metric

log = logging.getLogger(__name__)

_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit
STEP_KEY = "loss"  # every training step logs it: its last step is the last step logged


@dataclass(frozen=True)
class MetricStream:
    """Where rank 0 sends per-step metrics: the stage's MLflow run. Picklable, so it travels to Ray
    workers inside the job."""

    tracking_uri: str
    run_id: str
    every_s: float = 10.0
    system_every_s: float = 10.0  # the system metrics' sampling interval


def metric_stream(sink: object) -> MetricStream | None:
    """The stream of a stage's MLflow run; None for any other sink (tests, ad-hoc calls)."""
    if isinstance(sink, StageRun):
        return MetricStream(sink.tracking_uri, sink.run_id)
    return None


def logged_through(sink: object) -> int:
    """The last training step whose metrics the sink's run holds (0: none, or not a run)."""
    if not isinstance(sink, StageRun):
        return 0
    return last_step(sink.client, sink.run_id)


def last_step(client: Any, run_id: str) -> int:
    # The run's latest value of each key carries its step; the full history of a long run would be
    # millions of points (MLflow's own system metrics monitor reads it the same way).
    latest = [m for m in client.get_run(run_id).data._metric_objs if m.key == STEP_KEY]
    return max((m.step for m in latest), default=0)


class LiveMetrics:
    """Rank 0's sender: buffers each step's figures and sends them every `every_s` seconds, at the
    first step and on close; skips steps the run already holds (a resumed stage). Without a stream
    (other ranks, runs without tracking) it does nothing."""

    def __init__(self, stream: MetricStream | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.every_s = stream.every_s if stream is not None else 0.0
        self.run_id = stream.run_id if stream is not None else ""
        self.pending: list[Metric] = []
        self.last_sent = float("-inf")
        self.client: Any = None  # None: nothing to send to (no stream, or tracking failed)
        self.system: Any = None
        self.skip_through = 0
        if stream is not None:
            self._try(lambda: self._open(stream))

    def _open(self, stream: MetricStream) -> None:
        from mlflow.entities import Metric
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self.metric = Metric
        self.client = tracking_client(stream.tracking_uri)
        self.skip_through = last_step(self.client, stream.run_id)
        self.system = SystemMetricsMonitor(stream.run_id, sampling_interval=stream.system_every_s,
                                           resume_logging=True, tracking_uri=stream.tracking_uri)
        self.system.start()

    def step(self, step: int, figures: Mapping[str, float]) -> None:
        if self.client is None or step <= self.skip_through:
            return
        at = int(time.time() * 1000)
        self.pending += [self.metric(key, float(value), at, step) for key, value in figures.items()]
        if self.clock() - self.last_sent >= self.every_s:
            self.flush()

    def flush(self) -> None:
        self.last_sent = self.clock()
        pending, self.pending = self.pending, []
        if self.client is None or not pending:
            return
        client = self.client

        def send() -> None:
            for start in range(0, len(pending), _METRICS_PER_BATCH):
                client.log_batch(self.run_id, metrics=pending[start:start + _METRICS_PER_BATCH])

        self._try(send)

    def close(self) -> None:
        self.flush()
        if self.system is not None:
            self.system.finish()

    def __enter__(self) -> "LiveMetrics":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _try(self, call: Callable[[], None]) -> None:
        """`call()`; on any tracking failure, warn once and send nothing more."""
        try:
            call()
        except Exception as error:  # noqa: BLE001 - any tracking failure: train on without it
            self.client = None
            first_line = str(error).splitlines()[0] if str(error) else ""
            log.warning("live metrics to MLflow stopped (%s: %s); the stage logs them when it publishes",
                        type(error).__name__, first_line)
