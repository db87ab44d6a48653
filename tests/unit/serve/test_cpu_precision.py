"""A model stored in bf16, served "as stored" on a CPU: bf16 only where the CPU computes in bf16."""
import logging
import platform

import pytest
import torch

from llamaops.platform.model import precision
from llamaops.platform.model.checkpoint import save_model
from llamaops.platform.serve.loading import load_for_serving

NO_BF16 = frozenset({"fpu", "sse2", "avx", "avx2", "fma"})  # the AVX2-only AMD EPYC's kind


@pytest.fixture
def bf16_model_dir(small_model, tmp_path):
    model = type(small_model)(small_model.cfg)
    model.load_state_dict(small_model.state_dict())
    return save_model(model.to(torch.bfloat16), tmp_path / "bf16-model")


def test_a_cpu_without_bf16_serves_bf16_weights_in_fp32_and_says_so(bf16_model_dir, monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_flags", lambda: NO_BF16)
    with caplog.at_level(logging.WARNING, logger="llamaops.serve"):
        loaded = load_for_serving(str(bf16_model_dir))
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    assert [r.getMessage() for r in caplog.records if "no bf16 instructions" in r.getMessage()]


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16", "bf16"])
def test_a_cpu_with_bf16_serves_them_as_stored(bf16_model_dir, monkeypatch, flag):
    monkeypatch.setattr(precision, "cpu_flags", lambda: NO_BF16 | {flag})
    assert {p.dtype for p in load_for_serving(str(bf16_model_dir)).model.parameters()} == {torch.bfloat16}


def test_an_explicit_dtype_is_kept(bf16_model_dir, monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: NO_BF16)
    loaded = load_for_serving(str(bf16_model_dir), dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="torch's own bf16 probe is x86-only")
def test_the_cpuinfo_reading_agrees_with_torchs_own_instruction_probe():
    flags = precision.cpu_flags()
    assert "sse2" in flags, "no x86 CPU flags read from /proc/cpuinfo"
    assert precision.cpu_has_bf16() == (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
