"""Calls a platform stage function by its step (imported only when the step runs)."""
import importlib

from llamaops.platform.config import Preset
from llamaops.platform.stage import MetricsSink, StageResult

from .stages import StageSpec


def call_stage(spec: StageSpec, preset: Preset, inputs: list[str], output_uri: str, metrics: MetricsSink) -> StageResult:
    if len(inputs) != len(spec.inputs):
        raise TypeError(f"step {spec.name} takes inputs {spec.inputs}, got {len(inputs)} URIs")
    module_name, function_name = spec.run_function.split(":")
    run = getattr(importlib.import_module(f"llamaops.platform.{module_name}"), function_name)
    return run(preset, *inputs, output_uri=output_uri, metrics=metrics)
