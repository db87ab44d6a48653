"""`llamaops eval run`: validate every task, load the model, evaluate, judge the gates, report.

Every input (task names and files, gate specs, the model directory) is checked before the model
runs, so a mistake costs no compute. The report goes to OUTPUT/report.json and report.md when an
output directory is given, and to MLflow (metrics plus both files) when tracking is asked for.
"""
import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from .errors import EvalInputError
from .evaluate import json_safe
from .gate import gate_report, judge_thresholds, parse_threshold
from .harness import METRICS, evaluate_task, load_eval_model, markdown_report, results_report
from .tasks import load_task

EXPERIMENT = "llamaops-eval"


def run_tasks(
    model_dir: Path,
    tasks: list[str],
    gates: list[str] | None = None,
    output_dir: Path | None = None,
    with_items: bool = False,
    track: bool = False,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    from llamaops.platform.tokenizer import load_tokenizer

    specs = [load_task(name) for name in tasks]
    if len({s.name for s in specs}) != len(specs):
        raise EvalInputError(f"task names repeat in {tasks}; give each task once")
    thresholds = [parse_threshold(g) for g in gates or []]
    judge_thresholds(dict.fromkeys((f"{s.name}.{m}" for s in specs for m in METRICS), 0.0), thresholds)  # names only
    tokenizer = load_tokenizer()
    model = load_eval_model(model_dir)

    started = time.perf_counter()
    results = [evaluate_task(model, tokenizer, spec) for spec in specs]
    flat = {f"{r.task}.{name}": value for r in results for name, value in r.metrics.items()}
    gate = gate_report(judge_thresholds(flat, thresholds)) if thresholds else None
    report = json_safe(results_report(str(model_dir), results, gate, with_items))
    report["seconds"] = round(time.perf_counter() - started, 3)
    markdown = markdown_report(report)

    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        (output_dir / "report.md").write_text(markdown)
    if track:
        report["mlflow_run_id"] = _log_to_mlflow(tracking_uri, str(model_dir), flat, report, markdown)
    return report


def _log_to_mlflow(tracking_uri: str | None, model: str, metrics: dict[str, float], report: dict, markdown: str) -> str:
    from llamaops.platform.tracking import PipelineTracker

    # MLflow prints "View run ..." links to stdout on finishing a run; stdout is for the report.
    with contextlib.redirect_stdout(sys.stderr), PipelineTracker(tracking_uri, EXPERIMENT, f"eval {Path(model).name}", preset_name="-") as run:
        run.log_params({"model": model, "tasks": ",".join(report["tasks"])})
        run.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
        run.log_report("report", report)
        run.log_text("report.md", markdown)
        return run.run_id

