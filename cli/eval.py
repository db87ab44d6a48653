"""`llamaops eval`: run evaluation tasks on a model, and list the built-in tasks."""
import json
from pathlib import Path
from typing import Annotated

import typer

from .presets import AsJson

app = typer.Typer(help="Evaluate models on log-likelihood tasks (lm-eval conventions).", no_args_is_help=True)

GATE_FAILED = 1


@app.command("run")
def run(
    model: Annotated[Path, typer.Argument(help="llamaops checkpoint or Hugging Face model directory.")],
    tasks: Annotated[str, typer.Option("--tasks", help="Comma-separated built-in task names or task YAML files.")],
    gate: Annotated[
        list[str] | None, typer.Option("--gate", help="METRIC>=VALUE or METRIC<=VALUE, e.g. mmlu_dev_de.acc>=0.3; repeatable.")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Write report.json and report.md here.")] = None,
    items: Annotated[bool, typer.Option("--items", help="Include per-item log-likelihoods in the report.")] = False,
    track: Annotated[bool, typer.Option("--track", help="Log metrics and the report to MLflow.")] = False,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI.")] = None,
    as_json: AsJson = False,
) -> None:
    """Evaluate MODEL on TASKS; exit 1 when a --gate fails."""
    names = [name.strip() for name in tasks.split(",") if name.strip()]
    if not names:
        raise typer.BadParameter("give at least one task, e.g. --tasks mmlu_dev_de", param_hint="--tasks")
    from llamaops.platform.eval.harness import markdown_report
    from llamaops.platform.eval.task_run import run_tasks

    report = run_tasks(model, names, gate, output, items, track, tracking_uri)
    typer.echo(json.dumps(report, indent=2, ensure_ascii=False) if as_json else markdown_report(report).rstrip())
    if "gate" in report and not report["gate"]["passed"]:
        raise typer.Exit(GATE_FAILED)


@app.command("tasks")
def tasks(as_json: AsJson = False) -> None:
    """The built-in tasks: name, kind and description."""
    from llamaops.platform.eval.tasks import builtin_tasks, load_task

    specs = [load_task(name) for name in builtin_tasks()]
    if as_json:
        typer.echo(json.dumps([{"name": s.name, "kind": s.kind, "description": s.description} for s in specs], indent=2))
        return
    for spec in specs:
        typer.echo(f"{spec.name:<16} {spec.kind:<16} {spec.description}")
