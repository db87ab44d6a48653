"""The long-context gate as the Ray workers measured it (sharded, published next to the checkpoints)
against the earlier driver-side computation (one process, whole model) on the same checkpoints,
for the runs of benchmarks/long_context_gate_tiny.py under ROOT.

    .venv/bin/python benchmarks/long_context_gate_driver_check.py /tmp/gate-tiny
"""
import sys
from pathlib import Path

import torch

from llamaops.platform.config import load_preset
from llamaops.platform.eval.perplexity import open_validation, validation_perplexity
from llamaops.platform.model.checkpoint import load_model
from llamaops.platform.train.checkpointing import load_checkpoint_model
from llamaops.platform.train.context_gate import short_context_len
from llamaops.platform.train.gate_checks import load_figures

torch.set_num_threads(2)
root = Path(sys.argv[1])
preset = load_preset("tiny")
gate = preset.long_context.gate
stream = open_validation(root / "shards", short_context_len(preset))
for ckpt in sorted(root.glob("lc-*-checkpoints")):
    uri = ckpt.as_uri()
    for step in (0, 2, 4):
        model = load_model(root / "pretrain") if step == 0 else load_checkpoint_model(uri, step)
        short = short_context_len(preset)
        driver = validation_perplexity(model.eval(), stream, short, gate.windows, gate.batch_size).mean_nll
        workers = load_figures(uri, step)["short_loss"]
        print(f"{ckpt.name} step {step}: workers {workers:.10f} driver-side {driver:.10f} diff {workers - driver:+.1e}", flush=True)
