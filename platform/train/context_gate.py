"""The long-context stages' gate: a stage passes once the model's loss on short windows of the
validation split is back near the pretrained model's (Llama 3 paper §3.4.2: "model performance on
short-context evaluations has recovered completely").

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
from llamaops.platform.eval.perplexity import open_validation, validation_perplexity
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.store import fetched, is_complete, staged_output

from .errors import TrainingConfigError
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
    if short >= cfg.seq_lens[0]:
        raise TrainingConfigError(
            f"long_context.gate.seq_len: the short context {short} is not shorter than the first stage length"
            f" {cfg.seq_lens[0]}; set it to the pretraining length or below"
        )
    try:
        stream = open_validation(data_dir, short)
    except EvalInputError as error:
        raise TrainingConfigError(f"long_context.gate: {error}") from None
    if stream.num_windows(short) < cfg.gate.windows:
        raise TrainingConfigError(
            f"long_context.gate: the validation split holds {stream.num_windows(short)} windows of {short} tokens,"
            f" fewer than long_context.gate.windows {cfg.gate.windows}; prepare more validation data or lower windows"
        )
    return stream


def short_context_loss(preset: Preset, model: Transformer, stream: TokenStream) -> float:
    """Mean next-token loss (nats) of `model` on the gate's validation windows, under no_grad."""
    gate = preset.long_context.gate
    model.eval()
    return validation_perplexity(model, stream, short_context_len(preset), gate.windows, gate.batch_size).mean_nll


def recovered(loss: float, baseline: float, max_increase: float | None) -> bool:
    return max_increase is None or loss - baseline <= max_increase


@dataclass
class GateRecord:
    seq_len: int  # the short context checked
    windows: int
    stage_lens: list[int]  # the stages' lengths and their share of steps: the plan the record is for
    stage_steps: int
    baseline_loss: float  # the input (pretrained) model's
    extra_steps: list[int]  # per stage, given by the gate so far
    checks: list[dict] = field(default_factory=list)  # {"stage", "seq_len", "step", "short_loss"}, in order

    def loss_at(self, step: int) -> float | None:
        return next((check["short_loss"] for check in self.checks if check["step"] == step), None)

    def matches(self, other: "GateRecord") -> bool:
        """Whether `other` (built from today's config) gates the same plan the same way."""
        keys = ("seq_len", "windows", "stage_lens", "stage_steps")
        return all(getattr(self, key) == getattr(other, key) for key in keys)


def new_record(preset: Preset, stages: list[ContextStage], baseline_loss: float) -> GateRecord:
    return GateRecord(
        seq_len=short_context_len(preset),
        windows=preset.long_context.gate.windows,
        stage_lens=[stage.seq_len for stage in stages],
        stage_steps=stages[0].base_steps,
        baseline_loss=baseline_loss,
        extra_steps=[0] * len(stages),
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


def stage_summary(record: GateRecord, stages: list[ContextStage], max_increase: float | None) -> list[dict]:
    """Per checked stage: its length, steps, the short-context loss before (pretrained) and after, and the verdict."""
    summary = []
    for index, stage in enumerate(stages):
        loss = record.loss_at(stage.end)
        if loss is None:
            continue
        summary.append({
            "seq_len": stage.seq_len,
            "steps": stage.base_steps + stage.extra_steps,
            "extra_steps": stage.extra_steps,
            "short_loss_before": record.baseline_loss,
            "short_loss": loss,
            "loss_increase": loss - record.baseline_loss,
            "recovered": recovered(loss, record.baseline_loss, max_increase),
            "checks": [check["short_loss"] for check in record.checks if check["stage"] == index],
        })
    return summary


def failure_line(stage_index: int, stage: ContextStage, record: GateRecord, preset: Preset, checkpoints: str) -> str:
    gate = preset.long_context.gate
    loss = record.loss_at(stage.end)
    return (
        f"long_context stage {stage_index + 1} (seq_len {stage.seq_len}) did not recover short-context loss:"
        f" {loss:.4f} at seq_len {record.seq_len} after {stage.base_steps + stage.extra_steps} steps"
        f" ({stage.extra_steps} extra, max {gate.max_extra_steps_per_stage}) is {loss - record.baseline_loss:+.4f}"
        f" from the pretrained model's {record.baseline_loss:.4f} (max increase {gate.max_short_context_loss_increase});"
        f" checkpoints kept at {checkpoints}: raise long_context.gate.max_extra_steps_per_stage or the tolerance"
        " and rerun with the same output to resume"
    )
