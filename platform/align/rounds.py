"""Llama 3's iterative post-training: `post_training.rounds` rounds of
reward model -> rejection sampling -> SFT (human + best sampled dialogs) -> DPO,
each round starting from the previous round's DPO model.

Every stage's artifact lives under OUTPUT/round-N/<stage>; every metric goes to the sink as
`round<N>.<stage>.<name>` (an MLflow run when the sink is one), so all rounds are tracked.
"""
from dataclasses import dataclass

from llamaops.platform.config import Preset
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult

from .dpo import run_dpo
from .rejection_sampling import run_rejection_sampling
from .reward_stage import run_reward_model
from .sft import run_sft


@dataclass
class _Prefixed:
    sink: MetricsSink
    prefix: str

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.sink.log_metrics({f"{self.prefix}{k}": v for k, v in metrics.items()}, step=step)


def run_round_sft(
    preset: Preset, init_model_uri: str, rejection_samples_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()
) -> StageResult:
    """A round's SFT: human-written dialogs plus the round's best rejection-sampled ones (a pipeline step)."""
    return run_sft(preset, init_model_uri, output_uri, metrics, rejection_samples_uri=rejection_samples_uri)


def run_rounds(preset: Preset, init_model_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()) -> StageResult:
    root, model_uri = output_uri.rstrip("/"), init_model_uri
    result_metrics: dict[str, float] = {}
    outputs: dict[str, str] = {}
    for number in range(1, preset.post_training.rounds + 1):
        where = f"{root}/round-{number}"

        def sink(stage: str, number: int = number) -> _Prefixed:
            return _Prefixed(metrics, f"round{number}.{stage}.")

        reward = run_reward_model(preset, model_uri, f"{where}/reward_model", sink("reward_model"))
        samples = run_rejection_sampling(
            preset, model_uri, reward.outputs["reward_model"], f"{where}/rejection_sampling", sink("rejection_sampling")
        )
        sft = run_round_sft(preset, model_uri, samples.outputs["samples"], f"{where}/sft", sink("sft"))
        dpo = run_dpo(preset, sft.outputs["model"], f"{where}/dpo", sink("dpo"))
        for stage, result in (("reward_model", reward), ("rejection_sampling", samples), ("sft", sft), ("dpo", dpo)):
            result_metrics |= {f"round{number}.{stage}.{k}": v for k, v in result.metrics.items()}
            outputs |= {f"round{number}.{stage}.{k}": v for k, v in result.outputs.items()}
        model_uri = dpo.outputs["model"]
    return StageResult(outputs={"model": model_uri, **outputs}, metrics=result_metrics,
                       report={"rounds": preset.post_training.rounds})
