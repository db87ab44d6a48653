"""Calls a platform stage function by its step name (imported only when the step runs)."""
import importlib

from llamaops.platform.config import Preset
from llamaops.platform.stage import MetricsSink, StageResult

from .stages import STAGES_BY_NAME


def call_stage(step: str, preset: Preset, inputs: list[str], output_uri: str, metrics: MetricsSink) -> StageResult:
    spec = STAGES_BY_NAME[step]
    if len(inputs) != len(spec.inputs):
        raise TypeError(f"step {step} takes inputs {spec.inputs}, got {len(inputs)} URIs")
    module_name, function_name = spec.run_function.split(":")
    run = getattr(importlib.import_module(f"llamaops.platform.{module_name}"), function_name)
    return run(preset, *inputs, output_uri, metrics)
