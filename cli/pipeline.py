"""`llamaops pipeline`: compile the lifecycle pipeline, run it locally, list presets' steps and runs."""
import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from .eval import GATE_FAILED
from .presets import ConfigFile, Overrides, PresetName
from .run_display import number, run_view

app = typer.Typer(help="The lifecycle pipeline (Kubeflow Pipelines v2).", no_args_is_help=True)


ClusterOption = Annotated[Path | None, typer.Option(
    "--cluster", dir_okay=False,
    help="The cluster contract (cluster.json of the chart's ConfigMap llamaops-cluster); default: the one in "
         "--namespace when the cluster is reachable, else the chart's defaults.")]


class MissingTarget(ValueError):
    """`submit` needs --local, --host or --dry-run."""


@app.command("submit")
def submit(
    name: PresetName,
    local: Annotated[bool, typer.Option("--local", help="Run on this machine with KFP's local runner.")] = False,
    host: Annotated[str | None, typer.Option("--host", help="KFP API server URL, e.g. https://kfp.example.com/pipeline.")] = None,
    token: Annotated[str | None, typer.Option("--token", help="Bearer token for the KFP API.", envvar="KFP_TOKEN")] = None,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="File holding the bearer token.", dir_okay=False)] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", help="Kubeflow profile namespace of the run and its RayJobs.")] = None,
    experiment: Annotated[str, typer.Option("--experiment", help="KFP experiment to file the run under.")] = "llamaops",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print every manifest (pipeline spec, RayJobs); no cluster needed.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="--local: stream every step's log lines too.")] = False,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue local run RUN; finished steps are skipped.")] = None,
    config: ConfigFile = None,
    overrides: Overrides = None,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI.")] = None,
    artifact_root: Annotated[
        str | None, typer.Option("--artifact-root", help="Where artifacts go: file:///dir or s3://bucket/prefix.")
    ] = None,
    cluster: ClusterOption = None,
) -> None:
    """Run the whole lifecycle of a preset: data -> ... -> eval -> register -> deploy."""
    if dry_run or host:
        _submit_remote(name, config, overrides, host, token, token_file, namespace, experiment, dry_run,
                       tracking_uri, artifact_root, cluster)
        return
    if not local:
        raise MissingTarget("say where to run: --local, --host URL (Kubeflow Pipelines) or --dry-run")
    from llamaops.pipelines.local import log_path, new_run_id, submit_local
    from llamaops.platform.config import load_preset

    preset = load_preset(name, config, overrides or [])
    run_id = resume or new_run_id(preset)
    view = run_view(sys.stdout, f"run {run_id}: each step's output goes to {log_path(run_id).parent / 'steps'}",
                    verbose, log_path(run_id).parent)
    try:
        result = submit_local(preset, run_id=None if resume else run_id, resume=resume, tracking_uri=tracking_uri,
                              artifact_root=artifact_root, progress=view)
    finally:
        view.close()
    record = result.record
    typer.echo(f"run {record.run_id} {record.status} in {record.ended_at - record.started_at:.0f}s")
    typer.echo(f"MLflow run {record.mlflow_run_id} at {result.tracking_uri}"
               + ("" if result.tracking_uri.startswith("http") else
                  f"; browse it: mlflow ui --backend-store-uri {result.tracking_uri}"))
    metrics = result.eval_summary.get("metrics", {})
    if metrics:
        shown = ", ".join(f"{key} {value:.4g}" for key, value in metrics.items() if isinstance(value, (int, float)))
        typer.echo(f"eval: {shown}")
        typer.echo(f"eval report: {result.eval_summary['report_uri']}")
    if result.report:
        typer.echo(f"run report: {result.report}")
    registration = result.registration
    if registration:
        typer.echo(f"model {registration['model_name']} version {registration['version']} "
                   f"aliases {', '.join(registration['aliases'])}")
        if registration.get("serve_command"):
            typer.echo(f"deploy: {registration['serve_command']}")
        else:
            typer.echo(f"not promoted: {_refusal(registration, result.eval_summary.get('gate', {}))}", err=True)
            raise typer.Exit(GATE_FAILED)


def _refusal(registration: dict, gate: dict) -> str:
    """Why the gate refused promotion, in one line: each failed threshold with its value."""
    failed = [f"{v['metric']} {number(v['value'])} (needs {v['comparison']} {number(v['threshold'])})"
              for v in gate.get("verdicts", []) if not v.get("passed")]
    if failed:
        return "the eval gate failed on " + ", ".join(failed)
    names = registration.get("failed_thresholds") or ["the comparison with the production model"]
    return "the gate failed on " + ", ".join(names)


def _submit_remote(name, config, overrides, host, token, token_file, namespace, experiment, dry_run,
                   tracking_uri, artifact_root, cluster_file) -> None:
    from llamaops.pipelines.cluster_objects import contract_for_run
    from llamaops.pipelines.local import new_run_id
    from llamaops.pipelines.submit import KfpTarget, SubmitError, check_no_credentials, probe, read_token, submit_to_kfp
    from llamaops.platform.config import load_preset
    from llamaops.platform.config.cluster import load_contract

    check_no_credentials(tracking_uri or "")
    target = None
    if host and not dry_run:
        target = KfpTarget(host, read_token(token, token_file), namespace)
        probe(target)  # fail fast, before the preset is loaded and compiled
    preset = load_preset(name, config, overrides or [])
    run_id = new_run_id(preset)
    contract = load_contract(cluster_file) if cluster_file else None
    if dry_run:
        import yaml

        from llamaops.pipelines.dry_run import dry_run_manifests
        from llamaops.pipelines.lifecycle import YAML_DUMPER

        docs = dry_run_manifests(preset, run_id, namespace or "default", artifact_root or "", tracking_uri or "",
                                 contract)
        typer.echo(yaml.dump_all(docs, Dumper=YAML_DUMPER, sort_keys=False), nl=False)
        return
    contract, missing = contract_for_run(contract, namespace)
    if missing:
        raise SubmitError(f"namespace {namespace} lacks {', '.join(missing)}, which the run's pods read; install "
                          f"the chart with {namespace} in pipelines.namespaces, or create them")
    kfp_run_id, url = submit_to_kfp(preset, target, experiment, run_id, artifact_root or "", tracking_uri or "",
                                    contract)
    typer.echo(f"run {kfp_run_id} submitted to experiment {experiment}")
    typer.echo(url)


def _target(host: str, token: str | None, token_file: Path | None, namespace: str | None):
    from llamaops.pipelines.submit import KfpTarget, read_token

    return KfpTarget(host, read_token(token, token_file), namespace)


RemoteHostOption = Annotated[str | None, typer.Option(
    "--host", help="KFP API server URL of a remote run; without it, RUN is a local run.")]
TokenOption = Annotated[str | None, typer.Option("--token", help="Bearer token.", envvar="KFP_TOKEN")]
TokenFileOption = Annotated[Path | None, typer.Option("--token-file", help="File holding the bearer token.", dir_okay=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _echo_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@app.command("status")
def status(run: str, host: RemoteHostOption = None, token: TokenOption = None, token_file: TokenFileOption = None,
           as_json: JsonOption = False) -> None:
    """The state of run RUN and of each of its steps: a local run, or with --host a KFP run."""
    if host:
        from llamaops.pipelines.submit import run_state, task_rows

        state = run_state(_target(host, token, token_file, None), run)
        error = state.error.message if getattr(state, "error", None) and state.error.message else ""
        if as_json:
            _echo_json({"run_id": state.run_id, "state": state.state or "UNKNOWN", "error": error,
                        "tasks": task_rows(state)})
            return
        typer.echo(f"run {state.run_id} {state.state or 'UNKNOWN'}" + (f": {error}" if error else ""))
        return
    from llamaops.pipelines.run_view import run_status

    view = run_status(run)
    if as_json:
        _echo_json(view)
        return
    version = f", model version {view['model_version']}" if view["model_version"] else ""
    typer.echo(f"run {view['run_id']} ({view['preset']}) {view['status']} after {view['seconds']:.0f}s{version}"
               + (f": {view['error']}" if view["error"] else ""))
    for step in view["steps"]:
        took = f"{step['seconds']:.1f}s" if step["status"] != "started" else ""
        typer.echo(f"  {step['step']:<22} {step['status']:<9} {took:>8}"
                   + (f"  {step['error']}" if step["error"] else ""))


@app.command("logs")
def logs(run: str, step: Annotated[str | None, typer.Argument(help="Only this step's log (local runs).")] = None,
         host: RemoteHostOption = None, token: TokenOption = None, token_file: TokenFileOption = None) -> None:
    """A local run's step logs (every step's, or STEP's); with --host, each task of the KFP run with its
    state, pod and error (pod logs: kubectl logs POD)."""
    if host:
        from llamaops.pipelines.submit import run_state, task_lines

        lines = task_lines(run_state(_target(host, token, token_file, None), run))
        if step:
            lines = [line for line in lines if line.split("  ", 1)[0] == step]
        typer.echo("\n".join(lines) if lines else f"run {run}: no {'task ' + step if step else 'tasks'} reported yet")
        return
    from llamaops.pipelines.run_view import step_log, step_states

    if step:
        typer.echo(step_log(run, step).read_text(encoding="utf-8", errors="replace"), nl=False)
        return
    states = step_states(run)
    for state in states:
        typer.echo(f"==== {state.step}: {state.log}" + ("" if state.log.is_file() else " (none written)"))
        if state.log.is_file():
            typer.echo(state.log.read_text(encoding="utf-8", errors="replace"), nl=False)
    if not states:
        typer.echo(f"run {run}: no step has started yet")


@app.command("compile")
def compile_(
    name: PresetName,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the KFP IR YAML.", dir_okay=False)],
    config: ConfigFile = None,
    overrides: Overrides = None,
    cluster: ClusterOption = None,
) -> None:
    """Compile the preset's pipeline to KFP IR YAML for a Kubeflow Pipelines server."""
    from llamaops.pipelines.lifecycle import compile_pipeline
    from llamaops.platform.config import load_preset
    from llamaops.platform.config.cluster import load_contract

    typer.echo(compile_pipeline(load_preset(name, config, overrides or []), output, load_contract(cluster)))


@app.command("list")
def list_pipelines(as_json: JsonOption = False) -> None:
    """Every preset and the steps its pipeline runs."""
    from llamaops.pipelines.resources import uses_gpus
    from llamaops.pipelines.stages import step_names
    from llamaops.platform.config import PRESETS, load_preset

    rows = []
    for preset_name in PRESETS:
        preset = load_preset(preset_name)
        where = f"KubeRay on {preset.resources.node_pool}" if uses_gpus(preset) else "local Ray"
        rows.append({"preset": preset_name, "steps": step_names(preset), "training": where})
    if as_json:
        _echo_json(rows)
        return
    for row in rows:
        typer.echo(f"{row['preset']:<10} {' -> '.join(row['steps'])}  (training: {row['training']})")


@app.command("runs")
def runs(as_json: JsonOption = False) -> None:
    """Local runs, oldest first, with their status and finished steps."""
    from dataclasses import asdict

    from llamaops.pipelines.runs import list_runs

    records = list_runs()
    if as_json:
        _echo_json([{key: value for key, value in {**asdict(record), "status": record.shown_status}.items()
                    if key != "preset_json"} for record in records])
        return
    if not records:
        typer.echo("no local runs")
        return
    for record in records:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.started_at))
        version = f"  model v{record.model_version}" if record.model_version else ""
        typer.echo(f"{record.run_id}  {record.shown_status:<11} {started}  "
                   f"done: {','.join(record.stages_done) or '-'}{version}")
