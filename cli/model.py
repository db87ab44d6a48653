"""`llamaops model`: sizing of a preset, and conversion to and from Hugging Face checkpoints."""
import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from llamaops.platform.config.resources import PLANNING_MFU
from llamaops.platform.tracking.model_reference import MODEL_REFERENCE_HELP

from .presets import AsJson, ConfigFile, Overrides, PresetName

app = typer.Typer(help="Model sizing and Hugging Face interop.", no_args_is_help=True)

Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace DST if it already holds files.")]


class Stage(str, Enum):
    pretrain = "pretrain"
    long_context = "long_context"
    sft = "sft"
    reward_model = "reward_model"
    dpo = "dpo"


StageOption = Annotated[Stage, typer.Option(help="Training stage whose layout and token budget to use.")]
SeqLenOption = Annotated[
    int | None, typer.Option(min=1, help="Sequence length (default: the stage's final one).", show_default=False)
]
MfuOption = Annotated[float, typer.Option(min=0.01, max=1.0, help="Model FLOPs utilisation.")]


@app.command("info")
def info(
    name: PresetName,
    config: ConfigFile = None,
    overrides: Overrides = None,
    stage: StageOption = Stage.pretrain,
    seq_len: SeqLenOption = None,
    mfu: MfuOption = PLANNING_MFU,
    as_json: AsJson = False,
) -> None:
    """Parameters, FLOPs per token, per-GPU memory and training time of a preset."""
    from llamaops.platform.config import load_preset

    preset = load_preset(name, config, overrides or [])  # before sizing pulls in torch: bad input fails fast
    from llamaops.platform.model.sizing import size_preset

    report = size_preset(preset, stage.value, seq_len, mfu).to_dict()
    typer.echo(json.dumps(report, indent=2) if as_json else _format_report(report))


@app.command("serve-plan")
def serve_plan(
    name: PresetName,
    config: ConfigFile = None,
    overrides: Overrides = None,
    tensor_parallel: Annotated[int | None, typer.Option(min=1, help="GPUs the model is split over (default: the preset's deploy.tensor_parallel).", show_default=False)] = None,
    batch: Annotated[int, typer.Option(min=1, help="Requests decoded together.")] = 8,
    context: Annotated[int, typer.Option(min=1, help="Tokens of each request, prompt and reply (at most the model's context).")] = 8192,
    gpu_gib: Annotated[float, typer.Option(min=1, help="Memory of one GPU, GiB.")] = 80.0,
    as_json: AsJson = False,
) -> None:
    """Per-GPU memory to serve a preset's model: weights, KV cache and logits, in bf16 and with FP8
    feed-forward weights (`serve --quantization fp8`), and the KV cache tokens left free."""
    from llamaops.platform.config import load_preset

    preset = load_preset(name, config, overrides or [])
    from llamaops.platform.serve.plan import GIB, RUNTIME_RESERVE_BYTES, serving_fits
    from llamaops.platform.serve.tensor_parallel import check_splits

    cfg = preset.model
    tp = tensor_parallel or preset.deploy.tensor_parallel
    check_splits(cfg, tp)
    fits = serving_fits(cfg, tp, batch, min(context, cfg.max_seq_len), round(gpu_gib * GIB))
    if as_json:
        typer.echo(json.dumps([{"weights": f.weights, **f.memory.to_dict(), "fits": f.fits,
                                "kv_tokens_free": f.kv_tokens_free} for f in fits], indent=2))
        return
    m = fits[0].memory
    typer.echo(f"{preset.name}: TP {tp}, {m.rows} requests x {m.context:,} tokens, {gpu_gib:g} GiB GPUs "
               f"({RUNTIME_RESERVE_BYTES / GIB:g} GiB of each held back for CUDA, NCCL and activations)")
    for f in fits:
        m = f.memory
        typer.echo(f"  {f.weights:<5} weights {m.weights_bytes / GIB:6.1f} GiB + KV {m.kv_cache_bytes / GIB:6.1f} GiB "
                   f"+ logits {m.logits_bytes / GIB:4.2f} GiB = {m.total_bytes / GIB:6.1f} GiB per GPU: "
                   f"{'fits' if f.fits else 'DOES NOT FIT'}; room for {f.kv_tokens_free:,} tokens of KV cache")


@app.command("import-hf")
def import_hf(
    src: Annotated[Path, typer.Argument(help="Hugging Face model directory (config.json + safetensors).")],
    dst: Annotated[Path, typer.Argument(help="New llamaops checkpoint directory.")],
    overwrite: Overwrite = False,
) -> None:
    """Convert a Hugging Face Llama checkpoint into a llamaops checkpoint."""
    from llamaops.platform.model.hf import import_hf as convert

    typer.echo(convert(src, dst, overwrite=overwrite))


class HfDtype(str, Enum):
    bfloat16 = "bfloat16"
    float32 = "float32"


@app.command("export-hf")
def export_hf(
    src: Annotated[str, typer.Argument(help=f"The llamaops model: {MODEL_REFERENCE_HELP}.", show_default=False)],
    dst: Annotated[Path, typer.Argument(help="New Hugging Face model directory.")],
    dtype: Annotated[HfDtype, typer.Option(
        help="Weights written: bfloat16 (how Llama is published; half an fp32 model's bytes) or float32 (exact).")
    ] = HfDtype.bfloat16,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI for models:/ references.")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Convert a llamaops model into a Hugging Face Llama checkpoint; prints where, and in which dtype."""
    import torch

    from llamaops.platform.model.hf import export_hf as convert
    from llamaops.platform.tracking.model_reference import model_directory

    with model_directory(src, tracking_uri) as directory:
        written = convert(directory, dst, dtype=getattr(torch, dtype.value), overwrite=overwrite)
    typer.echo(f"{written} ({dtype.value} weights)")


@app.command("seal")
def seal(
    directory: Annotated[Path, typer.Argument(help="llamaops model directory whose files you trust.")],
) -> None:
    """Write the SHA-256 manifest of a model directory that has none (written by an older llamaops)."""
    from llamaops.platform.model.checkpoint import seal_model_directory

    typer.echo(seal_model_directory(directory))


@app.command("average")
def average(
    models: Annotated[list[str], typer.Argument(help=f"Two or more models: {MODEL_REFERENCE_HELP}.")],
    output: Annotated[str, typer.Option("--output", help="New artifact path or URI for the averaged model.")],
    weights: Annotated[str | None, typer.Option(help="Comma-separated positive weights, one per model.")] = None,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI for models:/ references.")] = None,
) -> None:
    """Average the weights of models of one config (Llama 3 averages RM, SFT and DPO runs)."""
    from llamaops.platform.align.averaging import average_models
    from llamaops.platform.tracking.model_reference import model_source

    def uri(text: str) -> str:
        return text if "://" in text else Path(text).resolve().as_uri()

    try:
        parsed = [float(w) for w in weights.split(",")] if weights else None
    except ValueError:
        raise typer.BadParameter(f"'{weights}' is not a comma-separated list of numbers", param_hint="--weights") from None
    typer.echo(average_models([uri(model_source(m, tracking_uri)) for m in models], uri(output), parsed))


def _format_report(r: dict) -> str:
    gib = 2**30
    parts, memory, layout = r["parameters_breakdown"], r["memory_breakdown"], r["layout"]
    lines = [
        f"preset            {r['preset']} ({r['stage']}, seq_len {r['seq_len']:,})",
        f"parameters        {r['parameters']:>19,}  ({r['parameters'] / 1e9:.2f}B)",
        *(f"  {part:<16}{count:>19,}" for part, count in parts.items()),
        f"flops/token       {r['flops_per_token']:>19.4g}  (training: 6N + attention)",
        f"layout            TP {layout['tp']} x CP {layout['cp']} x PP {layout['pp']} x DP {layout['dp']}"
        f" = {layout['world_size']:,} GPUs, {layout['param_dtype']} params,"
        f" activation checkpointing {layout['activation_checkpointing']}",
        f"memory per GPU    {r['memory_per_gpu_bytes'] / gib:>15.1f} GiB  of {r['accelerator_memory_bytes'] / gib:.1f} GiB:"
        f" {'fits' if r['fits'] else 'DOES NOT FIT'}",
        *(
            f"  {kind.removesuffix('_bytes'):<16}{memory[kind] / gib:>15.1f} GiB"
            for kind in ("parameters_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes")
        ),
        f"  busiest stage   {memory['stage']:>19}  ({memory['stage_layers']} layers,"
        f" micro-batches in flight: {memory['micro_batches_in_flight']})",
        f"training time     {_duration(r['training_days']):>19}  ({_amount(r['total_tokens'])} tokens at {r['mfu']:.0%} MFU)",
    ]
    return "\n".join(lines)


def _duration(days: float) -> str:
    if days >= 1:
        return f"{days:.1f} days"
    return f"{days * 24:.1f} hours" if days * 24 >= 1 else f"{days * 24 * 60:.1f} minutes"


def _amount(count: int) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= scale:
            return f"{count / scale:.3g}{suffix}"
    return str(count)


@app.command("list")
def list_models(
    name: Annotated[str | None, typer.Argument(help="Only this registered model.", show_default=False)] = None,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else local).")] = None,
    as_json: AsJson = False,
) -> None:
    """Registered models: each version, its aliases, its artifact and the gated metrics it was registered with."""
    from dataclasses import asdict

    from llamaops.platform.tracking.registry import list_versions

    rows = list_versions(tracking_uri, name)
    if as_json:
        typer.echo(json.dumps([asdict(row) for row in rows], indent=2))
        return
    if not rows:
        typer.echo("no registered models")
        return
    for row in rows:
        metrics = "  ".join(f"{metric}={value:.4g}" for metric, value in row.metrics.items()) or "-"
        typer.echo(f"models:/{row.name}/{row.version:<4} {','.join(row.aliases) or '-':<22} {row.source}\n    {metrics}")
