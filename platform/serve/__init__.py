"""Inference serving: a continuous-batching engine over the KV cache and an OpenAI-compatible server."""
from .engine import Engine, EngineClosed, QueueFull, Request
from .loading import LoadedModel, load_for_serving
from .sampling import SamplingParams

__all__ = ["Engine", "EngineClosed", "LoadedModel", "QueueFull", "Request", "SamplingParams", "load_for_serving"]
