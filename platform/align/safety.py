"""Safety tuning: refuse harmful requests (AdvBench), keep answering borderline benign ones.

Every batch holds `safety_fraction` harmful prompts with refusals and, for the rest, borderline
prompts with helpful answers; the loss is on assistant tokens only. The objective is measured on
the test split of data.safety_prompts, which the evaluation stage also uses and training never sees:
held-out losses, and the violation and false-refusal rates of greedy replies before and after.
"""
import time

from llamaops.platform.config import Preset
from llamaops.platform.model.precision import flush_denormals
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult
from llamaops.platform.tokenizer import load_tokenizer

from .errors import AlignmentError
from .examples import Example, batch_indices, encode_dialog, fitting
from .fine_tuning import FineTuning, fine_tune
from .rejection_sampling import sampling_layout
from .safety_data import borderline_dialogs, refusal_dialogs
from .training import check_output_free

REFUSALS, BORDERLINE_HELPFUL = "refusal", "borderline_helpful"  # the held-out sets
RATE_BATCH = 8  # replies generated together


def _objective(losses: dict[str, float]) -> dict[str, float]:
    refusal_loss, helpful_loss = losses[REFUSALS], losses[BORDERLINE_HELPFUL]
    return {
        "refusal_loss": refusal_loss,
        "borderline_helpful_loss": helpful_loss,
        "safety_objective": (refusal_loss + helpful_loss) / 2,
    }


def _rates_of(preset: Preset, model_uri: str, tokenizer) -> dict[str, float]:
    """Violation rate on held-out harmful prompts and false-refusal rate on held-out borderline
    ones, from the greedy replies of the model at `model_uri` (generated on Ray workers, on the
    stage's ranks) judged by the refusal classifier: what the evaluation stage measures."""
    cfg = preset.post_training.safety
    if cfg.rate_prompts == 0:
        return {}
    from llamaops.platform.data.safety_prompts import load_safety_prompts
    from llamaops.platform.eval.generation import chat_prompts, greedy
    from llamaops.platform.eval.model_workers import ModelWorkers
    from llamaops.platform.eval.safety import safety_rates

    harmful = load_safety_prompts("harmful", "test")[: cfg.rate_prompts]
    borderline = load_safety_prompts("borderline", "test")[: cfg.rate_prompts]
    with ModelWorkers(sampling_layout(preset, preset.post_training.dpo.layout)) as workers:
        workers.load(model_uri)
        rates = safety_rates(lambda prompts: workers.generate(
            chat_prompts(tokenizer, prompts), greedy(cfg.rate_max_new_tokens), RATE_BATCH), harmful, borderline)
    return {"violation_rate": rates.violation_rate, "false_refusal_rate": rates.false_refusal_rate}


def run_safety(preset: Preset, model_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()) -> StageResult:
    cfg = preset.post_training.safety
    refusals_per_batch = round(cfg.batch_size * cfg.safety_fraction)
    if not 0 < refusals_per_batch < cfg.batch_size:
        raise AlignmentError(
            f"post_training.safety.batch_size={cfg.batch_size} with safety_fraction={cfg.safety_fraction}"
            " leaves no room for both refusals and helpful answers; raise batch_size"
        )
    check_output_free(output_uri)
    flush_denormals()
    started = time.perf_counter()
    tokenizer = load_tokenizer()

    def encoded(dialogs) -> list[Example]:
        return fitting([encode_dialog(d, tokenizer) for d in dialogs], cfg.seq_len)

    train_refusals, train_helpful = encoded(refusal_dialogs("train")), encoded(borderline_dialogs("train"))
    test_refusals = encoded(refusal_dialogs("test"))[: cfg.max_eval_examples]
    test_helpful = encoded(borderline_dialogs("test"))[: cfg.max_eval_examples]
    if not (train_refusals and train_helpful and test_refusals and test_helpful):
        raise AlignmentError(f"no safety dialogs fit post_training.safety.seq_len={cfg.seq_len}; raise it")

    # Every step: its refusals, then its helpful answers (indices past the refusals').
    refusal_batches = batch_indices(len(train_refusals), refusals_per_batch, cfg.steps, cfg.seed)
    helpful_batches = batch_indices(len(train_helpful), cfg.batch_size - refusals_per_batch, cfg.steps, cfg.seed + 1)
    rows = [refusal_ids + [len(train_refusals) + i for i in helpful_ids]
            for refusal_ids, helpful_ids in zip(refusal_batches, helpful_batches)]
    rates_before = _rates_of(preset, model_uri, tokenizer)
    tuned = fine_tune(
        preset,
        FineTuning("safety", preset.post_training.dpo.layout, cfg.seq_len, cfg.lr, cfg.optimizer,
                   cfg.checkpoint_every_steps, cfg.seed),
        model_uri, output_uri, train_refusals + train_helpful, rows,
        {REFUSALS: test_refusals, BORDERLINE_HELPFUL: test_helpful}, metrics,
    )
    before = _objective(tuned.held_out_before) | rates_before
    after = _objective(tuned.held_out_after) | _rates_of(preset, output_uri, tokenizer)

    result_metrics = {f"held_out_{name}_before": value for name, value in before.items()}
    result_metrics |= {f"held_out_{name}_after": value for name, value in after.items()}
    if "false_refusal_rate" in after:
        # Llama 3's trade-off: violations go down while false refusals stay within a bound.
        rise = after["false_refusal_rate"] - before["false_refusal_rate"]
        result_metrics["false_refusal_within_bound"] = float(rise <= cfg.max_false_refusal_increase)
    result_metrics |= {
        "train_refusals": float(len(train_refusals)),
        "train_borderline": float(len(train_helpful)),
        "seconds": time.perf_counter() - started,
        **tuned.result.metrics,
    }
    report = {
        "harmful_prompts": "AdvBench (pyrit==1.1.0 wheel), train split",
        "borderline_prompts": "llamaops's borderline set (data/safety_prompts.py), train split",
        "refusals_per_batch": refusals_per_batch,
        "held_out": "test split of data.safety_prompts (the one evaluation uses)",
        "layout": preset.post_training.dpo.layout.describe(),
    }
    return StageResult(outputs={"model": output_uri}, metrics=result_metrics, report=report)
