"""`llamaops data`: prepare pretraining shards from corpora, folders and object storage."""
import contextlib
import json
import os
from pathlib import Path
from typing import Annotated

import typer

from .presets import AsJson, ConfigFile

app = typer.Typer(help="Prepare pretraining data: clean, de-duplicate, filter, tokenize, pack.", no_args_is_help=True)


def _source_uri(value: str) -> str:
    """A corpus name or URI as given; a local path as its file:// URI."""
    if "://" in value:
        return value
    path = Path(value)
    return path.resolve().as_uri() if path.exists() or "/" in value or "." in value else value


def _data_override(override: str) -> str:
    return override if override.startswith("data.") else f"data.{override}"


@app.command("prep")
def prep(
    inputs: Annotated[
        list[str], typer.Argument(metavar="INPUT...", help="Folders, files, file:// or s3:// URIs, or corpus names.")
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="Where the shards go: a folder, file:// or s3:// URI.")],
    config: ConfigFile = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a data setting, e.g. min_chars=200 or data.languages=[en] (repeatable)."),
    ] = None,
    preset: Annotated[str, typer.Option("--preset", help="Preset whose data settings are the starting point.")] = "tiny",
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", min=1, help="Ray Data workers (1: in-process; default: data.workers).")
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", help="Also log the report to this MLflow tracking URI.")
    ] = None,
    parent_run_id: Annotated[
        str | None,
        typer.Option("--parent-run-id", help="Log as the `data` stage of this pipeline's MLflow run "
                                             "(on --tracking-uri, else MLFLOW_TRACKING_URI)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Run the data-prep steps on INPUT... and write train/validation shards to --output."""
    from llamaops.platform.config import ConfigError, load_preset
    from llamaops.platform.data.prep import prepare_data

    if parent_run_id and tracking_uri is None:
        tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or None  # a cluster pod's, from the platform ConfigMap
        if tracking_uri is None:
            raise ConfigError("--parent-run-id needs --tracking-uri (or MLFLOW_TRACKING_URI): the MLflow server "
                              "that holds that run")
    sources = json.dumps([_source_uri(value) for value in inputs])
    sets = [_data_override(o) for o in overrides or []] + [f"data.sources={sources}"]
    data = load_preset(preset, config, sets).data
    workers = workers or data.workers
    output_uri = output if "://" in output else Path(output).resolve().as_uri()
    if tracking_uri is None:
        result = prepare_data(data, output_uri, workers=workers)
    else:
        from llamaops.platform.tracking.runs import PipelineTracker

        # Inside a pipeline (the data step's RayJob) the stage joins the pipeline's run, which it does not end.
        pipeline_run = (
            contextlib.nullcontext(PipelineTracker.attach(tracking_uri, parent_run_id))
            if parent_run_id
            else PipelineTracker(tracking_uri, "data-prep", "data-prep", preset)
        )
        with pipeline_run as tracker, tracker.stage("data", params={"data": data.model_dump(mode="json")}) as run:
            result = prepare_data(data, output_uri, workers=workers)
            run.log_result(result)  # metrics, the report as a JSON artifact, the output URI
    report = result.report
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"{report['documents_in']} documents in, {report['documents_out']} out, {report['tokens_out']} tokens")
    for step in report["steps"]:
        removed = ", ".join(f"{reason} {counts['documents']}" for reason, counts in step["removed"].items())
        typer.echo(f"  {step['step']:<16} {step['in']['documents']:>8} -> {step['out']['documents']:<8} {removed}")
    typer.echo(f"shards: {output_uri}")
