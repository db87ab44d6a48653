"""Model averaging (Llama 3 averages models from runs with different data or hyperparameters after
the RM, SFT and DPO stages): the element-wise mean of weights of models that share one config."""
from collections.abc import Sequence

import torch

from llamaops.platform.config import Preset
from llamaops.platform.model.checkpoint import load_model, read_model_config
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult
from llamaops.platform.store import fetched

from .errors import AlignmentError
from .training import check_output_free, publish_model


def average_models(model_uris: Sequence[str], output_uri: str, weights: Sequence[float] | None = None) -> str:
    """Publish the (weighted) mean of the models at `model_uris` to `output_uri`; all checks first."""
    if len(model_uris) < 2:
        raise AlignmentError("averaging needs at least two models")
    weights = list(weights) if weights is not None else [1.0] * len(model_uris)
    if len(weights) != len(model_uris) or any(w <= 0 for w in weights):
        raise AlignmentError(f"give one positive weight per model ({len(model_uris)}), got {weights}")
    check_output_free(output_uri)
    configs = []
    for uri in model_uris:
        with fetched(uri) as directory:
            configs.append(read_model_config(directory))
    if any(c != configs[0] for c in configs[1:]):
        raise AlignmentError("models to average must share one model config (same architecture and sizes)")

    total = sum(weights)
    averaged = None
    for uri, weight in zip(model_uris, weights):
        with fetched(uri) as directory:
            model = load_model(directory, dtype=torch.float32)
        if averaged is None:
            averaged, sums = model, {k: v.detach().clone() * (weight / total) for k, v in model.state_dict().items()}
        else:
            for key, value in model.state_dict().items():
                sums[key] += value * (weight / total)
    averaged.load_state_dict(sums)
    publish_model(averaged, output_uri)
    return output_uri


def run_average(preset: Preset, *model_uris: str, output_uri: str, metrics: MetricsSink = NoMetrics()) -> StageResult:
    """The pipeline's averaging step: the equal-weight mean of `model_uris` (the last rounds' DPO models)."""
    average_models(model_uris, output_uri)
    return StageResult(outputs={"model": output_uri}, metrics={"averaged_models": float(len(model_uris))},
                       report={"averaged": list(model_uris)})
