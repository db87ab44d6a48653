"""Direct preference optimisation of the SFT model (+NLL on chosen answers, formatting tokens masked),
against the SFT model itself as the frozen reference.

Full fine-tuning runs on the training engine (fine_tuning.py with DPO's objective,
train/preference_step.py): the stage's layout, checkpoints, exact resume; the workers measure the
reference log-probs on the input model before the first step, and each held-out response's
log-prob before and after, from which the driver computes the held-out figures. LoRA adapters
train in one process, the reference log-probs computed once up front.
"""
import time
from collections.abc import Sequence

import torch

from llamaops.platform.config import Preset
from llamaops.platform.config.stages import DPOConfig
from llamaops.platform.model import Transformer
from llamaops.platform.model.precision import flush_denormals
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult
from llamaops.platform.tracking.step_events import ProgressChannel, ProgressReporter
from llamaops.platform.train.preference_step import DPOObjective, dpo_terms

from .examples import batch_indices
from .fine_tuning import HELD_OUT, FineTuning, fine_tune, in_pairs, pair_steps, pair_values
from .losses import response_logprobs
from .preferences import EncodedPair, preference_split
from .training import (
    EVAL_BATCH,
    adapt,
    check_output_free,
    load_input_model,
    make_optimizer,
    optimizer_step,
    publish_model,
)


def preference_metrics(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
                       reference_rejected: torch.Tensor, chosen_tokens: torch.Tensor, rejected_tokens: torch.Tensor,
                       cfg: DPOConfig) -> dict[str, float]:
    """Held-out figures from each response's summed log-prob under the policy and the reference."""
    terms = dpo_terms(policy_chosen, policy_rejected, reference_chosen, reference_rejected, chosen_tokens,
                      cfg.beta, cfg.nll_coefficient)
    return {
        "dpo_loss": float(terms.preference_loss.mean()),
        "reward_margin": float(terms.margins.mean()),
        # A tie (margin 0, as before any training) is not a win.
        "preference_accuracy": float((terms.margins > 0).float().mean()),
        # Does the policy itself find the chosen answer likelier, per token?
        "likelihood_accuracy": float((policy_chosen / chosen_tokens > policy_rejected / rejected_tokens).float().mean()),
        "chosen_nll": float(terms.nll.mean()),
    }


def run_dpo(preset: Preset, sft_model_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()) -> StageResult:
    sft_cfg, cfg = preset.post_training.sft, preset.post_training.dpo
    check_output_free(output_uri)
    started = time.perf_counter()
    train, held_out = preference_split(sft_cfg, cfg.seed, cfg.steps * cfg.batch_size, cfg.max_eval_pairs,
                                       cfg.mask_formatting_tokens)
    counts = [torch.tensor([getattr(p, side).trained_tokens for p in held_out], dtype=torch.float64)
              for side in ("chosen", "rejected")]
    if cfg.lora_rank:
        policy_before, policy_after = _lora_dpo(cfg, sft_model_uri, output_uri, train, held_out, metrics)
        engine: dict[str, float] = {}
    else:
        tuned = fine_tune(
            preset,
            FineTuning("dpo", cfg.layout, sft_cfg.seq_len, cfg.lr, cfg.optimizer, cfg.checkpoint_every_steps, cfg.seed),
            sft_model_uri, output_uri, in_pairs(train),
            pair_steps(batch_indices(len(train), cfg.batch_size, cfg.steps, cfg.seed)),
            {HELD_OUT: in_pairs(held_out)}, metrics,
            objective=DPOObjective(cfg.beta, cfg.nll_coefficient, sft_cfg.seq_len),
        )
        policy_before, policy_after = (pair_values(-losses[HELD_OUT])
                                       for losses in (tuned.example_values_before, tuned.example_values_after))
        engine = tuned.result.metrics
    # The reference is the input model: the policy before the first step.
    before = preference_metrics(*policy_before, *policy_before, *counts, cfg)
    after = preference_metrics(*policy_after, *policy_before, *counts, cfg)
    result_metrics = {f"held_out_{name}_before": value for name, value in before.items()}
    result_metrics |= {f"held_out_{name}_after": value for name, value in after.items()}
    result_metrics |= {
        "train_pairs": float(len(train)),
        "held_out_pairs": float(len(held_out)),
        "seconds": time.perf_counter() - started,
        **engine,
    }
    report = {
        "pairs": "chosen = the dialog's real last answer; rejected = the same answer with its words scrambled",
        "mask_formatting_tokens": cfg.mask_formatting_tokens,
        "beta": cfg.beta,
        "nll_coefficient": cfg.nll_coefficient,
        "layout": "in-process (LoRA)" if cfg.lora_rank else cfg.layout.describe(),
    }
    return StageResult(outputs={"model": output_uri}, metrics=result_metrics, report=report)


@torch.no_grad()
def _logprobs(model: Transformer, pairs: Sequence[EncodedPair]) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    chosen, rejected = [], []
    for start in range(0, len(pairs), EVAL_BATCH):
        batch = pairs[start : start + EVAL_BATCH]
        chosen.append(response_logprobs(model, [p.chosen for p in batch]))
        rejected.append(response_logprobs(model, [p.rejected for p in batch]))
    model.train()
    return torch.cat(chosen).double(), torch.cat(rejected).double()


def _lora_dpo(cfg: DPOConfig, sft_model_uri: str, output_uri: str, train: list[EncodedPair],
              held_out: list[EncodedPair], metrics: MetricsSink):
    """LoRA adapters in one process (the engine places full models only); returns the held-out
    (chosen, rejected) log-probs before and after."""
    flush_denormals()
    model = load_input_model(sft_model_uri)
    reference_chosen, reference_rejected = _logprobs(model, train)
    before = _logprobs(model, held_out)
    adapt(model, cfg.lora_rank, cfg.lora_alpha, cfg.seed)
    optimizer = make_optimizer(model, cfg.lr, cfg.optimizer)
    model.train()
    reporter = ProgressReporter(ProgressChannel.from_env(), cfg.steps)
    for step, indices in enumerate(batch_indices(len(train), cfg.batch_size, cfg.steps, cfg.seed), start=1):
        batch = [train[i] for i in indices]
        chosen = response_logprobs(model, [p.chosen for p in batch])
        rejected = response_logprobs(model, [p.rejected for p in batch])
        counts = torch.tensor([p.chosen.trained_tokens for p in batch], dtype=chosen.dtype)
        terms = dpo_terms(chosen, rejected, reference_chosen[indices].to(chosen.dtype),
                          reference_rejected[indices].to(chosen.dtype), counts, cfg.beta, cfg.nll_coefficient)
        grad_norm = optimizer_step(model, optimizer, terms.loss, cfg.optimizer.grad_clip_norm)
        loss = float(terms.loss.detach())
        metrics.log_metrics({"loss": loss, "reward_margin": float(terms.margins.mean()), "grad_norm": grad_norm},
                            step=step)
        reporter.step(step, {"loss": loss})
    after = _logprobs(model, held_out)
    publish_model(model, output_uri)
    return before, after
