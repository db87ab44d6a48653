"""Typed configuration: the one source of truth for every number of the recipe."""
from .deploy import DeployConfig
from .model import ModelConfig, RopeScaling
from .overrides import ConfigError, load_preset
from .parallel import ParallelLayout
from .preset import Preset
from .presets import PRESETS
from .resources import Resources

__all__ = ["ConfigError", "DeployConfig", "ModelConfig", "ParallelLayout", "PRESETS", "Preset", "Resources", "RopeScaling", "load_preset"]
