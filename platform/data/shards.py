"""Packed token shards: the format between data preparation and training.

A shard directory holds, per split (`train`, `validation`):
    {split}.tokens.npy   uint32 [n_tokens]   every document's tokens, back to back
    {split}.starts.npy   int64  [n_docs]     offset of each document's first token
and `shards.json` with the tokenizer and counts. Training reads fixed-length windows of any
length from the memory-mapped stream; `document_ids` tell the model where documents begin so
attention never crosses a boundary. The same files serve pretraining (8K-style windows) and
long-context extension (longer windows) without re-tokenizing.
"""
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("train", "validation")
META_FILE = "shards.json"


def write_split(directory: Path, split: str, documents: Iterable[list[int]]) -> dict:
    """Write one split from tokenized documents; returns its counts."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; use one of {SPLITS}")
    chunks, starts, offset = [], [], 0
    for doc in documents:
        if len(doc) == 0:
            continue
        starts.append(offset)
        chunks.append(np.asarray(doc, dtype=np.uint32))
        offset += len(doc)
    tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint32)
    np.save(directory / f"{split}.tokens.npy", tokens)
    np.save(directory / f"{split}.starts.npy", np.asarray(starts, dtype=np.int64))
    return {"documents": len(starts), "tokens": int(offset)}


def write_meta(directory: Path, tokenizer: str, counts: dict[str, dict]) -> None:
    (directory / META_FILE).write_text(json.dumps({"tokenizer": tokenizer, "splits": counts}, indent=2) + "\n")


@dataclass
class TokenStream:
    """One split, memory-mapped, cut into windows of `seq_len + 1` tokens (inputs and targets)."""

    tokens: np.ndarray
    starts: np.ndarray

    @classmethod
    def open(cls, directory: Path, split: str) -> "TokenStream":
        directory = Path(directory)
        return cls(
            np.load(directory / f"{split}.tokens.npy", mmap_mode="r"),
            np.load(directory / f"{split}.starts.npy", mmap_mode="r"),
        )

    def num_windows(self, seq_len: int) -> int:
        return max((len(self.tokens) - 1) // seq_len, 0)

    def window(self, index: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens [seq_len + 1] of window `index` and the document id [seq_len + 1] of each token
        (ids count documents from the window's start, so they are small and comparable)."""
        begin = index * seq_len
        tokens = np.asarray(self.tokens[begin : begin + seq_len + 1], dtype=np.int64)
        # Document of each token = number of document starts at or before it.
        doc = np.searchsorted(self.starts, np.arange(begin, begin + len(tokens)), side="right")
        return tokens, (doc - doc[0]).astype(np.int64)
