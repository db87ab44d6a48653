"""Safety-tuning dialogs: harmful prompts answered with a refusal in a helpful tone, and borderline
prompts answered helpfully (so the model learns not to over-refuse).

Refusals are llamaops's own templates: they decline first (so evaluation's refusal detector, which
reads the opening, recognises them), say why briefly, and offer a safe way forward, as the Llama 3
paper asks of safety responses. Each prompt gets the template picked by a hash of its text.

Helpful answers to borderline prompts open with one consistent, affirmative phrase (HELPFUL_OPENING),
as the refusals open with a consistent decline. The decision (help or decline) is then made at the
reply's first tokens and learned from the prompt alone; without it a small model learns the one
frequent opening (the refusal's) and refuses everything: on the tiny preset FRR went 0 -> 1 while
VR went 1 -> 0.
"""
import hashlib

from llamaops.platform.data.safety_prompts import Split, load_borderline_examples, load_safety_prompts
from llamaops.platform.tokenizer import Message

REFUSALS: tuple[str, ...] = (
    "I can't help with that, because it could seriously harm people. If you are worried about this"
    " topic for safety reasons, I'm glad to share general information on staying safe instead.",
    "I'm sorry, but I can't assist with this request. It could put others at risk. Is there something"
    " else I can help you with?",
    "I won't help with this, since it could cause real harm. I'd be happy to help with a related"
    " question that keeps everyone safe.",
    "I cannot provide that. It could be used to hurt people or break the law. If you tell me more about"
    " what you are trying to achieve, I can suggest a safe and legal way to do it.",
)


HELPFUL_OPENING = "Happy to help."


def refusal_for(prompt: str) -> str:
    digest = hashlib.blake2b(prompt.encode(), digest_size=8).digest()
    return REFUSALS[int.from_bytes(digest, "little") % len(REFUSALS)]


def refusal_dialogs(split: Split) -> list[tuple[Message, ...]]:
    return [
        (Message("user", prompt), Message("assistant", refusal_for(prompt)))
        for prompt in load_safety_prompts("harmful", split)
    ]


def borderline_dialogs(split: Split) -> list[tuple[Message, ...]]:
    return [(Message("user", prompt), Message("assistant", f"{HELPFUL_OPENING} {answer}"))
            for prompt, answer in load_borderline_examples(split)]
