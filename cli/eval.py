"""`llamaops eval`: run evaluation tasks on a model, and list the built-in tasks."""
import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from llamaops.platform.tracking.model_reference import MODEL_REFERENCE_HELP

from .presets import AsJson

ModelArgument = Annotated[str, typer.Argument(help=f"The model: {MODEL_REFERENCE_HELP}.", show_default=False)]
TrackingUriOption = Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (models:/ references, --track).")]

app = typer.Typer(help="Evaluate models on multiple-choice and generation tasks (lm-eval conventions).", no_args_is_help=True)

GATE_FAILED = 1
SANDBOX_UNAVAILABLE = 3


@app.command("run")
def run(
    model: ModelArgument,
    tasks: Annotated[str, typer.Option("--tasks", help="Comma-separated built-in task names or task YAML files.")],
    gate: Annotated[
        list[str] | None, typer.Option("--gate", help="METRIC>=VALUE or METRIC<=VALUE, e.g. mmlu_dev_de.acc>=0.3; repeatable.")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Write report.json and report.md here.")] = None,
    items: Annotated[bool, typer.Option("--items", help="Include per-item log-likelihoods in the report.")] = False,
    track: Annotated[bool, typer.Option("--track", help="Log metrics and the report to MLflow.")] = False,
    tracking_uri: TrackingUriOption = None,
    compare: Annotated[str | None, typer.Option(
        "--compare", help="Also evaluate this model and report the deltas: models:/NAME@ALIAS, an artifact URI or a directory.")] = None,
    compare_optional: Annotated[bool, typer.Option(
        "--compare-optional", help="If the --compare registry model does not exist yet, evaluate without comparison.")] = False,
    max_drop: Annotated[float | None, typer.Option(
        "--max-drop", min=0.0, help="Gate: no task's headline metric may drop more than this below --compare's.")] = None,
    as_json: AsJson = False,
) -> None:
    """Evaluate MODEL on TASKS (optionally against a --compare model); exit 1 when a gate fails."""
    names = [name.strip() for name in tasks.split(",") if name.strip()]
    if not names:
        raise typer.BadParameter("give at least one task, e.g. --tasks mmlu_dev_de", param_hint="--tasks")
    from llamaops.platform.eval.harness import markdown_report
    from llamaops.platform.eval.task_run import run_tasks

    report = run_tasks(model, names, gate, output, items, track, tracking_uri, compare, compare_optional, max_drop)
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


def _numbers(text: str, kind: type, option: str) -> list:
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not a comma-separated list of numbers", param_hint=option) from None


class Sandbox(str, Enum):
    namespaces = "namespaces"
    pod = "pod"


@app.command("code")
def code(
    model: ModelArgument,
    problems: Annotated[int, typer.Option(min=1, max=164, help="First N HumanEval problems.")] = 164,
    samples: Annotated[int, typer.Option(min=1, help="Samples per problem (n).")] = 1,
    k: Annotated[str, typer.Option("--k", help="Comma-separated k of pass@k.")] = "1",
    temperature: Annotated[float, typer.Option(min=0.01, help="Sampling temperature.")] = 0.8,
    top_p: Annotated[float, typer.Option(min=0.01, max=1.0, help="Nucleus sampling mass.")] = 0.95,
    seed: int = 0,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 256,
    timeout: Annotated[float, typer.Option(min=0.1, help="Wall-clock seconds per program.")] = 10.0,
    sandbox: Annotated[Sandbox, typer.Option(
        help="namespaces: each program in its own namespaces here; pod: all in one code-sandbox pod of the cluster.")
    ] = Sandbox.namespaces,
    namespace: Annotated[str | None, typer.Option(
        help="--sandbox pod: its namespace (default: the current context's, else default).")] = None,
    image: Annotated[str | None, typer.Option(help="--sandbox pod: its image (default: this version's llamaops image).")] = None,
    tracking_uri: TrackingUriOption = None,
    as_json: AsJson = False,
) -> None:
    """HumanEval pass@k; every program runs in namespaces (own root, PID, network), or with --sandbox pod in a
    code-sandbox pod (no token, no network), with CPU, memory, process and time limits; exits 3 without a result
    where they cannot be run confined."""
    from llamaops.platform.eval.probes import run_code_eval
    from llamaops.platform.eval.sandbox import SandboxLimits, SandboxUnavailableError
    from llamaops.platform.eval.sandbox_pod import PodSandbox, SandboxPodError
    from llamaops.platform.serve.sampling import SamplingParams

    if sandbox is not Sandbox.pod and (namespace or image):
        raise typer.BadParameter("--namespace and --image choose the code-sandbox pod: give --sandbox pod too",
                                 param_hint="--sandbox")
    sampling = SamplingParams(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
    try:
        runner = PodSandbox(namespace, image) if sandbox is Sandbox.pod else None
        report = run_code_eval(model, problems, samples, _numbers(k, int, "--k"), sampling, max_new_tokens,
                               limits=SandboxLimits(wall_seconds=timeout), run_programs=runner, tracking_uri=tracking_uri)
    except (SandboxUnavailableError, SandboxPodError) as exc:  # the machine, not the user: its own status
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(SANDBOX_UNAVAILABLE) from None
    _print(report, as_json)


@app.command("needle")
def needle(
    model: ModelArgument,
    lengths: Annotated[str, typer.Option(help="Comma-separated prompt lengths in tokens.")] = "256,512,1024",
    depths: Annotated[str, typer.Option(help="Comma-separated needle depths in [0, 1].")] = "0,0.5,1",
    tracking_uri: TrackingUriOption = None,
    as_json: AsJson = False,
) -> None:
    """Needle in a haystack: retrieval accuracy at growing context lengths."""
    from llamaops.platform.eval.probes import run_needle

    _print(run_needle(model, _numbers(lengths, int, "--lengths"), _numbers(depths, float, "--depths"),
                      tracking_uri=tracking_uri), as_json)


def _print(report: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"{report['task']} on {report['model']}")
    for name, value in report["metrics"].items():
        typer.echo(f"  {name:<24} {value:.4f}" if isinstance(value, float) else f"  {name:<24} {value}")
