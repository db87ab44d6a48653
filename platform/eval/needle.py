"""Long-context retrieval: a needle (a random number stated once) hidden in a haystack of filler
text at several depths, for growing context lengths; the model is asked for the number.

A prompt's length is counted in Llama 3 tokens; the haystack is deterministic filler sentences
cut to fit, so every length and depth is reproducible. Accuracy is reported per length (over
depths) and overall.
"""
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llamaops.platform.tokenizer import Tokenizer

from .errors import EvalInputError

_FILLER = (
    "The river bends twice before it reaches the old mill. ",
    "Farmers in the valley grow barley, beans and apples. ",
    "A narrow road climbs the hill behind the church. ",
    "In winter the lake freezes and children skate on it. ",
    "The market opens early on Saturdays and closes at noon. ",
)
QUESTION = "\n\nWhat is the secret number mentioned in the text above? Answer with the number only."

# prompts -> one reply each (e.g. greedy chat replies from generation.chat_replies)
Responder = Callable[[Sequence[str]], list[str]]


@dataclass(frozen=True)
class NeedleCase:
    length: int  # target prompt length in tokens
    depth: float  # where the needle sits, 0 = start, 1 = end of the haystack
    secret: str
    prompt: str


def needle_cases(tokenizer: Tokenizer, lengths: Sequence[int], depths: Sequence[float], seed: int = 0) -> list[NeedleCase]:
    if not lengths or not depths or any(not 0 <= d <= 1 for d in depths):
        raise EvalInputError("needle in a haystack needs lengths and depths, each depth in [0, 1]")
    rng = random.Random(seed)
    filler = tokenizer.encode("".join(_FILLER) * (max(lengths) // 40 + 2))
    cases = []
    for length in lengths:
        for depth in depths:
            secret = str(rng.randrange(10_000, 100_000))
            needle = tokenizer.encode(f" The secret number is {secret}. ")
            budget = length - len(needle) - len(tokenizer.encode(QUESTION)) - 1  # - 1: BOS
            if budget < 1:
                raise EvalInputError(f"needle length {length} is too short for the needle and the question")
            hay = filler[:budget]
            at = round(depth * len(hay))
            text = tokenizer.decode(hay[:at] + needle + hay[at:]) + QUESTION
            cases.append(NeedleCase(length, depth, secret, text))
    return cases


def needle_accuracy(respond: Responder, cases: Sequence[NeedleCase]) -> dict[str, float]:
    """Fraction of cases whose reply contains the secret: overall and per length."""
    replies = respond([c.prompt for c in cases])
    found = [c.secret in reply for c, reply in zip(cases, replies)]
    metrics = {"needle_accuracy": sum(found) / len(found)}
    for length in sorted({c.length for c in cases}):
        hits = [f for c, f in zip(cases, found) if c.length == length]
        metrics[f"needle_accuracy@{length}"] = sum(hits) / len(hits)
    return metrics
