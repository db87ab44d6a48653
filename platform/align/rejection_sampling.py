"""Rejection sampling (Llama 3): K sampled replies per prompt from the current model, scored by the
reward model, the best kept as new SFT data; throughput reported in samples per second.

Sampling goes through eval.generation, i.e. the serving engine's continuous batching and seeded sampler.
"""
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from llamaops.platform.config import Preset
from llamaops.platform.config.stages import RejectionSamplingConfig
from llamaops.platform.eval.generation import sample_each
from llamaops.platform.model import Transformer
from llamaops.platform.model.precision import flush_denormals
from llamaops.platform.serve.sampling import SamplingParams
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult
from llamaops.platform.store import fetched, staged_output
from llamaops.platform.tokenizer import Message, Tokenizer, encode_dialog_for_generation, load_tokenizer

from .conversations import check_languages, load_conversations, split_conversations
from .errors import AlignmentError
from .examples import encode_dialog
from .preferences import seeded_order
from .reward import RewardModel, load_reward_model
from .training import check_output_free, load_input_model

SCORE_BATCH = 16


@dataclass(frozen=True)
class Selection:
    prompt: tuple[Message, ...]
    reply: str
    reward: float  # the best of the prompt's samples
    mean_reward: float  # over all its samples


@dataclass
class RejectionSamplingResult:
    selections: list[Selection]
    samples: int
    samples_per_second: float  # generation + scoring

    @property
    def mean_best_reward(self) -> float:
        return sum(s.reward for s in self.selections) / len(self.selections)

    @property
    def mean_sample_reward(self) -> float:
        return sum(s.mean_reward for s in self.selections) / len(self.selections)


@torch.no_grad()
def score_replies(reward_model: RewardModel, tokenizer: Tokenizer, dialogs: Sequence[tuple[Message, ...]],
                  replies: Sequence[str]) -> list[float]:
    examples = [encode_dialog((*dialog, Message("assistant", reply)), tokenizer) for dialog, reply in zip(dialogs, replies)]
    reward_model.eval()
    scores = [reward_model(examples[s : s + SCORE_BATCH]) for s in range(0, len(examples), SCORE_BATCH)]
    return torch.cat(scores).tolist()


def rejection_sample(
    policy: Transformer,
    reward_model: RewardModel,
    tokenizer: Tokenizer,
    prompts: Sequence[tuple[Message, ...]],
    cfg: RejectionSamplingConfig,
    seed: int = 0,
    batch_size: int = 16,
) -> RejectionSamplingResult:
    if not prompts:
        raise AlignmentError("rejection sampling needs at least one prompt")
    k = cfg.samples_per_prompt
    started = time.perf_counter()
    encoded = [encode_dialog_for_generation(list(dialog), tokenizer) for dialog in prompts]
    params = SamplingParams(max_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=seed)
    replies = sample_each(policy.eval(), tokenizer, encoded, k, params, batch_size)
    flat_dialogs = [p for p in prompts for _ in range(k)]
    rewards = score_replies(reward_model, tokenizer, flat_dialogs, [r for rs in replies for r in rs])
    selections = []
    for n, (prompt, options) in enumerate(zip(prompts, replies)):
        scores = rewards[n * k : (n + 1) * k]
        best = max(range(k), key=scores.__getitem__)
        selections.append(Selection(tuple(prompt), options[best], scores[best], sum(scores) / k))
    seconds = time.perf_counter() - started
    return RejectionSamplingResult(selections, len(prompts) * k, len(prompts) * k / seconds)


SAMPLES_FILE = "samples.jsonl"


def run_rejection_sampling(
    preset: Preset, model_uri: str, reward_model_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()
) -> StageResult:
    """Best-of-K replies to training prompts (dialogs minus their last answer), written as dialogs
    to samples.jsonl for the next SFT."""
    sft_cfg, cfg = preset.post_training.sft, preset.post_training.rejection_sampling
    check_languages(sft_cfg.languages)
    check_output_free(output_uri)
    flush_denormals()
    train_dialogs, _ = split_conversations(load_conversations(sft_cfg.languages), sft_cfg.held_out_fraction, sft_cfg.seed)
    prompts = [c.messages[:-1] for c in seeded_order(train_dialogs, sft_cfg.seed)][: cfg.prompts]
    policy = load_input_model(model_uri)
    with fetched(reward_model_uri) as directory:
        reward_model = load_reward_model(directory, preset.post_training.reward_model.score_token)
    result = rejection_sample(policy, reward_model, load_tokenizer(), prompts, cfg, sft_cfg.seed, cfg.batch_size)
    with staged_output(output_uri) as directory:
        with open(directory / SAMPLES_FILE, "w", encoding="utf-8") as out:
            for s in result.selections:
                turns = [*({"role": m.role, "content": m.content} for m in s.prompt), {"role": "assistant", "content": s.reply}]
                out.write(json.dumps({"messages": turns, "reward": s.reward}, ensure_ascii=False) + "\n")
    result_metrics = {
        "samples": float(result.samples),
        "samples_per_second": result.samples_per_second,
        "mean_best_reward": result.mean_best_reward,
        "mean_sample_reward": result.mean_sample_reward,
    }
    metrics.log_metrics(result_metrics)
    return StageResult(outputs={"samples": output_uri}, metrics=result_metrics,
                       report={"samples_per_prompt": cfg.samples_per_prompt, "prompts": len(prompts)})


def load_samples(uri: str) -> list[tuple[Message, ...]]:
    """The dialogs a rejection-sampling artifact holds."""
    with fetched(uri) as directory:
        lines = (directory / SAMPLES_FILE).read_text(encoding="utf-8").splitlines()
    return [tuple(Message(t["role"], t["content"]) for t in json.loads(line)["messages"]) for line in lines if line]
