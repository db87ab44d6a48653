"""Long-context extension: continue the pretrained model at each longer length of the preset in
turn, each stage gated on recovering short-context loss (train/context_gate.py).

The model's Llama 3.1 RoPE scaling (in its config) is what lets positions beyond the pretraining
length work; it is one fixed frequency map, the same in every stage, so a stage changes only the
sequence length the weights adapt to (never above model.max_seq_len, the RoPE table's length).

One Ray run trains through the stages while they pass: at each stage end (a checkpoint step) the
training workers measure the gate's figures on the model as the stage's layout shards it
(train/gate_checks.py), in the first run also the input model's before its first step, and go on
only if the stage passed, so a healthy extension forms its worker group and reads its input once.
The driver only reads the figures, decides and records, and never loads a model. A stage that has
not recovered gets `check_every_extra_steps` more steps at its length (recorded, so the plan stays
a function of the config and the record), up to `max_extra_steps_per_stage`, then the stage fails
in one line.
"""
from collections.abc import Sequence
from dataclasses import replace

from llamaops.platform.config.preset import Preset
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult
from llamaops.platform.store import fetched

from .checkpointing import checkpoints_uri, latest_checkpoint
from .context_gate import (
    GateRecord,
    ShortContextNotRecovered,
    check_gate_inputs,
    failure_line,
    gate_checks,
    load_record,
    new_record,
    passes,
    save_record,
    stage_summary,
)
from .errors import TrainingConfigError
from .gate_checks import load_figures
from .loop import TrainingJob
from .ray_runner import TrainingRunError
from .schedule import ContextStage, long_context_plan, long_context_stages
from .stage_runner import check_inputs, publish_trained, run_job, stage_job

STAGE = "long_context"


def long_context_job(
    preset: Preset, data_uri: str, init_model_uri: str, output_uri: str,
    extra_steps: Sequence[int] = (), checked_steps: Sequence[int] = (), gate_steps: Sequence[int] = (),
    baseline_loss: float | None = None,
) -> TrainingJob:
    """The job of the plan with the gate's extra steps; besides the regular checkpoints, one at
    every stage end and every step the gate has checked (so a resumed run finds them). The
    workers measure the gate at `gate_steps` (0: the input model) and end the run at the first
    stage end among them that fails the gate (against `baseline_loss`, or step 0's figures)."""
    cfg = preset.long_context
    job = stage_job(preset, cfg.layout, long_context_plan(cfg, extra_steps), data_uri, output_uri,
                    cfg.checkpoint_every_steps, preset.pretrain.keep_checkpoints, init_model_uri)
    ends = {stage.end for stage in long_context_stages(cfg, extra_steps)}
    return replace(job, checkpoint_steps=sorted({*job.checkpoint_steps, *ends, *checked_steps}),
                   gate=gate_checks(preset, sorted(gate_steps), sorted(set(gate_steps) & ends), baseline_loss))


def run_long_context(
    preset: Preset, data_uri: str, init_model_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()
) -> StageResult:
    gate = preset.long_context.gate
    root = checkpoints_uri(output_uri)
    check_inputs(preset, long_context_job(preset, data_uri, init_model_uri, output_uri), output_uri, STAGE)
    with fetched(data_uri) as data_dir:
        check_gate_inputs(preset, data_dir)
    record = _resumed_record(preset, root)  # None: no stage checked yet; the first run measures the baseline
    resumed_from = latest_checkpoint(root, _job(preset, data_uri, init_model_uri, output_uri, record).checkpoint_steps)
    for index in range(len(preset.long_context.seq_lens)):
        while True:
            stage = long_context_stages(preset.long_context, _extra_steps(preset, record))[index]
            check = record.check_at(stage.end) if record is not None else None
            if check is None:
                record, check = _train_and_check(preset, data_uri, init_model_uri, output_uri, record, index,
                                                     metrics)
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


def _extra_steps(preset: Preset, record: GateRecord | None) -> list[int]:
    return record.extra_steps if record is not None else [0] * len(preset.long_context.seq_lens)


def _job(
    preset: Preset, data_uri: str, init_model_uri: str, output_uri: str, record: GateRecord | None,
    gate_steps: Sequence[int] = (),
) -> TrainingJob:
    checked = [check["step"] for check in record.checks] if record is not None else []
    baseline = record.baseline_loss if record is not None else None
    return long_context_job(preset, data_uri, init_model_uri, output_uri, _extra_steps(preset, record), checked,
                            gate_steps, baseline)


def _resumed_record(preset: Preset, root: str) -> GateRecord | None:
    """The recorded gate of an interrupted run (this code's or the earlier driver-side gate's, the
    same format), refused in one line when today's settings gate another plan."""
    record = load_record(root)
    if record is not None and not record.matches(new_record(preset, long_context_stages(preset.long_context),
                                                            record.baseline_loss)):
        raise TrainingConfigError(
            f"long_context: the checkpoints at {root} were gated with other stage or gate settings"
            f" (short context {record.seq_len} over {record.windows} windows, stages {record.stage_lens}"
            f" of {record.stage_steps} steps each); use those settings to resume, or a new output URI"
        )
    return record


def _train_and_check(
    preset: Preset, data_uri: str, init_model_uri: str, output_uri: str, record: GateRecord | None, index: int,
    metrics: MetricsSink,
) -> tuple[GateRecord, dict]:
    """Train from the latest checkpoint through stage `index` and on through the later stages while
    they pass, the workers measuring the gate at each stage end (and, without a record yet, on the
    input model first); record every stage's figures. Returns the record (new with the baseline
    when there was none) and stage `index`'s check."""
    stages = long_context_stages(preset.long_context, _extra_steps(preset, record))
    ends = [stage.end for stage in stages[index:]]
    root = checkpoints_uri(output_uri)
    # Figures already published (a driver stopped after the run) are read, not measured again.
    record = _recorded(preset, root, record, stages, index)
    if record is None or record.check_at(ends[0]) is None:
        job = _job(preset, data_uri, init_model_uri, output_uri, record, ends if record is not None else [0, *ends])
        latest = latest_checkpoint(root, job.checkpoint_steps)
        if latest is not None and latest > ends[0]:
            raise TrainingConfigError(
                f"long_context: the checkpoints at {root} reach step {latest}, past stage"
                f" {index + 1}'s end {ends[0]} without its gate check; use a new output URI"
            )
        run_job(preset, job, STAGE, metrics, always=True)  # to the plan's end unless a stage fails its gate
        record = _recorded(preset, root, record, stages, index)
    check = record.check_at(ends[0]) if record is not None else None
    if check is None:
        raise TrainingRunError(f"long_context: the training workers published no gate figures for step {ends[0]}"
                               f" under {root}")
    return record, check


def _recorded(
    preset: Preset, checkpoint_root: str, record: GateRecord | None, stages: list[ContextStage], index: int
) -> GateRecord | None:
    """The record with the figures the workers published for the stage ends from `index` on, in
    order up to the first one missing (a new record once the input model's are published)."""
    changed = record is None
    if record is None:
        baseline = load_figures(checkpoint_root, 0)
        if baseline is None:
            return None
        record = new_record(preset, long_context_stages(preset.long_context), baseline["short_loss"])
    for position, stage in enumerate(stages[index:], start=index):
        if record.check_at(stage.end) is not None:
            continue
        figures = load_figures(checkpoint_root, stage.end)
        if figures is None:
            break
        record.checks.append({"stage": position, "seq_len": stage.seq_len, "step": stage.end,
                              "short_loss": figures["short_loss"], "needle_accuracy": figures["needle_accuracy"]})
        changed = True
    if changed:
        save_record(checkpoint_root, record)
    return record


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
