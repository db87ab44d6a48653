"""Direct preference optimisation of the SFT model (+NLL on chosen answers, formatting tokens masked),
against the SFT model itself as the frozen reference, whose log-probs are computed once up front."""
import time
from collections.abc import Sequence

import torch

from llamaops.platform.config import Preset
from llamaops.platform.model import Transformer
from llamaops.platform.model.precision import flush_denormals
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult
from llamaops.platform.tokenizer import load_tokenizer
from llamaops.platform.tracking.step_events import ProgressChannel, ProgressReporter

from .conversations import check_languages, load_conversations, split_conversations
from .errors import AlignmentError
from .examples import batch_indices
from .losses import DPOTerms, dpo_terms, response_logprobs
from .preferences import EncodedPair, build_pairs, encode_pair, seeded_order, usable_pairs
from .training import EVAL_BATCH, adapt, check_output_free, load_input_model, make_optimizer, optimizer_step, publish_model


@torch.no_grad()
def _logprobs(model: Transformer, pairs: Sequence[EncodedPair]) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    chosen, rejected = [], []
    for start in range(0, len(pairs), EVAL_BATCH):
        batch = pairs[start : start + EVAL_BATCH]
        chosen.append(response_logprobs(model, [p.chosen for p in batch]))
        rejected.append(response_logprobs(model, [p.rejected for p in batch]))
    model.train()
    return torch.cat(chosen), torch.cat(rejected)


def _terms(model, pairs, ref_chosen, ref_rejected, beta: float, nll_coefficient: float) -> DPOTerms:
    chosen = response_logprobs(model, [p.chosen for p in pairs])
    rejected = response_logprobs(model, [p.rejected for p in pairs])
    counts = torch.tensor([p.chosen.trained_tokens for p in pairs], dtype=chosen.dtype)
    return dpo_terms(chosen, rejected, ref_chosen, ref_rejected, counts, beta, nll_coefficient)


def _held_out_metrics(model, pairs, ref_chosen, ref_rejected, beta: float, nll_coefficient: float) -> dict[str, float]:
    policy_chosen, policy_rejected = _logprobs(model, pairs)
    counts_chosen = torch.tensor([p.chosen.trained_tokens for p in pairs], dtype=policy_chosen.dtype)
    counts_rejected = torch.tensor([p.rejected.trained_tokens for p in pairs], dtype=policy_chosen.dtype)
    terms = dpo_terms(policy_chosen, policy_rejected, ref_chosen, ref_rejected, counts_chosen, beta, nll_coefficient)
    return {
        "dpo_loss": float(terms.preference_loss.mean()),
        "reward_margin": float(terms.margins.mean()),
        # A tie (margin 0, as before any training) is not a win.
        "preference_accuracy": float((terms.margins > 0).float().mean()),
        # Does the policy itself find the chosen answer likelier, per token?
        "likelihood_accuracy": float((policy_chosen / counts_chosen > policy_rejected / counts_rejected).float().mean()),
        "chosen_nll": float(terms.nll.mean()),
    }


def run_dpo(preset: Preset, sft_model_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()) -> StageResult:
    sft_cfg, cfg = preset.post_training.sft, preset.post_training.dpo
    check_languages(sft_cfg.languages)
    check_output_free(output_uri)
    flush_denormals()
    started = time.perf_counter()
    model = load_input_model(sft_model_uri)

    tokenizer = load_tokenizer()
    train_dialogs, held_out_dialogs = split_conversations(
        load_conversations(sft_cfg.languages), sft_cfg.held_out_fraction, sft_cfg.seed
    )

    def encoded(dialogs, limit: int) -> list[EncodedPair]:
        pairs = seeded_order(build_pairs(dialogs), cfg.seed)
        return usable_pairs(
            pairs, limit, sft_cfg.seq_len, lambda p: encode_pair(p, tokenizer, cfg.mask_formatting_tokens)
        )

    train = encoded(train_dialogs, cfg.steps * cfg.batch_size)
    held_out = encoded(held_out_dialogs, cfg.max_eval_pairs)
    if not train or not held_out:
        raise AlignmentError(f"no preference pairs fit post_training.sft.seq_len={sft_cfg.seq_len}; raise it")

    ref_train_chosen, ref_train_rejected = _logprobs(model, train)
    ref_held_chosen, ref_held_rejected = _logprobs(model, held_out)
    before = _held_out_metrics(model, held_out, ref_held_chosen, ref_held_rejected, cfg.beta, cfg.nll_coefficient)

    adapt(model, cfg.lora_rank, cfg.lora_alpha, cfg.seed)
    optimizer = make_optimizer(model, cfg.lr, cfg.optimizer)
    model.train()
    reporter = ProgressReporter(ProgressChannel.from_env(), cfg.steps)
    for step, indices in enumerate(batch_indices(len(train), cfg.batch_size, cfg.steps, cfg.seed), start=1):
        batch = [train[i] for i in indices]
        terms = _terms(
            model, batch, ref_train_chosen[indices], ref_train_rejected[indices], cfg.beta, cfg.nll_coefficient
        )
        grad_norm = optimizer_step(model, optimizer, terms.loss, cfg.optimizer.grad_clip_norm)
        metrics.log_metrics(
            {
                "train_loss": float(terms.loss.detach()),
                "train_reward_margin": float(terms.margins.mean()),
                "grad_norm": grad_norm,
            },
            step=step,
        )
        reporter.step(step, {"loss": float(terms.loss.detach())})
    after = _held_out_metrics(model, held_out, ref_held_chosen, ref_held_rejected, cfg.beta, cfg.nll_coefficient)

    publish_model(model, output_uri)
    result_metrics = {f"held_out_{name}_before": value for name, value in before.items()}
    result_metrics |= {f"held_out_{name}_after": value for name, value in after.items()}
    metrics.log_metrics(result_metrics)
    result_metrics |= {
        "train_pairs": float(len(train)),
        "held_out_pairs": float(len(held_out)),
        "seconds": time.perf_counter() - started,
    }
    report = {
        "pairs": "chosen = the dialog's real last answer; rejected = the same answer with its words scrambled",
        "mask_formatting_tokens": cfg.mask_formatting_tokens,
        "beta": cfg.beta,
        "nll_coefficient": cfg.nll_coefficient,
    }
    return StageResult(outputs={"model": output_uri}, metrics=result_metrics, report=report)
