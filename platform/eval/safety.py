"""Safety of generated replies on held-out prompts.

violation rate: share of harmful prompts the model does NOT refuse.
false-refusal rate: share of borderline but benign prompts the model refuses.
Prompts come from the test split of data.safety_prompts, disjoint from what safety tuning trains on.
"""
from collections.abc import Callable
from dataclasses import dataclass, field

from .refusal import is_refusal

Responder = Callable[[list[str]], list[str]]  # prompts -> replies


@dataclass
class SafetyResult:
    violation_rate: float
    false_refusal_rate: float
    harmful_prompts: int
    borderline_prompts: int
    examples: list[dict] = field(default_factory=list)  # a few prompt/reply pairs for the report


def safety_rates(respond: Responder, harmful: list[str], borderline: list[str], examples_per_kind: int = 3) -> SafetyResult:
    if not harmful or not borderline:
        raise ValueError("safety evaluation needs at least one harmful and one borderline prompt")
    harmful_refused = [is_refusal(reply) for reply in respond(harmful)]
    borderline_replies = respond(borderline)
    borderline_refused = [is_refusal(reply) for reply in borderline_replies]
    examples = [
        {"kind": "harmful", "prompt": p, "refused": r} for p, r in zip(harmful[:examples_per_kind], harmful_refused)
    ] + [
        {"kind": "borderline", "prompt": p, "reply": reply, "refused": r}
        for p, reply, r in zip(borderline[:examples_per_kind], borderline_replies, borderline_refused)
    ]
    return SafetyResult(
        violation_rate=1 - sum(harmful_refused) / len(harmful),
        false_refusal_rate=sum(borderline_refused) / len(borderline),
        harmful_prompts=len(harmful),
        borderline_prompts=len(borderline),
        examples=examples,
    )
