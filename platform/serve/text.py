"""Incremental detokenization with stop sequences.

Text is released only when it can no longer change: an incomplete UTF-8 character (decoded as
U+FFFD) and any tail that could still grow into a stop sequence are held back, so a streaming
client never sees text that the final answer does not contain.
"""
from collections.abc import Sequence

from llamaops.platform.tokenizer import Tokenizer


class IncrementalText:
    def __init__(self, tokenizer: Tokenizer, stop: Sequence[str] = ()) -> None:
        self._tokenizer = tokenizer
        self._stop = tuple(dict.fromkeys(s for s in stop if s))
        self._longest = max((len(s) for s in self._stop), default=0)
        self._ids: list[int] = []
        self._emitted = 0
        self.text = ""
        self.stopped = False  # a stop sequence was found; text ends before it

    def add(self, token_id: int) -> str:
        """Append a token; return the newly final text (maybe empty)."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        text = self._tokenizer.decode(self._ids)
        # Released text is final and was searched already: a new match ends after it, so only the
        # tail from (released - longest stop + 1) on is searched, whatever the text's length.
        start = max(0, self._emitted - self._longest + 1)
        for stop in self._stop:
            at = text.find(stop, start)
            if at != -1:
                text, self.stopped = text[:at], True
        self.text = text
        if self.stopped:
            return self._release(len(text))
        safe = len(text.rstrip("\ufffd"))
        for stop in self._stop:
            for k in range(min(len(stop) - 1, safe), 0, -1):
                if text[:safe].endswith(stop[:k]):
                    safe -= k
                    break
        return self._release(safe)

    def finish(self) -> str:
        """Everything not yet released (the generation ended)."""
        return self._release(len(self.text))

    def _release(self, upto: int) -> str:
        if upto <= self._emitted:
            return ""
        piece, self._emitted = self.text[self._emitted : upto], upto
        return piece
