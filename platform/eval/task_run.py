"""`llamaops eval run`: validate every task, load the model, evaluate, compare, judge the gates, report.

Every input (task names and files, gate specs, the model directory, the baseline to compare with)
is checked before the model runs, so a mistake costs no compute. The report goes to
OUTPUT/report.json and report.md when an output directory is given, and to MLflow (metrics plus
both files) when tracking is asked for.
"""
import contextlib
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .baseline import resolve_baseline
from .compare import compare_results, delta_metrics, judge_drops
from .errors import EvalInputError
from .evaluate import json_safe
from .gate import gate_report, judge_thresholds, parse_threshold
from .harness import HEADLINE, METRICS, evaluate_task, load_eval_model, markdown_report, results_report
from .tasks import load_task

EXPERIMENT = "llamaops-eval"


def run_tasks(
    model: str,
    tasks: list[str],
    gates: list[str] | None = None,
    output_dir: Path | None = None,
    with_items: bool = False,
    track: bool = False,
    tracking_uri: str | None = None,
    compare: str | None = None,
    compare_optional: bool = False,
    max_drop: float | None = None,
) -> dict[str, Any]:
    from llamaops.platform.tokenizer import load_tokenizer

    specs = [load_task(name) for name in tasks]
    if len({s.name for s in specs}) != len(specs):
        raise EvalInputError(f"task names repeat in {tasks}; give each task once")
    if max_drop is not None and compare is None:
        raise EvalInputError("--max-drop needs --compare (the model whose metrics may not drop)")
    thresholds = [parse_threshold(g) for g in gates or []]
    baseline = resolve_baseline(compare, tracking_uri, compare_optional) if compare else None
    measurable = {f"{s.name}.{m}" for s in specs for m in METRICS[s.kind]}
    if baseline is not None and baseline.source is not None:
        measurable |= {f"{s.name}.{m}.{part}" for s in specs for m in HEADLINE[s.kind]
                       for part in ("baseline", "delta", "delta_stderr")}
    judge_thresholds(dict.fromkeys(measurable, 0.0), thresholds)  # names only
    tokenizer = load_tokenizer()
    candidate = load_eval_model(model, tracking_uri)

    started = time.perf_counter()
    results = [evaluate_task(candidate, tokenizer, spec) for spec in specs]
    flat = {f"{r.task}.{name}": value for r in results for name, value in r.metrics.items()}
    verdicts, compared = [], None
    if baseline is not None and baseline.source is not None:
        baseline_model = load_eval_model(baseline.source)
        comparison = compare_results(results, [evaluate_task(baseline_model, tokenizer, s) for s in specs])
        flat |= delta_metrics(comparison)
        compared = {"baseline": baseline.reference, "source": baseline.source,
                    "tasks": {task: {m: asdict(d) for m, d in deltas.items()} for task, deltas in comparison.items()}}
        if max_drop is not None:
            verdicts += judge_drops(comparison, max_drop)
    elif baseline is not None:
        compared = {"baseline": baseline.reference, "skipped": baseline.missing}
    verdicts = judge_thresholds(flat, thresholds) + verdicts
    gate = gate_report(verdicts) if verdicts else None
    report = results_report(model, results, gate, with_items)
    if compared is not None:
        report["compare"] = compared
    report = json_safe(report)
    report["seconds"] = round(time.perf_counter() - started, 3)
    markdown = markdown_report(report)

    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        (output_dir / "report.md").write_text(markdown)
    if track:
        report["mlflow_run_id"] = _log_to_mlflow(tracking_uri, model, flat, report, markdown)
    return report


def _log_to_mlflow(tracking_uri: str | None, model: str, metrics: dict[str, float], report: dict, markdown: str) -> str:
    from llamaops.platform.tracking import PipelineTracker

    params = {"model": model, "tasks": ",".join(report["tasks"])}
    if "compare" in report:
        params["compare"] = report["compare"]["baseline"]
    # MLflow prints "View run ..." links to stdout on finishing a run; stdout is for the report.
    with contextlib.redirect_stdout(sys.stderr), PipelineTracker(tracking_uri, EXPERIMENT, f"eval {Path(model).name}", preset_name="-") as run:
        run.log_params(params)
        run.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
        run.log_report("report", report)
        run.log_text("report.md", markdown)
        return run.run_id
