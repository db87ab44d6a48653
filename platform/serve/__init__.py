"""Inference serving: model loading, sampling and a continuous-batching engine."""
from .engine import Engine, EngineFull, Request, RequestError
from .loading import load_serving_model
from .sampling import SamplingParams, sample

__all__ = ["Engine", "EngineFull", "Request", "RequestError", "SamplingParams", "load_serving_model", "sample"]
