"""Supervised fine-tuning on chatterbot dialogs in the Llama 3.1 format, loss on assistant tokens only."""
import time

from llamaops.platform.config import Preset
from llamaops.platform.config.stages import SFTConfig
from llamaops.platform.model.precision import flush_denormals
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult
from llamaops.platform.tokenizer import load_tokenizer
from llamaops.platform.tracking.step_events import ProgressChannel, ProgressReporter

from .conversations import check_languages, load_conversations, split_conversations
from .errors import AlignmentError
from .examples import Example, batch_indices, encode_dialog, fitting
from .fine_tuning import HELD_OUT, FineTuning, fine_tune
from .losses import masked_loss_sum
from .rejection_sampling import load_samples
from .training import (
    adapt,
    check_output_free,
    load_input_model,
    make_optimizer,
    mean_loss,
    optimizer_step,
    publish_model,
)


def run_sft(
    preset: Preset,
    init_model_uri: str,
    output_uri: str,
    metrics: MetricsSink = NoMetrics(),
    rejection_samples_uri: str | None = None,
) -> StageResult:
    """SFT on the human-written training dialogs, plus the best rejection-sampled dialogs when given."""
    cfg = preset.post_training.sft
    check_languages(cfg.languages)
    check_output_free(output_uri)
    started = time.perf_counter()
    train, held_out, sampled = _examples(cfg, rejection_samples_uri)
    if cfg.lora_rank:
        before, after = _lora_sft(cfg, init_model_uri, output_uri, train, held_out, metrics)
        engine: dict[str, float] = {}
    else:
        tuned = fine_tune(
            preset,
            FineTuning("sft", cfg.layout, cfg.seq_len, cfg.lr, cfg.optimizer, cfg.checkpoint_every_steps, cfg.seed),
            init_model_uri, output_uri, train, list(batch_indices(len(train), cfg.batch_size, cfg.steps, cfg.seed)),
            {HELD_OUT: held_out}, metrics,
        )
        before, after, engine = tuned.held_out_before[HELD_OUT], tuned.held_out_after[HELD_OUT], tuned.result.metrics
    result_metrics = {
        "held_out_loss_before": before,
        "held_out_loss_after": after,
        "train_dialogs": float(len(train)),
        "rejection_sampled_dialogs": float(sampled),
        "held_out_dialogs": float(len(held_out)),
        "seconds": time.perf_counter() - started,
        **engine,
    }
    report = {"languages": list(cfg.languages), "loss": "assistant tokens only (incl. <|eot_id|>)",
              "layout": "in-process (LoRA)" if cfg.lora_rank else cfg.layout.describe()}
    return StageResult(outputs={"model": output_uri}, metrics=result_metrics, report=report)


def _examples(cfg: SFTConfig, rejection_samples_uri: str | None) -> tuple[list[Example], list[Example], int]:
    """(training examples, held-out examples, rejection-sampled dialogs among the training ones)."""
    tokenizer = load_tokenizer()
    train_dialogs, held_out_dialogs = split_conversations(
        load_conversations(cfg.languages), cfg.held_out_fraction, cfg.seed
    )
    sampled = load_samples(rejection_samples_uri) if rejection_samples_uri else []
    train = fitting([encode_dialog(d, tokenizer) for d in [c.messages for c in train_dialogs] + sampled], cfg.seq_len)
    held_out = fitting([encode_dialog(c.messages, tokenizer) for c in held_out_dialogs], cfg.seq_len)
    held_out = held_out[: cfg.max_eval_examples]
    if not train or not held_out:
        raise AlignmentError(f"no SFT dialogs fit post_training.sft.seq_len={cfg.seq_len}; raise it")
    return train, held_out, len(sampled)


def _lora_sft(cfg: SFTConfig, init_model_uri: str, output_uri: str, train: list[Example], held_out: list[Example],
              metrics: MetricsSink) -> tuple[float, float]:
    """LoRA adapters train in one process (the engine places full models only); returns the
    held-out loss before and after."""
    flush_denormals()
    model = load_input_model(init_model_uri)
    loss_before = mean_loss(model, held_out)
    adapt(model, cfg.lora_rank, cfg.lora_alpha, cfg.seed)
    optimizer = make_optimizer(model, cfg.lr, cfg.optimizer)
    model.train()
    reporter = ProgressReporter(ProgressChannel.from_env(), cfg.steps)
    for step, indices in enumerate(batch_indices(len(train), cfg.batch_size, cfg.steps, cfg.seed), start=1):
        loss_sum, count = masked_loss_sum(model, [train[i] for i in indices])
        grad_norm = optimizer_step(model, optimizer, loss_sum / count, cfg.optimizer.grad_clip_norm)
        metrics.log_metrics({"loss": float(loss_sum.detach()) / count, "grad_norm": grad_norm}, step=step)
        reporter.step(step, {"loss": float(loss_sum.detach()) / count})
    loss_after = mean_loss(model, held_out)
    publish_model(model, output_uri)
    return loss_before, loss_after
