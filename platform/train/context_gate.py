"""The long-context stages' gate: a stage passes once the model's loss on short windows of the
validation split is back near the pretrained model's (Llama 3 paper §3.4.2: "model performance on
short-context evaluations has recovered completely").

The training workers measure the figures (gate_checks.py, on the sharded model); this module
holds what the driver needs to decide on them: the preflight, the verdict, the record, the report.

The gate's record (the pretrained model's loss, each check's loss, the extra steps each stage was
given) lives next to the checkpoints, published atomically after every change, so a resumed run
neither redoes a checked segment nor loses the baseline, and rebuilds the same plan.
"""
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llamaops.platform.config.preset import Preset
from llamaops.platform.data.shards import TokenStream
from llamaops.platform.eval.errors import EvalInputError
from llamaops.platform.eval.perplexity import open_validation
from llamaops.platform.store import fetched, is_complete, staged_output

from .errors import TrainingConfigError
from .gate_checks import GateChecks, GateVerdict
from .gate_checks import needle_prompt_len as _needle_prompt_len
from .schedule import ContextStage

RECORD_FILE = "short_context_gate.json"


class ShortContextNotRecovered(ValueError):
    """A stage used up its extra steps without recovering short-context loss; its checkpoints stay."""


def short_context_len(preset: Preset) -> int:
    return preset.long_context.gate.seq_len or preset.pretrain.seq_len


def check_gate_inputs(preset: Preset, data_dir: Path) -> TokenStream:
    """One line per mistake, before any training: stage lengths the model cannot hold, a short
    context that is not short, a validation split too small for the gate. Returns that split."""
    cfg, model = preset.long_context, preset.model
    if cfg.seq_lens[-1] > model.max_seq_len:
        raise TrainingConfigError(
            f"long_context.seq_lens: stage length {cfg.seq_lens[-1]} is above model.max_seq_len {model.max_seq_len}"
            " (the length RoPE and its scaling are built for); lower the stage or raise model.max_seq_len"
        )
    short = short_context_len(preset)
    if short > cfg.seq_lens[0]:  # also a Preset rule; checked again for presets built without validation
        raise TrainingConfigError(
            f"long_context.gate.seq_len: the short context {short} is longer than the first stage length"
            f" {cfg.seq_lens[0]}; set it to the pretraining length or below"
        )
    layout = cfg.layout
    split = 2 * layout.cp * layout.tp if layout.cp > 1 else layout.tp  # CP chunks, TP sequence shards
    if short % split:
        raise TrainingConfigError(
            f"long_context.gate.seq_len: the short context {short} does not split over the long-context layout"
            f" ({layout.describe()}, which needs a multiple of {split}); pick a multiple of {split}"
        )
    prompt_len = needle_prompt_len(preset, cfg.seq_lens[0])
    if cfg.gate.needle_depths and prompt_len < 64:
        raise TrainingConfigError(
            f"long_context.gate: a needle prompt at the first stage length {cfg.seq_lens[0]} leaves"
            f" {prompt_len} tokens after the reply and chat format, fewer than 64;"
            " lower gate.needle_max_new_tokens or set gate.needle_depths to []"
        )
    try:
        stream = open_validation(data_dir, short)
    except EvalInputError as error:
        raise TrainingConfigError(f"long_context.gate: {error}") from None
    windows = stream.num_windows(short)
    if windows < cfg.gate.windows:
        raise TrainingConfigError(
            f"long_context.gate: the validation split holds {windows} windows of {short} tokens,"
            f" fewer than long_context.gate.windows {cfg.gate.windows}; prepare more validation data or lower windows"
        )
    return stream


def gate_checks(
    preset: Preset, steps: list[int], stop_steps: list[int] = (), baseline_loss: float | None = None
) -> GateChecks:
    """What the training workers measure for the gate, at `steps` (0: the input model), and the
    stage ends (`stop_steps`) where they end the run unless the stage passed."""
    gate = preset.long_context.gate
    return GateChecks(
        steps=tuple(steps), seq_len=short_context_len(preset), windows=gate.windows, batch_size=gate.batch_size,
        needle_depths=tuple(gate.needle_depths), needle_max_new_tokens=gate.needle_max_new_tokens,
        stop_steps=tuple(stop_steps), verdict=gate_verdict(preset), baseline_loss=baseline_loss,
    )


def gate_verdict(preset: Preset) -> GateVerdict:
    gate = preset.long_context.gate
    return GateVerdict(max_loss_increase=gate.max_short_context_loss_increase, needle_must_pass=gate.needle_must_pass)


def needle_prompt_len(preset: Preset, seq_len: int) -> int:
    """A needle prompt's tokens at stage length `seq_len`: room left for the chat format and the reply."""
    return _needle_prompt_len(seq_len, preset.long_context.gate.needle_max_new_tokens)


def passes(check: dict, baseline: float, preset: Preset) -> bool:
    """The verdict on one recorded check under today's settings (verdicts are never stored)."""
    return gate_verdict(preset).passes(check, baseline)


@dataclass
class GateRecord:
    seq_len: int  # the short context checked
    windows: int
    stage_lens: list[int]  # the stages' lengths and steps (before extra ones): the plan the record is for
    stage_steps: list[int]
    baseline_loss: float  # the input (pretrained) model's
    extra_steps: list[int]  # per stage, given by the gate so far
    needle_depths: list[float] = field(default_factory=list)
    # {"stage", "seq_len", "step", "short_loss", "needle_accuracy" (None: not run)}, in order
    checks: list[dict] = field(default_factory=list)

    def check_at(self, step: int) -> dict | None:
        return next((check for check in self.checks if check["step"] == step), None)

    def matches(self, other: "GateRecord") -> bool:
        """Whether `other` (built from today's config) gates the same plan the same way."""
        keys = ("seq_len", "windows", "stage_lens", "stage_steps", "needle_depths")
        return all(getattr(self, key) == getattr(other, key) for key in keys)


def new_record(preset: Preset, stages: list[ContextStage], baseline_loss: float) -> GateRecord:
    return GateRecord(
        seq_len=short_context_len(preset),
        windows=preset.long_context.gate.windows,
        stage_lens=[stage.seq_len for stage in stages],
        stage_steps=[stage.base_steps for stage in stages],
        baseline_loss=baseline_loss,
        extra_steps=[0] * len(stages),
        needle_depths=list(preset.long_context.gate.needle_depths),
    )


def record_uri(checkpoint_root: str) -> str:
    return checkpoint_root.rstrip("/") + "/gate"


def load_record(checkpoint_root: str) -> GateRecord | None:
    uri = record_uri(checkpoint_root)
    if not is_complete(uri):
        return None
    with fetched(uri) as directory:
        return GateRecord(**json.loads((directory / RECORD_FILE).read_text()))


def save_record(checkpoint_root: str, record: GateRecord) -> None:
    with staged_output(record_uri(checkpoint_root), overwrite=True) as out:
        (out / RECORD_FILE).write_text(json.dumps(asdict(record), indent=1) + "\n")


def stage_summary(record: GateRecord, stages: list[ContextStage], preset: Preset) -> list[dict]:
    """Per checked stage: its length, steps, the short-context loss before (pretrained) and after,
    the needles found, and the verdict."""
    summary = []
    for index, stage in enumerate(stages):
        check = record.check_at(stage.end)
        if check is None:
            continue
        loss = check["short_loss"]
        summary.append({
            "seq_len": stage.seq_len,
            "steps": stage.base_steps + stage.extra_steps,
            "extra_steps": stage.extra_steps,
            "short_loss_before": record.baseline_loss,
            "short_loss": loss,
            "loss_increase": loss - record.baseline_loss,
            "needle_accuracy": check.get("needle_accuracy"),
            "recovered": GateVerdict(preset.long_context.gate.max_short_context_loss_increase).passes(
                check, record.baseline_loss),
            "passed": passes(check, record.baseline_loss, preset),
            "checks": [earlier["short_loss"] for earlier in record.checks if earlier["stage"] == index],
        })
    return summary


def failure_line(stage_index: int, stage: ContextStage, record: GateRecord, preset: Preset, checkpoints: str) -> str:
    gate = preset.long_context.gate
    check = record.check_at(stage.end)
    loss, needle = check["short_loss"], check.get("needle_accuracy")
    needles = ""
    if gate.needle_must_pass:
        needles = f"; needles found {needle:.0%} of {len(gate.needle_depths)}, all required (gate.needle_must_pass)"
    return (
        f"long_context stage {stage_index + 1} (seq_len {stage.seq_len}) did not pass its gate: short-context loss"
        f" {loss:.4f} at seq_len {record.seq_len} after {stage.base_steps + stage.extra_steps} steps"
        f" ({stage.extra_steps} extra, max {gate.max_extra_steps_per_stage}) is {loss - record.baseline_loss:+.4f}"
        f" from the pretrained model's {record.baseline_loss:.4f} (max increase {gate.max_short_context_loss_increase}){needles};"
        f" checkpoints kept at {checkpoints}: raise long_context.gate.max_extra_steps_per_stage or the tolerance"
        " and rerun with the same output to resume"
    )
