"""Every paper preset's training stages must pass the layout preflight at the preset's own size
(microbatches, CP chunks, TP splits over the whole plan), without data, model weights or GPUs.
"""
import pytest

from llamaops.platform.config.overrides import load_preset
from llamaops.platform.train.anneal import anneal_job
from llamaops.platform.train.long_context import long_context_job
from llamaops.platform.train.pretrain import pretrain_job
from llamaops.platform.train.stage_runner import check_job_layout

DATA, MODEL, OUT = "file:///nonexistent/data", "file:///nonexistent/model", "file:///nonexistent/out"
JOBS = {
    "pretrain": lambda preset: pretrain_job(preset, DATA, OUT),
    "long_context": lambda preset: long_context_job(preset, DATA, MODEL, OUT),
    "anneal": lambda preset: anneal_job(preset, DATA, MODEL, OUT),
}
PRESETS = ("tiny", "8b", "70b", "405b", "full-405b")


@pytest.mark.parametrize("stage", list(JOBS))
@pytest.mark.parametrize("name", PRESETS)
def test_preset_stage_passes_the_layout_preflight(name: str, stage: str):
    preset = load_preset(name)
    check_job_layout(preset, JOBS[stage](preset), stage)
