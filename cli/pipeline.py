"""`llamaops pipeline`: compile the lifecycle pipeline, run it locally, list presets' steps and runs."""
import time
from pathlib import Path
from typing import Annotated

import typer

from .presets import ConfigFile, Overrides, PresetName

app = typer.Typer(help="The lifecycle pipeline (Kubeflow Pipelines v2).", no_args_is_help=True)


class HostSubmitUnsupported(ValueError):
    """Submitting to a KFP API server is not implemented yet."""


def _print_event(event) -> None:
    if event.status == "started":
        typer.echo(f"[{time.strftime('%H:%M:%S')}] {event.step} ...")
    else:
        typer.echo(f"[{time.strftime('%H:%M:%S')}] {event.step} {event.status} in {event.seconds:.1f}s"
                   + (f": {event.detail['error']}" if event.status == "failed" else ""))


@app.command("submit")
def submit(
    name: PresetName,
    local: Annotated[bool, typer.Option("--local", help="Run on this machine with KFP's local runner.")] = False,
    host: Annotated[str | None, typer.Option("--host", help="KFP API server URL (not supported yet).")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue local run RUN; finished steps are skipped.")] = None,
    config: ConfigFile = None,
    overrides: Overrides = None,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI.")] = None,
    artifact_root: Annotated[
        str | None, typer.Option("--artifact-root", help="Where artifacts go: file:///dir or s3://bucket/prefix.")
    ] = None,
) -> None:
    """Run the whole lifecycle of a preset: data -> ... -> eval -> register."""
    if not local:
        raise HostSubmitUnsupported(
            f"submitting to a KFP host{f' ({host})' if host else ''} is not supported yet; "
            "use --local, or `llamaops pipeline compile` and upload the YAML"
        )
    from llamaops.pipelines.local import submit_local
    from llamaops.platform.config import load_preset

    preset = load_preset(name, config, overrides or [])
    result = submit_local(preset, resume=resume, tracking_uri=tracking_uri, artifact_root=artifact_root,
                          progress=_print_event)
    record = result.record
    typer.echo(f"run {record.run_id} {record.status} in {record.ended_at - record.started_at:.0f}s")
    typer.echo(f"MLflow run {record.mlflow_run_id} at {result.tracking_uri}")
    metrics = result.eval_summary.get("metrics", {})
    if metrics:
        shown = ", ".join(f"{key} {value:.4g}" for key, value in metrics.items() if isinstance(value, (int, float)))
        typer.echo(f"eval: {shown}")
    registration = result.registration
    if registration:
        typer.echo(f"model {registration['model_name']} version {registration['version']} "
                   f"aliases {', '.join(registration['aliases'])}")
        if registration.get("serve_command"):
            typer.echo(f"deploy: {registration['serve_command']}")
        else:
            typer.echo(f"not promoted: gate failed on {', '.join(registration['failed_thresholds'])}")


@app.command("compile")
def compile_(
    name: PresetName,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the KFP IR YAML.", dir_okay=False)],
    config: ConfigFile = None,
    overrides: Overrides = None,
) -> None:
    """Compile the preset's pipeline to KFP IR YAML for a Kubeflow Pipelines server."""
    from llamaops.pipelines.lifecycle import compile_pipeline
    from llamaops.platform.config import load_preset

    typer.echo(compile_pipeline(load_preset(name, config, overrides or []), output))


@app.command("list")
def list_pipelines() -> None:
    """Every preset and the steps its pipeline runs."""
    from llamaops.pipelines.resources import uses_gpus
    from llamaops.pipelines.stages import STEP_NAMES
    from llamaops.platform.config import PRESETS, load_preset

    for preset_name in PRESETS:
        preset = load_preset(preset_name)
        where = f"KubeRay on {preset.resources.node_pool}" if uses_gpus(preset) else "local Ray"
        typer.echo(f"{preset_name:<10} {' -> '.join(STEP_NAMES)}  (training: {where})")


@app.command("runs")
def runs() -> None:
    """Local runs, oldest first, with their status and finished steps."""
    from llamaops.pipelines.runs import list_runs

    records = list_runs()
    if not records:
        typer.echo("no local runs")
        return
    for record in records:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.started_at))
        version = f"  model v{record.model_version}" if record.model_version else ""
        typer.echo(f"{record.run_id}  {record.shown_status:<11} {started}  "
                   f"done: {','.join(record.stages_done) or '-'}{version}")
