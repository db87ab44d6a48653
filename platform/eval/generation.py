"""Text generation for evaluation and alignment, through the serving engine (platform/serve):
continuous batching over one KV cache and its seeded greedy / temperature / top-k / top-p sampler.

One function, `generate`, does the work; `chat_replies` and `sample_each` only shape prompts.
"""
from collections.abc import Sequence
from dataclasses import replace

from llamaops.platform.model import Transformer
from llamaops.platform.serve.engine import Engine, Request
from llamaops.platform.serve.head import OutputHead
from llamaops.platform.serve.sampling import SamplingParams
from llamaops.platform.tokenizer import Message, Tokenizer, encode_dialog_for_generation


def generate(
    model: Transformer,
    tokenizer: Tokenizer,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams,
    max_batch: int = 16,
    head: OutputHead | None = None,
) -> list[str]:
    """The continuation of each token prompt until a stop id (the tokenizer's by default), a stop
    string or `params.max_tokens`. Request i draws with seed `params.seed + i`, so the same seed
    gives the same texts run to run, whatever the batch size. head: a tensor-parallel model's
    sharded output projection (serve/tensor_parallel.py)."""
    if not prompts:
        return []
    stop_ids = params.stop_ids or frozenset(tokenizer.stop_ids)
    longest = max(len(p) for p in prompts) + params.max_tokens
    # The greedy screen quantises the whole output matrix when the engine is built: only worth it
    # when the requests are greedy (an engine lives for one call here).
    engine = Engine(model, tokenizer, max_batch=min(max_batch, len(prompts)), max_queue=len(prompts),
                    max_seq_len=min(longest, model.cfg.max_seq_len), screen_greedy=params.greedy, head=head)
    seed = params.seed if params.seed is not None else 0
    requests = [
        engine.submit(Request(list(prompt), replace(params, seed=seed + i, stop_ids=stop_ids)))
        for i, prompt in enumerate(prompts)
    ]
    engine.run_until_idle()
    return [request.text for request in requests]


def chat_replies(
    model: Transformer, tokenizer: Tokenizer, user_prompts: Sequence[str], max_new_tokens: int, batch_size: int
) -> list[str]:
    """The assistant's greedy reply to each single-turn user prompt (Llama 3.1 dialog format)."""
    return generate(model, tokenizer, chat_prompts(tokenizer, user_prompts), greedy(max_new_tokens), batch_size)


def chat_prompts(tokenizer: Tokenizer, user_prompts: Sequence[str]) -> list[list[int]]:
    """Each single-turn user prompt as the tokens a reply is generated after."""
    return [encode_dialog_for_generation([Message("user", text)], tokenizer) for text in user_prompts]


def greedy(max_new_tokens: int) -> SamplingParams:
    return SamplingParams(max_tokens=max_new_tokens, temperature=0.0)


def sample_each(
    model: Transformer,
    tokenizer: Tokenizer,
    prompts: Sequence[Sequence[int]],
    samples_per_prompt: int,
    params: SamplingParams,
    max_batch: int = 16,
) -> list[list[str]]:
    """`samples_per_prompt` sampled continuations of each token prompt (sample s of prompt p is
    request p * samples_per_prompt + s, so its seed is fixed)."""
    k = samples_per_prompt
    return per_prompt(generate(model, tokenizer, [p for p in prompts for _ in range(k)], params, max_batch), k)


def per_prompt(texts: Sequence[str], k: int) -> list[list[str]]:
    """Texts of prompts repeated `k` times each, grouped back by prompt."""
    return [list(texts[n : n + k]) for n in range(0, len(texts), k)]
