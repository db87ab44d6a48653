"""Whether this CPU computes in bf16 natively, and the dtype a CPU default should pick.

Without bf16 instructions torch converts every bf16 operand to fp32 and back: measured on an
AVX2-only AMD EPYC, a 512^3 matmul ran at 56 GFLOP/s in fp32 and 1.4 GFLOP/s in bf16. A default
that would pick bf16 on such a CPU picks fp32 instead and says so in one line.
"""
import functools
import platform
from pathlib import Path

import torch

# x86: AVX-512 BF16 or AMX-BF16; Arm: the BF16 extension (cpuinfo "Features: ... bf16").
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags /proc/cpuinfo lists (empty where there is none to read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@functools.cache
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model name", "CPU part"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_bf16() -> bool:
    return bool(cpu_flags() & BF16_CPU_FLAGS)


def no_bf16_note() -> str:
    """The one line a CPU default prints when it falls back from bf16 to fp32."""
    return (f"this CPU ({cpu_name()}) has no bf16 instructions (avx512_bf16, amx_bf16 or Arm bf16); "
            "bf16 would run many times slower than fp32 here, so fp32 is used")


def cpu_compute_dtype(wanted: torch.dtype) -> torch.dtype:
    """`wanted`, unless it is bf16 and this CPU cannot compute in bf16: then fp32."""
    return torch.float32 if wanted == torch.bfloat16 and not cpu_has_bf16() else wanted


def flush_denormals() -> None:
    """Treat subnormal floats as zero in this process. Once training sharpens the output
    distribution, most of the 128K log-probabilities fall below -87 and their exp() is subnormal,
    which x86 CPUs compute several times slower (measured: a tiny fine-tuning step 1.3 s -> 5 s)."""
    torch.set_flush_denormal(True)
