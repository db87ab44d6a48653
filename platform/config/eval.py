"""How much evaluation runs: caps that keep a tiny run to about a minute on a laptop CPU.

The thresholds a model must meet live in stages.EvalGate; this class only sizes the measurements.
"""
from pydantic import Field, PositiveInt, field_validator

from .base import Config

MMLU_LANGUAGES = ("de", "es", "fr", "hi", "it", "pt", "th")


class EvalConfig(Config):
    perplexity_windows: PositiveInt = 16  # validation windows at the pretraining seq_len, spread evenly
    perplexity_batch_size: PositiveInt = 4
    # Llama 3.1's multilingual MMLU dev samples (5 per subject and language) shipped in lm-eval.
    multiple_choice_languages: list[str] = Field(default=["de", "es", "fr", "it", "pt"], min_length=1)
    multiple_choice_questions: PositiveInt = 64  # sampled deterministically from all languages
    multiple_choice_max_tokens: PositiveInt = 256  # skip questions longer than this (question + choice)
    safety_prompts: PositiveInt = 16  # per kind (harmful, borderline), from the held-out test split
    max_new_tokens: PositiveInt = 32
    generation_batch_size: PositiveInt = 8
    seed: int = 0

    @field_validator("multiple_choice_languages")
    @classmethod
    def _check_languages(cls, languages: list[str]) -> list[str]:
        if unknown := sorted(set(languages) - set(MMLU_LANGUAGES)):
            raise ValueError(f"{unknown} are not shipped; choose from {list(MMLU_LANGUAGES)}")
        return languages
