"""The evaluation stage: measure a model artifact, judge it against the promotion gate, write report.json."""
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from llamaops.platform.config import Preset
from llamaops.platform.data.packages import MissingPackageDataError
from llamaops.platform.model.checkpoint import model_in_part, read_model_config
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult
from llamaops.platform.store import fetched, staged_output
from llamaops.platform.tokenizer import load_tokenizer
from llamaops.platform.train.ray_runner import LOCAL_RAY_CPUS

from .errors import EvalInputError
from .gate import gate_report, judge
from .generation import chat_prompts, greedy
from .mmlu import Question, load_mmlu_dev
from .model_workers import ModelWorkers, WorkerLayout
from .multiple_choice import multiple_choice_accuracy, prompt_and_choices, select_questions
from .perplexity import open_validation, perplexity_of, window_indices
from .safety import safety_rates

REPORT_FILE = "report.json"
T = TypeVar("T")


def _benchmark_questions(preset: Preset) -> list[Question]:
    cfg = preset.eval
    try:
        questions = load_mmlu_dev(cfg.multiple_choice_languages)
    except MissingPackageDataError as exc:
        raise EvalInputError(str(exc)) from None
    picked = select_questions(
        questions, load_tokenizer(), cfg.multiple_choice_questions, cfg.multiple_choice_max_tokens, cfg.seed
    )
    if not picked:
        raise EvalInputError(
            f"no multiple-choice question fits eval.multiple_choice_max_tokens={cfg.multiple_choice_max_tokens}; raise it"
        )
    return picked


def _safety_prompts(preset: Preset) -> tuple[list[str], list[str]]:
    """The first eval.safety_prompts held-out (test split) prompts of each kind."""
    from llamaops.platform.data.safety_prompts import load_safety_prompts

    cap = preset.eval.safety_prompts
    try:
        harmful, borderline = load_safety_prompts("harmful", "test")[:cap], load_safety_prompts("borderline", "test")[:cap]
    except MissingPackageDataError as exc:
        raise EvalInputError(str(exc)) from None
    if not harmful or not borderline:
        raise EvalInputError("the test split of the safety prompts is empty; check llamaops.platform.data.safety_prompts")
    return harmful, borderline


def _check_model(model_dir: Path, vocab_size: int, seq_len: int) -> None:
    model_cfg = read_model_config(model_dir)
    if model_cfg.vocab_size < vocab_size:
        raise EvalInputError(f"model vocab_size {model_cfg.vocab_size} is smaller than the Llama 3 tokenizer's {vocab_size}")
    if seq_len > model_cfg.max_seq_len:
        raise EvalInputError(f"pretrain seq_len {seq_len} exceeds the model's max_seq_len {model_cfg.max_seq_len}")


def json_safe(value: Any) -> Any:
    """Infinite or NaN floats as strings: report.json stays standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def eval_layout(preset: Preset) -> WorkerLayout:
    """The eval step's pod: on a GPU pool one node, the model split over its GPUs; on CPUs one
    process on the local Ray's CPUs."""
    gpus = preset.resources.gpus_per_node
    if gpus:
        return WorkerLayout(tp=gpus, use_gpu=True)
    return WorkerLayout(threads=LOCAL_RAY_CPUS)


def run_eval(
    preset: Preset, model_uri: str, data_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()
) -> StageResult:
    """Measure the model on Ray workers (model_workers.py): no process here holds it."""
    cfg, seq_len = preset.eval, preset.pretrain.seq_len
    tokenizer = load_tokenizer()
    with fetched(data_uri) as data_dir, staged_output(output_uri) as out:
        # Every input is checked before any worker starts.
        with model_in_part(model_uri) as (model_dir, _):
            _check_model(Path(model_dir), tokenizer.vocab_size, seq_len)
        stream = open_validation(Path(data_dir), seq_len)
        windows = window_indices(stream.num_windows(seq_len), cfg.perplexity_windows)
        questions = _benchmark_questions(preset)
        harmful, borderline = _safety_prompts(preset)
        seconds: dict[str, float] = {}

        def timed(part: str, measure: Callable[[], T]) -> T:
            started = time.perf_counter()
            result = measure()
            seconds[part] = round(time.perf_counter() - started, 3)
            return result

        layout = eval_layout(preset)
        with ModelWorkers(layout) as workers:
            timed("load", lambda: workers.load(model_uri))

            def respond(prompts: list[str]) -> list[str]:
                return workers.generate(chat_prompts(tokenizer, prompts), greedy(cfg.max_new_tokens),
                                        cfg.generation_batch_size)

            ppl = timed("perplexity", lambda: perplexity_of(
                workers.window_nll_sums(windows, data_uri, seq_len, cfg.perplexity_batch_size), seq_len))
            choice = timed("multiple_choice", lambda: multiple_choice_accuracy(
                questions, workers.choice_scores([prompt_and_choices(q, tokenizer) for q in questions])))
            safety = timed("safety", lambda: safety_rates(respond, harmful, borderline))

        # The headline accuracy is length-normalised: choices differ in length, and the summed
        # log-likelihood favours short ones.
        measured = {
            "validation_perplexity": ppl.perplexity,
            "multiple_choice_accuracy": choice.accuracy_length_normalised,
            "violation_rate": safety.violation_rate,
            "false_refusal_rate": safety.false_refusal_rate,
        }
        gate = gate_report(judge(measured, preset.eval_gate))
        result_metrics = {
            **measured,
            "multiple_choice_accuracy_sum": choice.accuracy,
            "multiple_choice_chance": choice.chance,
            "gate_passed": 1.0 if gate["passed"] else 0.0,
        }
        report = json_safe({
            "model_uri": model_uri,
            "data_uri": data_uri,
            "preset": preset.name,
            "metrics": result_metrics,
            "gate": gate,
            "perplexity": asdict(ppl) | {"seq_len": seq_len},
            "multiple_choice": asdict(choice) | {"benchmark": "Llama 3.1 multilingual MMLU dev (lm-eval 0.4.13)",
                                                 "languages": cfg.multiple_choice_languages},
            "safety": asdict(safety),
            "seconds": seconds,
            "workers": {"tp": layout.tp, "groups": layout.groups, "gpus": layout.use_gpu},
        })
        (out / REPORT_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return StageResult(outputs={"report": output_uri}, metrics=result_metrics, report=report)
