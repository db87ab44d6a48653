"""Serving counters rendered in the Prometheus text exposition format."""
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Metrics:
    requests: dict[str, int] = field(default_factory=dict)  # by HTTP status
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_sum: float = 0.0
    ttft_count: int = 0
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def request(self, status: int) -> None:
        with self.lock:
            self.requests[str(status)] = self.requests.get(str(status), 0) + 1

    def finished(self, prompt_tokens: int, completion_tokens: int, ttft: float | None) -> None:
        with self.lock:
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            if ttft is not None:
                self.ttft_sum += ttft
                self.ttft_count += 1

    def render(self, queue_depth: int, batch_size: int) -> str:
        with self.lock:
            uptime = max(time.monotonic() - self.started, 1e-9)
            lines = ["# TYPE llamaops_requests_total counter"]
            lines += [f'llamaops_requests_total{{status="{s}"}} {n}' for s, n in sorted(self.requests.items())]
            lines += [
                "# TYPE llamaops_prompt_tokens_total counter",
                f"llamaops_prompt_tokens_total {self.prompt_tokens}",
                "# TYPE llamaops_generation_tokens_total counter",
                f"llamaops_generation_tokens_total {self.completion_tokens}",
                "# TYPE llamaops_generation_tokens_per_second gauge",
                f"llamaops_generation_tokens_per_second {self.completion_tokens / uptime:.6g}",
                "# TYPE llamaops_time_to_first_token_seconds summary",
                f"llamaops_time_to_first_token_seconds_sum {self.ttft_sum:.6g}",
                f"llamaops_time_to_first_token_seconds_count {self.ttft_count}",
                "# TYPE llamaops_queue_depth gauge",
                f"llamaops_queue_depth {queue_depth}",
                "# TYPE llamaops_batch_size gauge",
                f"llamaops_batch_size {batch_size}",
            ]
        return "\n".join(lines) + "\n"
