"""Inference serving: model loading, sampling and a continuous-batching engine."""
from .engine import Engine, EngineFull, Request
from .loading import load_serving_model
from .sampling import SamplingParams, sample

__all__ = ["Engine", "EngineFull", "Request", "SamplingParams", "load_serving_model", "sample"]
