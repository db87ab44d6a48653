"""Throughput metrics of a training step: tokens/s, MFU and peak memory.

MFU is model FLOPs (sizing.flops_per_token: 6N plus attention) per second over the hardware's
peak: on an accelerator the configured per-accelerator figure (Resources.peak_bf16_tflops), on a
CPU the matmul peak measured on the worker itself, in the training dtype and thread count.
"""
import functools
import resource
import time

import torch

# What each training step logs to MLflow (the record of a step holds more: tokens, seconds).
STEP_FIGURES = ("loss", "lr", "grad_norm", "tokens_per_second", "mfu", "memory_bytes", "memory_bytes_max",
                "reward_margin")


@functools.cache
def measured_matmul_peak(dtype: torch.dtype = torch.float32, threads: int = 1, n: int = 512, seconds: float = 0.3) -> float:
    """FLOP/s of back-to-back n x n matmuls on this CPU with `threads` threads (the best of a few)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)  # warm-up
        best, deadline = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            for _ in range(4):
                torch.mm(a, b)
            best = max(best, 4 * 2 * n**3 / (time.perf_counter() - start))
        return best
    finally:
        torch.set_num_threads(previous)


def peak_memory_bytes(device: torch.device) -> int:
    """The process's peak: allocated accelerator memory, else the resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def model_flops_utilisation(tokens: int, seconds: float, flops_per_token: float, peak_flops: float, workers: int) -> float:
    """Achieved model FLOP/s of `workers` accelerators over their summed peak."""
    return tokens * flops_per_token / seconds / (peak_flops * workers)
