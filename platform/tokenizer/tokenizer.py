"""The Llama 3 tokenizer: tiktoken BPE over the 128,000 ranks shipped with llama-models, plus 256 special tokens.

Special-token ids follow the official Llama 3.1 release (128005 and 128011+ are reserved tokens; later
llama-models versions renamed a few of these reserved slots, which changes no id used by Llama 3.1).
"""
import base64
import functools
import importlib.resources
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import AbstractSet, Literal

import tiktoken

# The pre-tokenization regex of Llama 3 (shared with the Hugging Face export).
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_NAMED_SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
)
NUM_SPECIAL_TOKENS = 256
SPECIAL_TOKENS: tuple[str, ...] = _NAMED_SPECIAL_TOKENS + tuple(
    f"<|reserved_special_token_{i}|>" for i in range(3, 3 + NUM_SPECIAL_TOKENS - len(_NAMED_SPECIAL_TOKENS))
)

# tiktoken panics on inputs over ~400k characters, and its BPE is quadratic on very long runs of
# whitespace or non-whitespace (openai/tiktoken#195): encode such inputs in pieces.
_MAX_ENCODE_CHARS = 400_000
_MAX_RUN_CHARS = 25_000
_RUNS = re.compile(r"\s+|\S+")

AllowedSpecial = AbstractSet[str] | Literal["all"]


def default_model_path() -> Path:
    """The BPE ranks file of the llama-models package (found without importing its modules)."""
    return Path(str(importlib.resources.files("llama_models") / "llama3" / "tokenizer.model"))


def load_ranks(path: Path) -> dict[bytes, int]:
    """Parse a tiktoken ranks file: one `base64(token) rank` pair per line."""
    ranks = {}
    for line in path.read_text(encoding="ascii").splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _split_long_runs(text: str) -> Iterator[str]:
    """Cut text so that no piece holds more than _MAX_RUN_CHARS consecutive (non-)whitespace characters."""
    start = 0
    for run in _RUNS.finditer(text):
        for cut in range(run.start() + _MAX_RUN_CHARS, run.end(), _MAX_RUN_CHARS):
            yield text[start:cut]
            start = cut
    yield text[start:]


class Tokenizer:
    """Encode and decode Llama 3 token ids.

    By default `encode` treats every character of its input as ordinary text, so a user typing
    "<|eot_id|>" gets the tokens of that string, never the end-of-turn token. Pass
    `allowed_special` to let chosen (or "all") special-token strings map to their ids.
    """

    def __init__(self, model_path: Path | None = None) -> None:
        path = model_path or default_model_path()
        self.model_path = path
        ranks = load_ranks(path)
        self._special = {token: len(ranks) + i for i, token in enumerate(SPECIAL_TOKENS)}
        self._model = tiktoken.Encoding(
            name=path.name, pat_str=SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens=self._special
        )
        self.mergeable_ranks: Mapping[bytes, int] = MappingProxyType(ranks)
        self.special_tokens: Mapping[str, int] = MappingProxyType(self._special)

    def __reduce__(self):
        # Pickled as its file (e.g. to Ray workers): each process loads it once, not 3 MB of ranks per task.
        return load_tokenizer, (self.model_path,)

    @property
    def vocab_size(self) -> int:
        return len(self.mergeable_ranks) + len(self.special_tokens)

    @property
    def bos_id(self) -> int:
        return self._special["<|begin_of_text|>"]

    @property
    def eos_id(self) -> int:
        return self._special["<|end_of_text|>"]

    @property
    def eot_id(self) -> int:
        return self._special["<|eot_id|>"]

    @property
    def eom_id(self) -> int:
        return self._special["<|eom_id|>"]

    @property
    def python_tag_id(self) -> int:
        return self._special["<|python_tag|>"]

    @property
    def start_header_id(self) -> int:
        return self._special["<|start_header_id|>"]

    @property
    def end_header_id(self) -> int:
        return self._special["<|end_header_id|>"]

    @property
    def pad_id(self) -> int:
        return self._special["<|finetune_right_pad_id|>"]

    @property
    def stop_ids(self) -> frozenset[int]:
        """Ids that end a generation: end of text, end of message, end of turn."""
        return frozenset((self.eos_id, self.eom_id, self.eot_id))

    def encode(
        self, text: str, *, bos: bool = False, eos: bool = False, allowed_special: AllowedSpecial = frozenset()
    ) -> list[int]:
        """Token ids of text; special-token strings in it stay plain text unless listed in allowed_special."""
        ids = [self.bos_id] if bos else []
        for i in range(0, len(text), _MAX_ENCODE_CHARS):
            for piece in _split_long_runs(text[i : i + _MAX_ENCODE_CHARS]):
                ids.extend(self._model.encode(piece, allowed_special=allowed_special, disallowed_special=()))
        if eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids; special tokens appear as their strings, invalid UTF-8 as U+FFFD."""
        return self._model.decode(list(ids))

    def token_bytes(self, token_id: int) -> bytes:
        return self._model.decode_single_token_bytes(token_id)


@functools.lru_cache(maxsize=4)
def load_tokenizer(model_path: Path | None = None) -> Tokenizer:
    """The tokenizer for model_path (default: the llama-models Llama 3 file), loaded once per path."""
    return Tokenizer(model_path)
