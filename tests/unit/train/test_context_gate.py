"""The long-context gate's decisions, plan, record and preflight checks (no training)."""
import json
from dataclasses import replace
from pathlib import Path

import pytest

from llamaops.platform.config import ConfigError, load_preset
from llamaops.platform.config.presets import PRESETS
from llamaops.platform.model.checkpoint import save_model
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.stage import NoMetrics
from llamaops.platform.store import fetched, staged_output
from llamaops.platform.train.context_gate import (
    check_gate_inputs,
    failure_line,
    load_record,
    new_record,
    passes,
    save_record,
    short_context_len,
    stage_summary,
)
from llamaops.platform.train.errors import TrainingConfigError
from llamaops.platform.train.gate_checks import GateVerdict
from llamaops.platform.train.long_context import long_context_job, run_long_context
from llamaops.platform.train.schedule import long_context_plan, long_context_stages

from .micro import micro_preset


def _with_gate(preset, **gate):
    lc = preset.long_context
    return preset.model_copy(update={"long_context": lc.model_copy(update={"gate": lc.gate.model_copy(update=gate)})})


def test_the_gate_passes_within_the_tolerance_and_fails_beyond_it():
    def recovered(loss: float, baseline: float, max_increase: float | None) -> bool:
        return GateVerdict(max_increase).passes({"short_loss": loss}, baseline)

    assert recovered(3.05, baseline=3.0, max_increase=0.1)
    assert recovered(2.5, baseline=3.0, max_increase=0.0)
    assert not recovered(3.2, baseline=3.0, max_increase=0.1)
    assert not recovered(3.0, baseline=3.0, max_increase=-0.01)  # negative: an improvement is required
    assert recovered(9.0, baseline=3.0, max_increase=None)  # report only


def test_needles_count_only_when_required():
    tiny = load_preset("tiny")  # needles reported, not required
    required = _with_gate(tiny, needle_must_pass=True)
    missed = {"short_loss": 4.0, "needle_accuracy": 2 / 3}
    assert passes(missed, 4.0, tiny) and not passes(missed, 4.0, required)
    assert passes({"short_loss": 4.0, "needle_accuracy": 1.0}, 4.0, required)
    assert not passes({"short_loss": 4.2, "needle_accuracy": 1.0}, 4.0, required)  # tiny's 0.1 nats
    with pytest.raises(ConfigError, match="needle_depths"):
        load_preset("tiny", overrides=["long_context.gate.needle_depths=[0.5, 1.5]"])


def test_extra_steps_lengthen_their_stage_and_push_the_later_ones_back():
    cfg = load_preset("tiny").long_context  # 512 then 1024, 2 steps each
    base = long_context_stages(cfg)
    assert [(s.seq_len, s.first_step, s.end) for s in base] == [(512, 0, 2), (1024, 2, 4)]
    extended = long_context_stages(cfg, [3])
    assert [(s.first_step, s.end, s.extra_steps) for s in extended] == [(0, 5, 3), (5, 7, 0)]
    plan = long_context_plan(cfg, [3, 1])
    assert [step.seq_len for step in plan] == [512] * 5 + [1024] * 3
    assert long_context_plan(cfg) == long_context_plan(cfg, [0, 0])  # pure: the same inputs, the same plan


def test_the_job_checkpoints_every_stage_end_and_every_checked_step():
    preset = micro_preset()  # checkpoint_every_steps 2
    lc = preset.long_context.model_copy(update={"checkpoint_every_steps": 100})
    preset = preset.model_copy(update={"long_context": lc})
    job = long_context_job(preset, "file:///d", "file:///m", "file:///out", extra_steps=[3], checked_steps=[2],
                           gate_steps=[5, 0])
    assert job.checkpoint_steps == [2, 5, 7]  # 2: the check before the extra steps; 5, 7: the stage ends
    # The workers measure the gate at step 5's end and on the input model, as the preset's gate says.
    assert job.gate.steps == (0, 5) and (job.gate.seq_len, job.gate.windows) == (short_context_len(preset), 1)


def test_stage_lengths_must_increase():
    with pytest.raises(ConfigError, match=r"seq_lens \[1024, 512\] must increase"):
        load_preset("tiny", overrides=["long_context.seq_lens=[1024, 512]"])


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_gates_a_short_context_its_model_holds(name: str):
    preset = load_preset(name)
    assert short_context_len(preset) == preset.pretrain.seq_len <= preset.long_context.seq_lens[0]
    assert preset.long_context.seq_lens[-1] <= preset.model.max_seq_len
    assert preset.long_context.gate.max_short_context_loss_increase is not None
    layout = preset.long_context.layout  # the workers measure the short windows on the long-context layout
    assert short_context_len(preset) % (2 * layout.cp * layout.tp if layout.cp > 1 else layout.tp) == 0


def test_the_record_round_trips_and_detects_other_settings(tmp_path: Path):
    preset = micro_preset()
    stages = long_context_stages(preset.long_context)
    record = new_record(preset, stages, baseline_loss=4.5)
    record.extra_steps[0] = 2
    record.checks.append({"stage": 0, "seq_len": 512, "step": 2, "short_loss": 4.9})
    root = (tmp_path / "lc-checkpoints").as_uri()
    save_record(root, record)
    save_record(root, record)  # overwritten in place, atomically
    loaded = load_record(root)
    assert loaded == record and loaded.check_at(2)["short_loss"] == 4.9 and loaded.check_at(4) is None
    other = _with_gate(preset, windows=2)
    assert not loaded.matches(new_record(other, stages, 4.5))
    assert loaded.matches(new_record(_with_gate(preset, max_extra_steps_per_stage=9), stages, 0.0))
    # Stages have steps of their own (each its share of tokens at its batch): a later one differing counts.
    longer_last = [*stages[:-1], replace(stages[-1], base_steps=stages[-1].base_steps + 1)]
    assert not loaded.matches(new_record(preset, longer_last, 4.5))


def test_the_summary_and_the_failure_line_carry_the_figures():
    preset = _with_gate(load_preset("tiny"), max_short_context_loss_increase=0.1, max_extra_steps_per_stage=2)
    record = new_record(preset, long_context_stages(preset.long_context), baseline_loss=4.0)
    record.extra_steps[0] = 2
    record.checks += [{"stage": 0, "seq_len": 512, "step": 2, "short_loss": 4.6},
                      {"stage": 0, "seq_len": 512, "step": 4, "short_loss": 4.3}]
    stages = long_context_stages(preset.long_context, record.extra_steps)
    [summary] = stage_summary(record, stages, preset)
    assert summary["recovered"] is False and summary["passed"] is False and summary["checks"] == [4.6, 4.3]
    assert summary["steps"] == 4 and summary["loss_increase"] == pytest.approx(0.3)
    line = failure_line(0, stages[0], record, preset, "file:///x-checkpoints")
    assert "\n" not in line
    for figure in ("stage 1 (seq_len 512) did not pass its gate: short-context loss 4.3000 at seq_len 256", "after 4 steps (2 extra, max 2)",
                   "+0.3000", "4.0000", "max increase 0.1", "file:///x-checkpoints"):
        assert figure in line


def _init_model(tmp_path: Path, preset) -> str:
    model = Transformer(preset.model)
    model.init_weights(seed=0)
    with staged_output((tmp_path / "init").as_uri()) as out:
        save_model(model, out)
    return (tmp_path / "init").as_uri()


def test_a_stage_longer_than_the_model_holds_is_refused(tmp_path: Path, shards_uri: str):
    preset = micro_preset()
    preset = preset.model_copy(update={"model": preset.model.model_copy(update={"max_seq_len": 512})})
    with pytest.raises(TrainingConfigError, match="^long_context.seq_lens: stage length 1024 is above model.max_seq_len 512"):
        run_long_context(preset, shards_uri, _init_model(tmp_path, preset), (tmp_path / "lc").as_uri())
    assert not (tmp_path / "lc").exists() and not (tmp_path / "lc-checkpoints").exists()


def test_a_short_context_longer_than_a_stage_is_refused(tmp_path: Path, shards_uri: str):
    preset = _with_gate(micro_preset(), seq_len=768)
    with pytest.raises(TrainingConfigError, match="short context 768 is longer than the first stage length 512"):
        run_long_context(preset, shards_uri, _init_model(tmp_path, preset), (tmp_path / "lc").as_uri())
    assert not (tmp_path / "lc-checkpoints").exists()
    with pytest.raises(ConfigError, match="^preset: long_context.gate.seq_len 768 is longer than the first stage length 512"):
        load_preset("tiny", overrides=["long_context.gate.seq_len=768"])  # at load time, before any step runs


def test_a_short_context_the_long_context_layout_cannot_split_is_refused(shards_uri: str):
    preset = _with_gate(micro_preset(), seq_len=100)
    layout = preset.long_context.layout.model_copy(update={"cp": 2, "tp": 2})
    preset = preset.model_copy(update={"long_context": preset.long_context.model_copy(update={"layout": layout})})
    with fetched(shards_uri) as data_dir:
        with pytest.raises(TrainingConfigError, match="^long_context.gate.seq_len: the short context 100 does not split"
                           r" over the long-context layout \(TP 2 x CP 2 .*a multiple of 8"):
            check_gate_inputs(preset, data_dir)


def test_a_first_stage_too_short_for_a_needle_is_refused(shards_uri: str):
    preset = _with_gate(micro_preset(), needle_depths=[0.5], needle_max_new_tokens=400)
    with fetched(shards_uri) as data_dir:
        with pytest.raises(TrainingConfigError, match="needle prompt at the first stage length 512 leaves 48 tokens"):
            check_gate_inputs(preset, data_dir)


def test_too_little_validation_data_for_the_gate_is_refused(shards_uri: str):
    with fetched(shards_uri) as data_dir:
        assert check_gate_inputs(micro_preset(), data_dir).num_windows(256) >= 1
        with pytest.raises(TrainingConfigError, match=r"holds \d windows of 256 tokens, fewer than long_context.gate.windows 50"):
            check_gate_inputs(_with_gate(micro_preset(), windows=50), data_dir)
        long = _with_gate(micro_preset(), seq_len=4096)
        long = long.model_copy(update={
            "model": long.model.model_copy(update={"max_seq_len": 8192}),
            "long_context": long.long_context.model_copy(update={"seq_lens": [8192]}),
        })
        with pytest.raises(TrainingConfigError, match="^long_context.gate: the validation split .* fewer than one window of 4097"):
            check_gate_inputs(long, data_dir)


def test_figures_the_workers_published_are_read_not_measured_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A driver stopped after a stage's run but before recording its check: on resume the
    published figures make the record (baseline and check) and no worker starts."""
    from llamaops.platform.train import long_context
    from llamaops.platform.train.gate_checks import figures_uri
    from llamaops.platform.train.step_figures import FIGURES_FILE

    def no_run(*args, **kwargs):
        raise AssertionError("the workers were started again")

    monkeypatch.setattr(long_context, "run_job", no_run)
    output = (tmp_path / "lc").as_uri()
    root = output + "-checkpoints"
    for step, loss, needles in ((0, 4.0, None), (2, 4.2, 0.5)):  # the input model's, stage 1's end
        with staged_output(figures_uri(root, step)) as out:
            (out / FIGURES_FILE).write_text(f'{{"step": {step}, "short_loss": {loss}, "needle_accuracy": {json.dumps(needles)}}}')
    record, check = long_context._train_and_check(micro_preset(), "file:///d", "file:///m", output, None, 0,
                                                  NoMetrics())
    assert record.baseline_loss == 4.0 and check == {"stage": 0, "seq_len": 512, "step": 2, "short_loss": 4.2,
                                                     "needle_accuracy": 0.5}
    assert load_record(root) == record
