"""Deterministic held-out membership by content, so a text never moves between splits."""
import hashlib


def is_held_out(key: str, fraction: float, seed: int) -> bool:
    digest = hashlib.blake2b(f"align-split\0{seed}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / float(1 << 64) < fraction
