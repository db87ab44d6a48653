"""Answer extraction and exact match for generation tasks.

An extractor pulls the answer out of a model's completion: `regex` (group 1 of the first match,
or the whole match when the pattern has no group: lm-eval's `regex` + `take_first` filters),
`first_number` or `last_number`. Both sides of the comparison are normalised as lm-eval's GSM8K
exact match does (case, thousands separators, `$`, a trailing period); numbers then compare by
value, so "8.0" matches "8".
"""
import re
from typing import Literal

Extractor = Literal["regex", "first_number", "last_number"]
EXTRACTORS: tuple[Extractor, ...] = ("regex", "first_number", "last_number")

NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


def extract_answer(completion: str, extractor: Extractor, pattern: str | None = None) -> str | None:
    """The answer in a completion, or None when there is none."""
    if extractor == "regex":
        if pattern is None:
            raise ValueError("the regex extractor needs a pattern")
        match = re.search(pattern, completion)
        if match is None:
            return None
        return match.group(1) if match.re.groups else match.group(0)
    numbers = NUMBER.findall(completion)
    if not numbers:
        return None
    return numbers[0] if extractor == "first_number" else numbers[-1]


def normalise(answer: str) -> str:
    text = answer.strip().lower().replace(",", "").replace("$", "")
    return text[:-1].rstrip() if text.endswith(".") else text


def exact_match(extracted: str | None, reference: str) -> bool:
    if extracted is None:
        return False
    got, want = normalise(extracted), normalise(reference)
    try:
        return float(got) == float(want)
    except ValueError:
        return got == want
