"""Generation tasks: greedy completions through the serving engine, an extracted answer, exact match.

`exact_match` is the share of items whose extracted answer matches the reference (with its standard
error); `extracted` is the share where the extractor found an answer at all, which tells a model
that answers wrongly from one that does not answer in the expected form.
"""
from dataclasses import dataclass

from llamaops.platform.model import Transformer
from llamaops.platform.serve.sampling import SamplingParams
from llamaops.platform.tokenizer import Tokenizer

from .answers import exact_match, extract_answer
from .errors import EvalInputError
from .generation import generate
from .results import TaskResult, mean_and_stderr
from .tasks import GenerationTask, generation_items

METRICS = ("exact_match", "exact_match_stderr", "extracted")
BATCH = 8  # requests decoded together by the engine


@dataclass
class GenerationItemResult:
    completion: str
    extracted: str | None
    reference: str
    correct: bool


def score_completions(spec: GenerationTask, completions: list[str], references: list[str]) -> TaskResult:
    """Extract, match and aggregate: the scoring half of a generation task, given the completions."""
    items = []
    for completion, reference in zip(completions, references, strict=True):
        extracted = extract_answer(completion, spec.extractor, spec.regex)
        items.append(GenerationItemResult(completion, extracted, reference, exact_match(extracted, reference)))
    correct = [float(i.correct) for i in items]
    accuracy, stderr = mean_and_stderr(correct)
    extracted_share = sum(i.extracted is not None for i in items) / len(items)
    metrics = dict(zip(METRICS, (accuracy, stderr, extracted_share)))
    return TaskResult(spec.name, spec.kind, metrics, items, {"exact_match": correct})


def evaluate_generation(model: Transformer, tokenizer: Tokenizer, spec: GenerationTask) -> TaskResult:
    items = generation_items(spec)
    prompts = [tokenizer.encode(item.prompt, bos=True) for item in items]
    longest = max(map(len, prompts)) + spec.max_new_tokens
    if longest > model.cfg.max_seq_len:
        raise EvalInputError(
            f"task {spec.name}: a prompt plus max_new_tokens is {longest} tokens, more than the model's max_seq_len "
            f"{model.cfg.max_seq_len}; lower num_fewshot or max_new_tokens"
        )
    params = SamplingParams(max_tokens=spec.max_new_tokens, temperature=0.0, stop=tuple(spec.stop))
    completions = generate(model, tokenizer, prompts, params, BATCH)
    return score_completions(spec, completions, [item.reference for item in items])
