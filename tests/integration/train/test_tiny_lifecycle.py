"""The real tiny preset: data prep -> pretrain -> long context -> anneal on 2 Ray workers (~5 min)."""
import math
import time
from pathlib import Path

import pytest

from llamaops.platform.config import load_preset
from llamaops.platform.data.prep import run_data_prep
from llamaops.platform.model.checkpoint import load_model
from llamaops.platform.train.anneal import run_anneal
from llamaops.platform.train.long_context import run_long_context
from llamaops.platform.train.pretrain import run_pretrain


@pytest.mark.slow
def test_tiny_pretraining_learns_and_the_later_stages_continue(local_ray, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LLAMAOPS_HOME", str(tmp_path / "home"))
    preset = load_preset("tiny")
    data = run_data_prep(preset, (tmp_path / "shards").as_uri()).outputs["shards"]

    started = time.monotonic()
    pretrained = run_pretrain(preset, data, (tmp_path / "pretrain").as_uri())
    pretrain_seconds = time.monotonic() - started
    losses = pretrained.report["loss_history"]
    assert losses[0] > math.log(preset.model.vocab_size) - 1.0  # starts near uniform over 128K tokens
    assert min(losses[-5:]) < 8.0
    assert pretrained.metrics["tokens_per_second"] > 0 and 0 < pretrained.metrics["mfu"] < 1

    long_context = run_long_context(preset, data, pretrained.outputs["model"], (tmp_path / "lc").as_uri())
    assert long_context.report["loss_history"][0] < losses[0] - 2.0
    gate = long_context.report["gate"]  # tiny's own tolerance: each stage recovered short-context loss
    assert [stage["seq_len"] for stage in gate["stages"]] == preset.long_context.seq_lens
    assert all(stage["recovered"] and stage["passed"] for stage in gate["stages"]), gate
    assert all(0 <= stage["needle_accuracy"] <= 1 for stage in gate["stages"])  # reported, not required, for tiny
    annealed = run_anneal(preset, data, long_context.outputs["model"], (tmp_path / "anneal").as_uri())
    assert load_model(tmp_path / "anneal").cfg == preset.model
    print(f"pretrain {pretrain_seconds:.0f}s, losses {losses[0]:.2f} -> {losses[-1]:.2f};"
          f" long context {long_context.metrics['final_loss']:.2f}, short-context loss {gate['baseline_short_loss']:.3f}"
          f" -> {[round(stage['short_loss'], 3) for stage in gate['stages']]}"
          f" (needles {[stage['needle_accuracy'] for stage in gate['stages']]}); anneal {annealed.metrics['final_loss']:.2f}")
