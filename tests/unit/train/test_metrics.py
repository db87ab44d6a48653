import pytest
import torch

from llamaops.platform.train.metrics import measured_matmul_peak, model_flops_utilisation, peak_memory_bytes


def test_measured_cpu_matmul_peak_is_plausible():
    peak = measured_matmul_peak(torch.float32, 1, n=256, seconds=0.1)
    assert 1e8 < peak < 1e13  # 0.1 GFLOP/s .. 10 TFLOP/s for one CPU thread


def test_mfu_is_achieved_over_peak_flops():
    assert model_flops_utilisation(1000, 2.0, 1e6, 1e9, workers=2) == pytest.approx(0.25)


def test_peak_memory_of_a_cpu_process_is_its_resident_set():
    assert peak_memory_bytes(torch.device("cpu")) > 50 * 2**20
