"""Settings of each lifecycle stage. Defaults are the Llama 3 paper's (arXiv:2407.21783)."""
from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from .base import Config
from .parallel import ParallelLayout

AdamBeta = Annotated[float, Field(ge=0, lt=1)]  # what torch's AdamW accepts, checked before any worker starts


class Optimizer(Config):
    """AdamW with linear warmup then decay to a floor."""

    peak_lr: PositiveFloat
    min_lr: NonNegativeFloat
    warmup_steps: NonNegativeInt
    decay_steps: PositiveInt
    decay: Literal["cosine", "linear"] = "cosine"
    weight_decay: NonNegativeFloat = 0.1
    betas: tuple[AdamBeta, AdamBeta] = (0.9, 0.95)
    grad_clip_norm: PositiveFloat = 1.0

    @model_validator(mode="after")
    def _check_floor(self) -> "Optimizer":
        if self.min_lr > self.peak_lr:
            raise ValueError(f"min_lr {self.min_lr} is above peak_lr {self.peak_lr}")
        return self


class FineTuningOptimizer(Config):
    """A post-training stage's AdamW, at the stage's constant `lr`: the pretraining recipe's betas
    and clipping, and no weight decay (it would pull a trained model's weights towards zero)."""

    betas: tuple[AdamBeta, AdamBeta] = (0.9, 0.95)
    weight_decay: NonNegativeFloat = 0.0
    grad_clip_norm: PositiveFloat = 1.0


class BatchRampStep(Config):
    """From `after_tokens` trained on, use this sequence length and global batch."""

    after_tokens: NonNegativeInt
    seq_len: PositiveInt
    global_batch_tokens: PositiveInt


class LanguageRules(Config):
    """One language's own thresholds; a setting left out (null) takes DataConfig's. To switch a
    maximum off for one language, set it to its ceiling (1 for fractions)."""

    min_chars: int | None = Field(None, ge=0)
    min_alphanumeric_fraction: float | None = Field(None, ge=0, le=1)
    max_duplicate_line_fraction: float | None = Field(None, ge=0, le=1)
    max_duplicate_ngram_fraction: float | None = Field(None, ge=0, le=1)
    max_dirty_word_fraction: float | None = Field(None, ge=0, le=1)
    max_symbol_word_ratio: float | None = Field(None, ge=0)
    min_quality_score: float | None = Field(None, ge=0, le=1)
    dirty_words: list[str] | None = None  # this language's list (lowercase); DataConfig's English list otherwise


class DataConfig(Config):
    sources: list[str] = Field(min_length=1)  # corpus names or URIs (file://, s3://)
    validation_fraction: float = Field(0.01, gt=0, lt=1)
    seed: int = 0
    # Size caps (None = no cap): documents sampled per source, tokens kept in all.
    max_documents_per_source: PositiveInt | None = None
    max_tokens: PositiveInt | None = None
    # Quality filters and near-duplicate removal.
    min_chars: int = Field(64, ge=0)
    max_chars: PositiveInt = 1_000_000
    min_alphanumeric_fraction: float = Field(0.5, ge=0, le=1)  # letters, marks, digits among non-space chars
    max_duplicate_line_fraction: float = Field(0.3, ge=0, le=1)  # non-blank lines repeating an earlier line
    near_duplicate_jaccard: float = Field(0.8, gt=0, le=1)  # MinHash-estimated word n-gram Jaccard
    minhash_bands: PositiveInt = 16  # permutations = bands x rows
    minhash_rows: PositiveInt = 8
    minhash_ngram: PositiveInt = 5  # words per shingle
    # Bad input: a document with a line longer than this is skipped (minified or binary data).
    max_line_chars: PositiveInt = 100_000
    # Cleaning and PII scrubbing (emails, phone numbers, IP addresses -> placeholders).
    repair_mojibake: bool = True
    remove_boilerplate_lines: bool = True
    scrub_pii: bool = True
    # De-duplication: URL, exact document, and lines seen in more than `max_line_repeats` documents
    # of a bucket of `line_dedup_bucket_documents` (the paper: 6 within buckets of 30M documents).
    dedup_urls: bool = True
    max_line_repeats: PositiveInt | None = 6
    line_dedup_bucket_documents: PositiveInt = 30_000_000
    # Heuristic filters (Gopher/RefinedWeb-style ratios; None switches a rule off).
    duplicate_ngram_words: PositiveInt = 5
    max_duplicate_ngram_fraction: float | None = Field(0.5, ge=0, le=1)  # words inside repeated n-grams
    max_dirty_word_fraction: float | None = Field(0.05, ge=0, le=1)
    max_symbol_word_ratio: float | None = Field(0.1, ge=0)  # '#' and '...' per word
    max_token_kl_zscore: float | None = Field(4.0, gt=0)  # KL(document || corpus) unigram outliers
    token_kl_min_documents: PositiveInt = 100  # fewer documents: the corpus statistic is not trusted
    # Language identification (langid.py, offline); None keeps every language.
    identify_languages: bool = True
    languages: list[str] | None = None
    # Per-language branches: documents identified as a language here pass its own filter thresholds
    # and dirty words; every other language takes the settings above. The report counts per language.
    language_rules: dict[str, LanguageRules] = Field(default_factory=dict)
    # Model-based quality: a linear classifier of reference-quality vs random text; off without references.
    quality_reference_sources: list[str] = Field(default_factory=list)
    min_quality_score: float = Field(0.5, ge=0, le=1)
    # Data mix by category; "none" keeps every document. Categories default from the language
    # (code, multilingual, general); `source_categories` names a source's category instead.
    mix: Literal["none", "pretrain", "anneal"] = "none"
    pretrain_mix: dict[str, float] = Field(
        default_factory=lambda: {"general": 0.50, "math_reasoning": 0.25, "code": 0.17, "multilingual": 0.08}
    )
    # Annealing upsamples math and code (the paper gives no numbers: llamaops's choice).
    anneal_mix: dict[str, float] = Field(
        default_factory=lambda: {"general": 0.40, "math_reasoning": 0.30, "code": 0.30}
    )
    source_categories: dict[str, str] = Field(default_factory=dict)
    # Ray Data workers (one CPU each); on a cluster the data step's RayJob brings the CPU pods for them.
    workers: PositiveInt = 1


class PretrainConfig(Config):
    layout: ParallelLayout
    total_tokens: PositiveInt
    batch_ramp: list[BatchRampStep] = Field(min_length=1)
    optimizer: Optimizer
    checkpoint_every_steps: PositiveInt = 500
    keep_checkpoints: PositiveInt = 2  # older training checkpoints are deleted
    # Once a training stage has published its model (what later stages and resume read), its
    # checkpoints are deleted but the last this many (each holds the weights and AdamW's state).
    keep_checkpoints_after_publish: NonNegativeInt = 0
    # Every training stage's checkpoints are written in the background while training goes on
    # (copied to CPU memory first) and published once complete; False: training waits for each.
    async_checkpoints: bool = True
    seed: int = 0  # weight initialisation

    @property
    def seq_len(self) -> int:
        return self.batch_ramp[-1].seq_len

    @model_validator(mode="after")
    def _check_ramp(self) -> "PretrainConfig":
        starts = [step.after_tokens for step in self.batch_ramp]
        if starts[0] != 0 or starts != sorted(starts):
            raise ValueError("batch_ramp must start at after_tokens 0 and be in increasing order")
        return self


class ShortContextGate(Config):
    """Each long-context stage must recover the pretrained model's loss on short windows of the
    validation split (the paper's first adaptation test, §3.4.2) before the next stage starts.

    The tolerance is absolute, in nats of mean next-token loss: a loss difference is the log of a
    perplexity ratio, so 0.01 lets short-context perplexity rise by at most 1%, whatever its level.
    """

    seq_len: PositiveInt | None = None  # the short context; None: pretraining's final seq_len
    windows: PositiveInt = 64  # validation windows of seq_len evaluated; the split must hold this many
    batch_size: PositiveInt = 4  # windows per forward pass
    # A stage passes when its short-context loss is at most this much above the pretrained model's;
    # negative demands an improvement; None measures and reports without gating.
    max_short_context_loss_increase: float | None = 0.01
    # A stage that has not recovered trains on at its length, `check_every_extra_steps` steps at a
    # time, each followed by another check, up to this many extra steps; then the stage fails.
    max_extra_steps_per_stage: NonNegativeInt = 0
    check_every_extra_steps: PositiveInt = 100
    # The paper's second test: needle in a haystack at each stage's length, one prompt per depth
    # (0 = start); empty: not run. Teacher-forced by the training workers: found when greedy
    # decoding would begin its reply with the number (train/gate_checks.py). Reported per stage;
    # a stage also needs every needle found to pass only when `needle_must_pass`.
    needle_depths: list[Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=list)
    needle_must_pass: bool = False
    needle_max_new_tokens: PositiveInt = 16


class LongContextConfig(Config):
    """Staged context extension: train on each length in turn until the final one, each stage
    gated on recovering short-context loss."""

    layout: ParallelLayout
    seq_lens: list[PositiveInt] = Field(min_length=1)
    total_tokens: PositiveInt
    global_batch_tokens: PositiveInt
    lr: PositiveFloat
    checkpoint_every_steps: PositiveInt = 500
    gate: ShortContextGate = ShortContextGate()

    @model_validator(mode="after")
    def _check_stages(self) -> "LongContextConfig":
        if any(later <= earlier for earlier, later in zip(self.seq_lens, self.seq_lens[1:])):
            raise ValueError(f"seq_lens {self.seq_lens} must increase from stage to stage")
        return self


class AnnealConfig(Config):
    """Final tokens with the LR annealed linearly to 0, then checkpoint averaging."""

    total_tokens: PositiveInt
    lr: PositiveFloat
    average_last_checkpoints: PositiveInt = 1
    # None: the final long-context length and its global batch (the paper anneals the 128K model).
    seq_len: PositiveInt | None = None
    global_batch_tokens: PositiveInt | None = None
    checkpoint_every_steps: PositiveInt = 1  # the averaged checkpoints are the last ones taken


# Llama 3.1's eight supported languages, as chatterbot-corpus names its folders.
LLAMA_3_1_LANGUAGES = ["english", "german", "french", "italian", "portuguese", "spanish", "hindi", "thai"]


class SFTConfig(Config):
    layout: ParallelLayout
    seq_len: PositiveInt
    steps: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat = 1e-5
    optimizer: FineTuningOptimizer = FineTuningOptimizer()
    checkpoint_every_steps: PositiveInt = 500  # and after the last step
    languages: list[str] = Field(default_factory=lambda: list(LLAMA_3_1_LANGUAGES), min_length=1)
    held_out_fraction: float = Field(0.1, gt=0, lt=1)  # conversations kept out of SFT and DPO training
    max_eval_examples: PositiveInt = 128
    seed: int = 0
    lora_rank: NonNegativeInt = 0  # > 0: train LoRA adapters of this rank only (merged when published)
    lora_alpha: PositiveFloat = 16.0


class RejectionSamplingConfig(Config):
    samples_per_prompt: int = Field(10, ge=1)  # the paper samples 10 to 30
    temperature: PositiveFloat = 0.8
    max_new_tokens: PositiveInt = 512
    prompts: PositiveInt = 1024  # training prompts sampled per round; their best replies join SFT
    batch_size: PositiveInt = 16  # rows generated together
    # Ranks holding one copy of the model while sampling (tensor parallel); the SFT layout's ranks
    # form world / tp copies that share the prompts. None: the SFT layout's TP.
    tp: PositiveInt | None = None


class RewardModelConfig(Config):
    """Bradley-Terry reward model on preference pairs, initialised from the SFT model."""

    steps: PositiveInt = 100
    batch_size: PositiveInt = 16  # pairs per step
    lr: PositiveFloat = 1e-5
    optimizer: FineTuningOptimizer = FineTuningOptimizer()
    max_eval_pairs: PositiveInt = 128
    seed: int = 0
    checkpoint_every_steps: PositiveInt = 500  # and after the last step
    # The reward is this token's logit at a dialog's last position: <|reserved_special_token_247|>,
    # never in the data; its row of the output projection starts at zero (every reward 0).
    score_token: NonNegativeInt = 128_255


class DPOConfig(Config):
    layout: ParallelLayout
    steps: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat = 1e-5
    optimizer: FineTuningOptimizer = FineTuningOptimizer()
    beta: PositiveFloat = 0.1
    nll_coefficient: NonNegativeFloat = 0.2
    mask_formatting_tokens: bool = True
    max_eval_pairs: PositiveInt = 128
    seed: int = 0
    checkpoint_every_steps: PositiveInt = 500  # and after the last step (full fine-tuning)
    lora_rank: NonNegativeInt = 0  # > 0: train LoRA adapters of this rank only (merged when published)
    lora_alpha: PositiveFloat = 16.0


class SafetyConfig(Config):
    safety_fraction: float = Field(0.1, gt=0, lt=1)  # share of safety examples in the tuning mix
    steps: PositiveInt = 100
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 1e-5
    optimizer: FineTuningOptimizer = FineTuningOptimizer()
    checkpoint_every_steps: PositiveInt = 500  # and after the last step
    seq_len: PositiveInt = 2048
    max_eval_examples: PositiveInt = 128
    seed: int = 0
    # Violation and false-refusal rates of greedy replies, before and after tuning (0: not measured).
    rate_prompts: NonNegativeInt = 32  # per kind, from the held-out test split
    rate_max_new_tokens: PositiveInt = 32
    max_false_refusal_increase: float = Field(0.1, ge=0, le=1)  # the bound FRR may rise by


class EvalGate(Config):
    """A model is promoted only if it meets every threshold (eval/gate.py judges them)."""

    max_validation_perplexity: PositiveFloat  # on the validation shards at the pretraining seq_len
    min_multiple_choice_accuracy: float = Field(ge=0, le=1)  # length-normalised; chance is 0.25
    max_violation_rate: float = Field(ge=0, le=1)  # share of held-out harmful prompts answered
    max_false_refusal_rate: float = Field(ge=0, le=1)  # share of held-out borderline prompts refused
    # Relative gate against the registry's production model: none of the rates above (accuracy,
    # VR, FRR) may get worse than production's by more than this. None: no relative gate.
    max_worsening_vs_production: float | None = Field(default=None, ge=0, le=1)


class PostTrainingConfig(Config):
    rounds: PositiveInt = 6  # the paper runs six rounds of RM -> rejection sampling -> SFT -> DPO
    # 0: safety tuning starts from the last round's DPO model; N >= 2: from the mean of the last
    # N rounds' DPO models (the paper averages models of one stage trained on different data).
    average_last_rounds: NonNegativeInt = 0
    sft: SFTConfig
    reward_model: RewardModelConfig = RewardModelConfig()
    rejection_sampling: RejectionSamplingConfig = RejectionSamplingConfig()
    dpo: DPOConfig
    safety: SafetyConfig = SafetyConfig()

    @property
    def sampling_tp(self) -> int:
        """The tensor parallelism rejection sampling generates and scores with."""
        return self.rejection_sampling.tp or self.sft.layout.tp

    @model_validator(mode="after")
    def _check_averaging(self) -> "PostTrainingConfig":
        if self.average_last_rounds == 1 or self.average_last_rounds > self.rounds:
            raise ValueError(
                f"average_last_rounds {self.average_last_rounds} must be 0 or between 2 and rounds ({self.rounds})"
            )
        return self
