"""Server counters in the Prometheus text exposition format (no client library needed)."""
import time
from collections import Counter
from dataclasses import dataclass, field

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def label_value(value: str) -> str:
    """A Prometheus label value as the text format requires: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class EngineMetrics:
    requests: int = 0
    rejected: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    batch_size: int = 0
    queue_depth: int = 0
    in_flight: int = 0  # waiting + prefilling + decoding: what load-based autoscaling averages
    finish_reasons: Counter = field(default_factory=Counter)
    ttft_counts: list[int] = field(default_factory=lambda: [0] * len(TTFT_BUCKETS))
    ttft_sum: float = 0.0
    ttft_count: int = 0
    started: float = field(default_factory=time.monotonic)

    def observe_ttft(self, seconds: float) -> None:
        self.ttft_sum += seconds
        self.ttft_count += 1
        for i, bound in enumerate(TTFT_BUCKETS):
            if seconds <= bound:
                self.ttft_counts[i] += 1

    def finished(self, reason: str) -> None:
        self.finish_reasons[reason.split(":")[0]] += 1

    def render(self, model_name: str, http_requests: Counter) -> str:
        uptime = max(time.monotonic() - self.started, 1e-9)
        label = f'model="{label_value(model_name)}"'
        lines = [
            "# HELP llamaops_requests_total Requests admitted by the engine.",
            "# TYPE llamaops_requests_total counter",
            f"llamaops_requests_total{{{label}}} {self.requests}",
            "# HELP llamaops_requests_rejected_total Requests shed because the queue was full.",
            "# TYPE llamaops_requests_rejected_total counter",
            f"llamaops_requests_rejected_total{{{label}}} {self.rejected}",
            "# HELP llamaops_requests_finished_total Finished requests by reason.",
            "# TYPE llamaops_requests_finished_total counter",
            *(f'llamaops_requests_finished_total{{{label},reason="{r}"}} {n}' for r, n in sorted(self.finish_reasons.items())),
            "# HELP llamaops_http_responses_total HTTP responses by route and status.",
            "# TYPE llamaops_http_responses_total counter",
            *(
                f'llamaops_http_responses_total{{route="{route}",status="{status}"}} {n}'
                for (route, status), n in sorted(http_requests.items())
            ),
            "# HELP llamaops_prompt_tokens_total Prompt tokens prefilled.",
            "# TYPE llamaops_prompt_tokens_total counter",
            f"llamaops_prompt_tokens_total{{{label}}} {self.prompt_tokens}",
            "# HELP llamaops_generation_tokens_total Tokens generated.",
            "# TYPE llamaops_generation_tokens_total counter",
            f"llamaops_generation_tokens_total{{{label}}} {self.generated_tokens}",
            "# HELP llamaops_generation_tokens_per_second Tokens generated per second since start.",
            "# TYPE llamaops_generation_tokens_per_second gauge",
            f"llamaops_generation_tokens_per_second{{{label}}} {self.generated_tokens / uptime:.3f}",
            "# HELP llamaops_queue_depth Requests waiting for a batch slot.",
            "# TYPE llamaops_queue_depth gauge",
            f"llamaops_queue_depth{{{label}}} {self.queue_depth}",
            "# HELP llamaops_requests_in_flight Requests admitted and not finished (waiting or running).",
            "# TYPE llamaops_requests_in_flight gauge",
            f"llamaops_requests_in_flight{{{label}}} {self.in_flight}",
            "# HELP llamaops_batch_size Requests decoding in the last step.",
            "# TYPE llamaops_batch_size gauge",
            f"llamaops_batch_size{{{label}}} {self.batch_size}",
            "# HELP llamaops_time_to_first_token_seconds Time from arrival to the first token.",
            "# TYPE llamaops_time_to_first_token_seconds histogram",
            *(
                f'llamaops_time_to_first_token_seconds_bucket{{{label},le="{bound}"}} {n}'
                for bound, n in zip(TTFT_BUCKETS, self.ttft_counts)
            ),
            f'llamaops_time_to_first_token_seconds_bucket{{{label},le="+Inf"}} {self.ttft_count}',
            f"llamaops_time_to_first_token_seconds_sum{{{label}}} {self.ttft_sum:.6f}",
            f"llamaops_time_to_first_token_seconds_count{{{label}}} {self.ttft_count}",
        ]
        return "\n".join(lines) + "\n"
