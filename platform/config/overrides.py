"""Build a preset with overrides from a YAML file and `key=value` pairs, validated in one place.

Every failure is a ConfigError whose message is one line naming the field, the bad value and
what is allowed.
"""
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .preset import Preset
from .presets import PRESETS


class ConfigError(ValueError):
    """A user's configuration mistake; the message says what to change."""


def load_preset(name: str, config_file: str | Path | None = None, overrides: list[str] | tuple = ()) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; choose one of: {', '.join(PRESETS)}")
    values = PRESETS[name]().model_dump()
    if config_file is not None:
        _merge(values, _read_yaml(Path(config_file)), path="")
    for override in overrides:
        key, value = _parse_override(override)
        _set(values, key, value)
    try:
        return Preset.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass a YAML file of preset fields")
    try:
        data = yaml.safe_load(path.read_text())
    except RecursionError:
        raise ConfigError(f"config file {path} nests too deeply; give a mapping of preset fields") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not text; pass a YAML file of preset fields") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of preset fields, e.g. 'pretrain: {{...}}'")
    return data


def _parse_override(override: str) -> tuple[str, Any]:
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{override}' must look like key=value, e.g. pretrain.optimizer.peak_lr=1e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw  # let validation say what the field wants
    except RecursionError:
        raise ConfigError(f"override '{key.strip()}' nests its value too deeply; give a plain value") from None
    return key.strip(), value


def _merge(base: dict, update: dict, path: str) -> None:
    for key, value in update.items():
        where = f"{path}{key}"
        if key not in base:
            raise ConfigError(f"unknown config field '{where}'; allowed here: {', '.join(base)}")
        if isinstance(base[key], dict) and isinstance(value, dict):
            _merge(base[key], value, f"{where}.")
        else:
            base[key] = value


def _set(values: dict, dotted: str, value: Any) -> None:
    node: Any = values
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        where = ".".join(parts[: depth + 1])
        key: str | int = part
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"'{where}' needs a list index from 0 to {len(node) - 1}")
            key = int(part)
        elif not isinstance(node, dict) or part not in node:
            allowed = ", ".join(node) if isinstance(node, dict) else "nothing (it is a single value)"
            raise ConfigError(f"unknown config field '{where}'; allowed here: {allowed}")
        if depth == len(parts) - 1:
            node[key] = value
        else:
            node = node[key]


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = ".".join(str(p) for p in error["loc"]) or "preset"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"unknown config field '{field}'"
    value = error.get("input")
    if isinstance(value, (dict, list)):  # a check across fields: the message names them
        return f"{field}: {message}"
    return f"{field}: got {value!r}: {message}"
