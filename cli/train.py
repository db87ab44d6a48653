"""`llamaops train`: plan a preset's parallel layout without GPUs."""
import json
from typing import Annotated

import typer

from llamaops.platform.config.resources import PLANNING_MFU

from .model import MfuOption, SeqLenOption, Stage, StageOption
from .presets import AsJson, ConfigFile, Overrides, PresetName

app = typer.Typer(help="Distributed training: layouts and their memory.", no_args_is_help=True)


@app.command("plan")
def plan(
    name: PresetName,
    config: ConfigFile = None,
    overrides: Overrides = None,
    stage: StageOption = Stage.pretrain,
    gpus: Annotated[
        int | None, typer.Option(min=1, max=2**24, help="GPUs to plan for: DP is rescaled, TP/CP/PP kept.",
                                 show_default=False)
    ] = None,
    seq_len: SeqLenOption = None,
    mfu: MfuOption = PLANNING_MFU,
    as_json: AsJson = False,
) -> None:
    """Shard the preset's model on a simulated mesh of its layout: per-GPU memory, fit, days."""
    from llamaops.platform.config import load_preset

    preset = load_preset(name, config, overrides or [])
    from llamaops.platform.train.plan import plan_training

    report = plan_training(preset, stage.value, gpus, seq_len, mfu).to_dict()
    typer.echo(json.dumps(report, indent=2) if as_json else _format_plan(report))


def _format_plan(r: dict) -> str:
    gib = 2**30
    memory = r["memory_breakdown"]
    kinds = ("parameters_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "loss_weight_bytes",
             "attention_bias_bytes")
    return "\n".join([
        f"preset            {r['preset']} ({r['stage']}, seq_len {r['seq_len']:,})",
        f"layout            TP {r['tp']} x CP {r['cp']} x PP {r['pp']} x DP {r['dp']} = {r['gpus']:,} GPUs,"
        f" {r['param_dtype']} params, activation checkpointing {r['activation_checkpointing']}",
        f"memory per GPU    {r['memory_per_gpu_bytes'] / gib:>10.1f} GiB of {r['accelerator_memory_bytes'] / gib:.1f} GiB:"
        f" {'fits' if r['fits'] else 'DOES NOT FIT'} (stage {memory['stage']}, {memory['layers']} layers)",
        *(f"  {kind.removesuffix('_bytes'):<16}{memory[kind] / gib:>10.2f} GiB" for kind in kinds),
        f"training time     {r['training_days']:>10.1f} days ({r['total_tokens']:.3g} tokens at {r['mfu']:.0%} MFU)",
        *_generation_lines(r.get("generation"), r["accelerator_memory_bytes"]),
    ])


def _generation_lines(g: dict | None, capacity: int) -> list[str]:
    if g is None:
        return []
    gib = 2**30
    return [
        f"rejection sampling{g['total_bytes'] / gib:>10.1f} GiB per GPU: {'fits' if g['total_bytes'] <= capacity else 'DOES NOT FIT'}"
        f" (TP {g['tp']}, {g['rows']} rows of {g['context']:,} tokens)",
        f"  weights         {g['weights_bytes'] / gib:>10.2f} GiB",
        f"  kv_cache        {g['kv_cache_bytes'] / gib:>10.2f} GiB",
        f"  logits          {g['logits_bytes'] / gib:>10.2f} GiB",
    ]
