"""`llamaops eval code` and `llamaops eval needle`: HumanEval pass@k and needle in a haystack on a
model directory, generating through the serving engine (generation.py)."""
from dataclasses import replace
from typing import Any

from llamaops.platform.serve.sampling import SamplingParams

from .errors import EvalInputError
from .evaluate import json_safe
from .generation import chat_replies, sample_each
from .harness import load_eval_model
from .humaneval import evaluate_humaneval, load_humaneval
from .needle import needle_accuracy, needle_cases
from .sandbox import DEFAULT_LIMITS, BatchRunner, SandboxLimits, require_sandbox


def run_code_eval(
    model_ref: str,
    problems: int,
    samples: int,
    ks: list[int],
    sampling: SamplingParams,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    limits: SandboxLimits = DEFAULT_LIMITS,
    run_programs: BatchRunner | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """`run_programs`: where the programs run (default: namespaces on this machine)."""
    from llamaops.platform.tokenizer import load_tokenizer

    if run_programs is None:
        require_sandbox()  # before loading anything: never generate code that cannot be run confined
    picked = load_humaneval()[:problems]
    if bad := [k for k in ks if not 1 <= k <= samples]:
        raise EvalInputError(f"pass@k needs 1 <= k <= --samples ({samples}); got k={bad}")
    tokenizer, model = load_tokenizer(), load_eval_model(model_ref, tracking_uri)

    def complete(prompts, n):
        encoded = [tokenizer.encode(text, bos=True) for text in prompts]
        return sample_each(model, tokenizer, encoded, n, replace(sampling, max_tokens=max_new_tokens), batch_size)

    metrics, results = evaluate_humaneval(complete, picked, samples, ks, limits, run_programs=run_programs)
    statuses = [s for r in results for s in r.statuses]
    return json_safe({
        "model": model_ref,
        "task": "humaneval",
        "problems": len(picked),
        "samples": samples,
        "metrics": metrics,
        "outcomes": {status: statuses.count(status) for status in sorted(set(statuses))},
    })


def run_needle(model_ref: str, lengths: list[int], depths: list[float], max_new_tokens: int = 16, seed: int = 0,
               tracking_uri: str | None = None) -> dict:
    from llamaops.platform.tokenizer import load_tokenizer

    tokenizer = load_tokenizer()
    cases = needle_cases(tokenizer, lengths, depths, seed)
    model = load_eval_model(model_ref, tracking_uri)
    if max(lengths) + max_new_tokens + 64 > model.cfg.max_seq_len:  # + 64: the chat format's tokens
        raise EvalInputError(f"needle length {max(lengths)} (+ reply) exceeds the model's max_seq_len {model.cfg.max_seq_len}")
    metrics = needle_accuracy(lambda prompts: chat_replies(model, tokenizer, prompts, max_new_tokens, 1), cases)
    return {"model": model_ref, "task": "needle", "lengths": lengths, "depths": depths, "metrics": metrics}
