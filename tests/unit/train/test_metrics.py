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


def test_a_stage_mfu_weighs_each_step_by_its_own_peak():
    from llamaops.platform.config import load_preset
    from llamaops.platform.model.sizing import flops_per_token
    from llamaops.platform.train.stage_runner import _throughput

    preset = load_preset("tiny")
    fpt = flops_per_token(preset.model, 128)
    steady = {"seconds": 1.0, "tokens": 1000, "seq_len": 128, "peak_flops": 2 * 1000 * fpt}  # 50% on 1 worker
    busy_last = {**steady, "peak_flops": steady["peak_flops"] / 10}  # measured while the machine was busy
    summary = _throughput(preset, [steady] * 9 + [busy_last], workers=1)
    assert summary["tokens_per_second"] == pytest.approx(1000)
    assert summary["mfu"] == pytest.approx(10 / (9 * 2 + 0.2))  # not 10x the steady 50% from the last peak
    assert 0 < summary["mfu"] < 1
