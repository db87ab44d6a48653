"""Tiny's long-context gate figures, from which tiny's tolerance is chosen (not a peer comparison).

Data prep and pretraining of the real tiny preset, then the long-context stage twice from the same
pretrained model with the gate reporting only (tolerance null): at tiny's LR (healthy) and at 100x
(broken). Prints the pretrained model's short-context loss and each stage's, per run. ~9 min on 2 cores.
The figures are measured by the Ray training workers on the sharded model (train/gate_checks.py);
they equal those of the earlier driver-side, one-process computation (results/ holds both).

    .venv/bin/python benchmarks/long_context_gate_tiny.py /tmp/gate-tiny [EXTRA_LR ...]
"""
import json
import os
import sys
import time
from pathlib import Path


def main(root: Path, extra_lrs: list[float]) -> None:
    os.environ["LLAMAOPS_HOME"] = str(root / "home")
    from llamaops.platform.config import load_preset
    from llamaops.platform.data.prep import run_data_prep
    from llamaops.platform.train.long_context import run_long_context
    from llamaops.platform.train.pretrain import run_pretrain

    preset = load_preset("tiny")
    data, model = (root / "shards").as_uri(), (root / "pretrain").as_uri()
    if not (root / "shards").exists():
        run_data_prep(preset, data)
    if not (root / "pretrain").exists():
        started = time.time()
        losses = run_pretrain(preset, data, model).report["loss_history"]
        print(f"pretrain {time.time() - started:.0f}s, last losses {[round(x, 3) for x in losses[-3:]]}")
    runs = [("healthy", preset.long_context.lr), ("lr100x", preset.long_context.lr * 100)]
    for name, lr in runs + [(f"lr{lr:g}", lr) for lr in extra_lrs]:
        gate = preset.long_context.gate.model_copy(update={"max_short_context_loss_increase": None})
        long_context = preset.long_context.model_copy(update={"lr": lr, "gate": gate})
        started = time.time()
        out = root / f"lc-{name}-{int(started)}"
        report = run_long_context(preset.model_copy(update={"long_context": long_context}), data, model, out.as_uri()).report
        print(f"{name} (lr {lr:g}) {time.time() - started:.0f}s: {json.dumps(report['gate'])}", flush=True)


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    main(target, [float(arg) for arg in sys.argv[2:]])
