"""MLflow tracking: one parent run per pipeline run, a nested child run per stage, and a model
registry whose versions point at artifact URIs (aliases: candidate, production, ...).

The store is MLFLOW_TRACKING_URI or an explicit URI, else sqlite under LLAMAOPS_HOME.
mlflow itself is imported lazily: importing this package stays cheap.
"""
from .connection import TrackingError, check_tracking, resolve_tracking_uri, tracking_client
from .registry import model_uri_for, register_model, set_alias
from .runs import PipelineTracker, StageRun

__all__ = [
    "PipelineTracker",
    "StageRun",
    "TrackingError",
    "check_tracking",
    "model_uri_for",
    "register_model",
    "resolve_tracking_uri",
    "set_alias",
    "tracking_client",
]
