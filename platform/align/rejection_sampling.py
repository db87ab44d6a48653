"""Rejection sampling (Llama 3): K sampled replies per prompt from the current model, scored by the
reward model, the best kept as new SFT data; throughput reported in samples per second.

Sampling goes through eval.generation's batched, seeded sampler (the serving engine can stand in).
"""
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from llamaops.platform.config.stages import RejectionSamplingConfig
from llamaops.platform.eval.generation import Sampling, sample_chat_replies
from llamaops.platform.model import Transformer
from llamaops.platform.tokenizer import Message, Tokenizer

from .errors import AlignmentError
from .examples import encode_dialog
from .reward import RewardModel

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
    replies = sample_chat_replies(policy.eval(), tokenizer, prompts, k, cfg.max_new_tokens,
                                  Sampling(cfg.temperature, 1.0, seed), batch_size)
    flat_dialogs = [p for p in prompts for _ in range(k)]
    rewards = score_replies(reward_model, tokenizer, flat_dialogs, [r for rs in replies for r in rs])
    selections = []
    for n, (prompt, options) in enumerate(zip(prompts, replies)):
        scores = rewards[n * k : (n + 1) * k]
        best = max(range(k), key=scores.__getitem__)
        selections.append(Selection(tuple(prompt), options[best], scores[best], sum(scores) / k))
    seconds = time.perf_counter() - started
    return RejectionSamplingResult(selections, len(prompts) * k, len(prompts) * k / seconds)
