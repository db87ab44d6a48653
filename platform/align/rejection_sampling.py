"""Rejection sampling (Llama 3): K sampled replies per prompt from the current model, scored by the
reward model, the best kept as new SFT data; throughput reported in samples per second.

Both models run on Ray workers (eval/model_workers.py) on the SFT stage's layout: groups of
its TP ranks, each rank holding its shards of one model at a time, the groups sharing the
prompts. Sampling is the serving engine's continuous batching and seeded sampler.
"""
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from llamaops.platform.config import Preset
from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.config.resources import CPU_RANK_THREADS
from llamaops.platform.config.stages import RejectionSamplingConfig
from llamaops.platform.eval.generation import per_prompt
from llamaops.platform.eval.model_workers import ModelWorkers, WorkerLayout
from llamaops.platform.serve.sampling import SamplingParams
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult
from llamaops.platform.store import fetched, staged_output
from llamaops.platform.tokenizer import Message, Tokenizer, encode_dialog_for_generation, load_tokenizer

from .conversations import check_languages, load_conversations, split_conversations
from .errors import AlignmentError
from .examples import encode_dialog
from .preferences import seeded_order
from .training import check_output_free


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


def best_of(prompts: Sequence[tuple[Message, ...]], replies: Sequence[Sequence[str]],
            rewards: Sequence[float]) -> list[Selection]:
    """Each prompt's highest-reward reply (the first among equals); `rewards` in the order of the
    replies flattened prompt by prompt."""
    selections, at = [], 0
    for prompt, options in zip(prompts, replies):
        scores = rewards[at : at + len(options)]
        at += len(options)
        best = max(range(len(options)), key=scores.__getitem__)
        selections.append(Selection(tuple(prompt), options[best], scores[best], sum(scores) / len(options)))
    return selections


def scored_tokens(tokenizer: Tokenizer, dialog: Sequence[Message], reply: str) -> list[int]:
    """What the reward model reads of a dialog ending in `reply`: the inputs of its next-token
    pairs, so the score sits at the token before the closing <|eot_id|> (align/reward.py)."""
    return encode_dialog((*dialog, Message("assistant", reply)), tokenizer).ids[:-1]


def rejection_sample(workers: ModelWorkers, policy_uri: str, reward_model_uri: str, score_token: int,
                     tokenizer: Tokenizer, prompts: Sequence[tuple[Message, ...]], cfg: RejectionSamplingConfig,
                     seed: int = 0) -> RejectionSamplingResult:
    """Best-of-K replies of the policy at `policy_uri` by the reward model at `reward_model_uri`."""
    if not prompts:
        raise AlignmentError("rejection sampling needs at least one prompt")
    k = cfg.samples_per_prompt
    started = time.perf_counter()
    encoded = [encode_dialog_for_generation(list(dialog), tokenizer) for dialog in prompts]
    params = SamplingParams(max_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=seed)
    workers.load(policy_uri)
    replies = per_prompt(workers.generate([p for p in encoded for _ in range(k)], params, cfg.batch_size), k)
    workers.load(reward_model_uri)
    dialogs = [scored_tokens(tokenizer, prompt, reply) for prompt, options in zip(prompts, replies) for reply in options]
    rewards = workers.scores(dialogs, score_token)
    seconds = time.perf_counter() - started
    return RejectionSamplingResult(best_of(prompts, replies, rewards), len(prompts) * k, len(prompts) * k / seconds)


def sampling_layout(preset: Preset, layout: ParallelLayout) -> WorkerLayout:
    """A post-training stage's ranks (its `layout`) as generation groups of the preset's sampling TP."""
    tp, world = preset.post_training.sampling_tp, layout.world_size
    return WorkerLayout(tp=tp, groups=world // tp, use_gpu=preset.resources.gpus_per_node > 0,
                            threads=CPU_RANK_THREADS)


SAMPLES_FILE = "samples.jsonl"


def run_rejection_sampling(
    preset: Preset, model_uri: str, reward_model_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()
) -> StageResult:
    """Best-of-K replies to training prompts (dialogs minus their last answer), written as dialogs
    to samples.jsonl for the next SFT."""
    sft_cfg, cfg = preset.post_training.sft, preset.post_training.rejection_sampling
    check_languages(sft_cfg.languages)
    check_output_free(output_uri)
    train_dialogs, _ = split_conversations(load_conversations(sft_cfg.languages), sft_cfg.held_out_fraction, sft_cfg.seed)
    prompts = [c.messages[:-1] for c in seeded_order(train_dialogs, sft_cfg.seed)][: cfg.prompts]
    layout = sampling_layout(preset, sft_cfg.layout)
    with ModelWorkers(layout) as workers:
        result = rejection_sample(workers, model_uri, reward_model_uri, preset.post_training.reward_model.score_token,
                                  load_tokenizer(), prompts, cfg, sft_cfg.seed)
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
    return StageResult(outputs={"samples": output_uri}, metrics=result_metrics,
                       report={"samples_per_prompt": cfg.samples_per_prompt, "prompts": len(prompts),
                               "generation": {"tp": layout.tp, "groups": layout.groups}})


def load_samples(uri: str) -> list[tuple[Message, ...]]:
    """The dialogs a rejection-sampling artifact holds."""
    with fetched(uri) as directory:
        lines = (directory / SAMPLES_FILE).read_text(encoding="utf-8").splitlines()
    return [tuple(Message(t["role"], t["content"]) for t in json.loads(line)["messages"]) for line in lines if line]
