"""Export the tokenizer as Hugging Face files (tokenizer.json, tokenizer_config.json, special_tokens_map.json).

tokenizer.json is a byte-level BPE equivalent to the tiktoken encoding: same vocabulary, and a merge
for every way of writing a token as two tokens, ranked by the merged token's rank. That reproduces
tiktoken's rule "merge the adjacent pair whose concatenation has the lowest rank".
"""
import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .chat_template import CHAT_TEMPLATE
from .tokenizer import SPECIAL_TOKENS, SPLIT_PATTERN, Tokenizer, load_tokenizer

if TYPE_CHECKING:
    import tokenizers

MODEL_MAX_LENGTH = 131072
BOS_TOKEN = "<|begin_of_text|>"
EOS_TOKEN = "<|eot_id|>"  # what ends an assistant turn, which is what generation stops on
PAD_TOKEN = "<|finetune_right_pad_id|>"


@functools.cache
def _byte_chars() -> tuple[str, ...]:
    """GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the rest shift to U+0100+."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    for n, b in enumerate(b for b in range(256) if b not in chars):
        chars[b] = chr(256 + n)
    return tuple(chars[b] for b in range(256))


def _to_chars(token: bytes) -> str:
    table = _byte_chars()
    return "".join(table[b] for b in token)


@functools.lru_cache(maxsize=2)
def _vocab_and_merges(tokenizer: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The byte-level vocabulary and merges equivalent to the tokenizer's ranks."""
    ranks = tokenizer.mergeable_ranks
    ranked_merges = []
    for token, rank in ranks.items():
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                ranked_merges.append((rank, ranks[left], left, right))
    ranked_merges.sort()
    vocab = {_to_chars(token): rank for token, rank in ranks.items()}
    return vocab, [(_to_chars(left), _to_chars(right)) for *_, left, right in ranked_merges]


def build_hf_tokenizer(tokenizer: Tokenizer | None = None) -> "tokenizers.Tokenizer":
    """A `tokenizers.Tokenizer` that encodes like `tokenizer` (default: the Llama 3 one)."""
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
    from tokenizers import Tokenizer as HFTokenizer

    tokenizer = tokenizer or load_tokenizer()
    vocab, merges = _vocab_and_merges(tokenizer)
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    hf.decoder = decoders.ByteLevel()
    bos_id = tokenizer.bos_id
    hf.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS_TOKEN}:0 $A:0",
                pair=f"{BOS_TOKEN}:0 $A:0 {BOS_TOKEN}:1 $B:1",
                special_tokens=[(BOS_TOKEN, bos_id)],
            ),
        ]
    )
    # Added in id order, so each gets the id tiktoken gives it.
    hf.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    for token, token_id in tokenizer.special_tokens.items():
        if hf.token_to_id(token) != token_id:
            raise RuntimeError(f"{token} got id {hf.token_to_id(token)}, expected {token_id}")
    return hf


def write_hf_tokenizer_files(directory: Path, tokenizer: Tokenizer | None = None) -> list[Path]:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    special = {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN}
    config = {
        **special,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": MODEL_MAX_LENGTH,
        "model_input_names": ["input_ids", "attention_mask"],
        # Cleaning up would delete spaces before punctuation, so decode would no longer invert encode.
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    paths = [directory / name for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")]
    build_hf_tokenizer(tokenizer).save(str(paths[0]), pretty=False)
    paths[1].write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths[2].write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
    return paths
