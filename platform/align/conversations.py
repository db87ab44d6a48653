"""Dialogs from the installed chatterbot-corpus package, as Llama 3.1 messages.

Each chatterbot conversation alternates user and assistant turns; a trailing user turn without an
answer is dropped. Conversations whose first question is the same go to the same split (the corpus
repeats questions with different answers), so no held-out question is ever trained on.
"""
from dataclasses import dataclass
from pathlib import Path

import yaml

from llamaops.platform.data.readers import chatterbot_data_dir
from llamaops.platform.tokenizer import Message

from .errors import AlignmentError
from .split import is_held_out


@dataclass(frozen=True)
class Conversation:
    language: str  # chatterbot's folder name, e.g. "german"
    topic: str  # the YAML file it came from, e.g. "german/greetings.yml"
    messages: tuple[Message, ...]

    @property
    def split_key(self) -> str:
        return self.messages[0].content.strip().lower()


def available_languages(root: Path | None = None) -> list[str]:
    root = root or chatterbot_data_dir()
    return sorted(path.name for path in root.iterdir() if path.is_dir())


def check_languages(languages: list[str]) -> None:
    available = available_languages()
    if unknown := sorted(set(languages) - set(available)):
        raise AlignmentError(f"unknown chatterbot languages {unknown}; choose from {', '.join(available)}")


def _messages(turns: list) -> tuple[Message, ...]:
    texts = [str(turn).strip() for turn in turns]
    pairs = len(texts) // 2
    if pairs == 0 or any(not text for text in texts[: 2 * pairs]):
        return ()
    return tuple(Message("user" if i % 2 == 0 else "assistant", text) for i, text in enumerate(texts[: 2 * pairs]))


def load_conversations(languages: list[str]) -> list[Conversation]:
    """All usable conversations of `languages`, in a fixed order, without exact duplicates."""
    check_languages(languages)
    root = chatterbot_data_dir()
    seen: set[tuple[str, ...]] = set()
    conversations = []
    for language in languages:
        for path in sorted((root / language).glob("*.yml")):
            content = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader) or {}
            for turns in content.get("conversations") or []:
                messages = _messages(turns) if isinstance(turns, list) else ()
                identity = tuple(m.content for m in messages)
                if messages and identity not in seen:
                    seen.add(identity)
                    conversations.append(Conversation(language, str(path.relative_to(root)), messages))
    return conversations


def split_conversations(
    conversations: list[Conversation], held_out_fraction: float, seed: int
) -> tuple[list[Conversation], list[Conversation]]:
    """(train, held_out), disjoint in first questions."""
    held = [is_held_out(c.split_key, held_out_fraction, seed) for c in conversations]
    train = [c for c, h in zip(conversations, held) if not h]
    held_out = [c for c, h in zip(conversations, held) if h]
    return train, held_out
