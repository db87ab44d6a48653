"""Long-context extension: continue the pretrained model at each longer length of the preset in
turn, each stage gated on recovering short-context loss (train/context_gate.py).

The model's Llama 3.1 RoPE scaling (in its config) is what lets positions beyond the pretraining
length work; it is one fixed frequency map, the same in every stage, so a stage changes only the
sequence length the weights adapt to (never above model.max_seq_len, the RoPE table's length).

Each stage runs as one Ray run that stops at the stage's end (a checkpoint step); the driver then
loads that checkpoint and checks the gate. A stage that has not recovered gets
`check_every_extra_steps` more steps at its length (recorded, so the plan stays a function of the
config and the record), up to `max_extra_steps_per_stage`, then the stage fails in one line.
"""
from collections.abc import Sequence
from dataclasses import replace

from llamaops.platform.config.preset import Preset
from llamaops.platform.model.checkpoint import load_model
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult
from llamaops.platform.store import fetched

from .checkpointing import checkpoints_uri, latest_checkpoint, load_checkpoint_model
from .context_gate import (
    GateRecord,
    ShortContextNotRecovered,
    check_gate_inputs,
    failure_line,
    load_record,
    new_record,
    needle_accuracy_at,
    passes,
    save_record,
    short_context_loss,
    stage_summary,
)
from .errors import TrainingConfigError
from .loop import TrainingJob
from .schedule import long_context_plan, long_context_stages
from .stage_runner import check_inputs, publish_trained, run_job, stage_job

STAGE = "long_context"


def long_context_job(
    preset: Preset, data_uri: str, init_model_uri: str, output_uri: str,
    extra_steps: Sequence[int] = (), checked_steps: Sequence[int] = (),
) -> TrainingJob:
    """The job of the plan with the gate's extra steps; besides the regular checkpoints, one at
    every stage end and every step the gate has checked (so a resumed run finds them)."""
    cfg = preset.long_context
    job = stage_job(preset, cfg.layout, long_context_plan(cfg, extra_steps), data_uri, output_uri,
                    cfg.checkpoint_every_steps, preset.pretrain.keep_checkpoints, init_model_uri)
    ends = {stage.end for stage in long_context_stages(cfg, extra_steps)}
    return replace(job, checkpoint_steps=sorted({*job.checkpoint_steps, *ends, *checked_steps}))


def run_long_context(
    preset: Preset, data_uri: str, init_model_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()
) -> StageResult:
    gate = preset.long_context.gate
    root = checkpoints_uri(output_uri)
    check_inputs(preset, long_context_job(preset, data_uri, init_model_uri, output_uri), output_uri, STAGE)
    with fetched(data_uri) as data_dir:
        stream = check_gate_inputs(preset, data_dir)
        record = _record(preset, root, init_model_uri, stream)
        resumed_from = latest_checkpoint(root, _job(preset, data_uri, init_model_uri, output_uri, record).checkpoint_steps)
        for index in range(len(preset.long_context.seq_lens)):
            while True:
                stage = long_context_stages(preset.long_context, record.extra_steps)[index]
                check = record.check_at(stage.end)
                if check is None:
                    check = _train_and_check(preset, data_uri, init_model_uri, output_uri, record, index, stream)
                if passes(check, record.baseline_loss, preset):
                    break
                if record.extra_steps[index] >= gate.max_extra_steps_per_stage:
                    metrics.log_metrics(_gate_figures(record, preset)[0], step=stage.end)  # the failure's figures too
                    raise ShortContextNotRecovered(failure_line(index, stage, record, preset, root))
                more = min(gate.check_every_extra_steps, gate.max_extra_steps_per_stage - record.extra_steps[index])
                record.extra_steps[index] += more
                save_record(root, record)
    # Every stage has been trained to its end and checked: the last one's end is the plan's.
    result = publish_trained(preset, _job(preset, data_uri, init_model_uri, output_uri, record), output_uri,
                             metrics, resumed_from)
    return _with_gate(result, record, preset, metrics)


def _job(preset: Preset, data_uri: str, init_model_uri: str, output_uri: str, record: GateRecord) -> TrainingJob:
    checked = [check["step"] for check in record.checks]
    return long_context_job(preset, data_uri, init_model_uri, output_uri, record.extra_steps, checked)


def _record(preset: Preset, root: str, init_model_uri: str, stream) -> GateRecord:
    """The recorded gate of an interrupted run, or a new one with the input model's short-context loss."""
    stages = long_context_stages(preset.long_context)
    record = load_record(root)
    if record is not None:
        if not record.matches(new_record(preset, stages, record.baseline_loss)):
            raise TrainingConfigError(
                f"long_context: the checkpoints at {root} were gated with other stage or gate settings"
                f" (short context {record.seq_len} over {record.windows} windows, stages {record.stage_lens}"
                f" of {record.stage_steps} steps each); use those settings to resume, or a new output URI"
            )
        return record
    with fetched(init_model_uri) as model_dir:
        baseline = short_context_loss(preset, load_model(model_dir), stream)
    record = new_record(preset, stages, baseline)
    save_record(root, record)
    return record


def _train_and_check(
    preset: Preset, data_uri: str, init_model_uri: str, output_uri: str, record: GateRecord, index: int, stream
) -> dict:
    """Train up to stage `index`'s end (from the latest checkpoint), then record its short-context
    loss and needles found."""
    job = _job(preset, data_uri, init_model_uri, output_uri, record)
    stage = long_context_stages(preset.long_context, record.extra_steps)[index]
    latest = latest_checkpoint(job.checkpoint_root, job.checkpoint_steps)
    if latest is not None and latest > stage.end:
        raise TrainingConfigError(
            f"long_context: the checkpoints at {job.checkpoint_root} reach step {latest}, past stage"
            f" {index + 1}'s end {stage.end} without its gate check; use a new output URI"
        )
    run_job(preset, replace(job, stop_after_step=stage.end), STAGE)
    model = load_checkpoint_model(job.checkpoint_root, stage.end)
    check = {"stage": index, "seq_len": stage.seq_len, "step": stage.end,
             "short_loss": short_context_loss(preset, model, stream),
             "needle_accuracy": needle_accuracy_at(preset, model, stage.seq_len)}
    record.checks.append(check)
    save_record(job.checkpoint_root, record)
    return check


def _gate_figures(record: GateRecord, preset: Preset) -> tuple[dict[str, float], list[dict]]:
    """The checked stages' summaries and their flat metrics, `long_context.gate.<seq_len>.<name>`."""
    summary = stage_summary(record, long_context_stages(preset.long_context, record.extra_steps), preset)
    figures = {"long_context.gate.baseline_short_loss": record.baseline_loss}
    for entry in summary:
        prefix = f"long_context.gate.{entry['seq_len']}"
        figures |= {f"{prefix}.short_loss": entry["short_loss"], f"{prefix}.loss_increase": entry["loss_increase"],
                    f"{prefix}.recovered": float(entry["recovered"]), f"{prefix}.passed": float(entry["passed"]),
                    f"{prefix}.extra_steps": entry["extra_steps"]}
        if entry["needle_accuracy"] is not None:
            figures[f"{prefix}.needle_accuracy"] = entry["needle_accuracy"]
    return figures, summary


def _with_gate(result: StageResult, record: GateRecord, preset: Preset, metrics: MetricsSink) -> StageResult:
    """The gate's figures in the report and the metrics."""
    gate = preset.long_context.gate
    figures, summary = _gate_figures(record, preset)
    metrics.log_metrics(figures, step=result.report["steps"])
    result.metrics.update(figures)
    result.report["gate"] = {
        "short_context_seq_len": record.seq_len,
        "windows": record.windows,
        "max_short_context_loss_increase": gate.max_short_context_loss_increase,
        "needle_depths": record.needle_depths,
        "needle_must_pass": gate.needle_must_pass,
        "baseline_short_loss": record.baseline_loss,
        "stages": summary,
    }
    return result
