"""The Llama 3.1 model family: architecture, KV cache, sizing and Hugging Face interop."""
from .kv_cache import KVCache
from .transformer import Transformer

__all__ = ["KVCache", "Transformer"]
