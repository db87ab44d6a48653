"""Evaluation tasks as files: one YAML per task, validated into a typed spec, and the items it yields.

Built-in tasks live in task_files/ next to this module; `load_task(name_or_path)` takes a built-in
name or the path of a user's YAML file. Two kinds, told apart by `kind`:
- `multiple_choice` (the default): items from a JSON-lines file or Llama 3.1's multilingual MMLU
  dev set in lm-eval; each choice is scored by log-likelihood (lm-eval conventions: context =
  few-shot examples + prompt, each choice scored as target_delimiter + choice).
- `generation`: items from a JSON-lines file, the GSM8K chain-of-thought examples in lm-eval, or a
  generated arithmetic set; the model answers greedily and the extracted answer must match.
"""
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import Field, NonNegativeInt, PositiveInt, TypeAdapter, ValidationError, model_validator

from llamaops.platform.config.base import Config
from llamaops.platform.config.eval import MMLU_LANGUAGES
from llamaops.platform.data.packages import MissingPackageDataError

from .answers import Extractor
from .arithmetic import ArithmeticSource, arithmetic_records
from .errors import EvalInputError

BUILTIN_DIR = Path(__file__).parent / "task_files"


class TaskBase(Config):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    data_file: Path | None = None  # JSON lines, relative to the task file's folder
    prompt: str = "Question: {question}\nAnswer:"  # str.format over a record's fields
    target_delimiter: str = " "
    num_fewshot: NonNegativeInt = 0
    # "first": the first num_fewshot records are the examples and are not evaluated; "others": every
    # record is evaluated, with the first num_fewshot other records as its examples (small sets).
    fewshot: Literal["first", "others"] = "first"
    fewshot_delimiter: str = "\n\n"
    limit: PositiveInt | None = None  # evaluate at most this many items (after the few-shot ones)
    seed: int = 0  # order of the evaluated items when limit picks a sample (and generated data)

    def _sources(self) -> dict[str, bool]:
        return {"data_file": self.data_file is not None}

    @model_validator(mode="after")
    def _one_source(self):
        sources = self._sources()
        if sum(sources.values()) != 1:
            raise ValueError(f"set exactly one of {' and '.join(sources)}")
        return self


class MultipleChoiceTask(TaskBase):
    kind: Literal["multiple_choice"] = "multiple_choice"
    mmlu_dev: list[str] | None = None  # MMLU dev languages shipped in lm-eval
    choices_field: str = "choices"
    answer_field: str = "answer"  # index into the choices

    def _sources(self) -> dict[str, bool]:
        return super()._sources() | {"mmlu_dev": self.mmlu_dev is not None}

    @model_validator(mode="after")
    def _shipped_languages(self) -> "MultipleChoiceTask":
        if self.mmlu_dev is not None and (unknown := sorted(set(self.mmlu_dev) - set(MMLU_LANGUAGES))):
            raise ValueError(f"mmlu_dev languages {unknown} are not shipped; choose from {list(MMLU_LANGUAGES)}")
        return self


class GenerationTask(TaskBase):
    kind: Literal["generation"]
    gsm8k_cot: bool = False  # the 8 GSM8K chain-of-thought examples shipped in lm-eval
    arithmetic: ArithmeticSource | None = None  # generated from `seed`
    prompt: str = "Q: {question}\nA:"
    target_field: str = "target"  # what a few-shot example shows after its prompt (e.g. a worked solution)
    answer_field: str = "answer"  # what the extracted answer must match
    extractor: Extractor = "last_number"
    regex: str | None = None  # the `regex` extractor's pattern; group 1 when it has groups
    stop: list[str] = ["\n\n", "Q:"]
    max_new_tokens: PositiveInt = 128

    def _sources(self) -> dict[str, bool]:
        return super()._sources() | {"gsm8k_cot": self.gsm8k_cot, "arithmetic": self.arithmetic is not None}

    @model_validator(mode="after")
    def _regex_with_its_extractor(self) -> "GenerationTask":
        if (self.extractor == "regex") != (self.regex is not None):
            raise ValueError("give `regex` exactly when extractor is regex")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} does not compile ({exc})") from None
        return self


TaskSpec = Annotated[MultipleChoiceTask | GenerationTask, Field(discriminator="kind")]
KINDS = ("multiple_choice", "generation")
_SPEC = TypeAdapter(TaskSpec)


@dataclass(frozen=True)
class Item:
    """One multiple-choice question, rendered: the context string and the continuation strings."""

    context: str
    continuations: tuple[str, ...]
    answer: int


@dataclass(frozen=True)
class GenerationItem:
    """One generation question, rendered: the prompt (few-shot examples first) and the reference answer."""

    prompt: str
    reference: str


def builtin_tasks() -> dict[str, Path]:
    return {path.stem: path for path in sorted(BUILTIN_DIR.glob("*.yaml"))}


def load_task(name_or_path: str) -> MultipleChoiceTask | GenerationTask:
    """A built-in task by name, or a task YAML file by path; a bad one raises EvalInputError."""
    path = builtin_tasks().get(name_or_path) or Path(name_or_path)
    if not path.is_file():
        raise EvalInputError(
            f"unknown task '{name_or_path}': not a built-in task nor a file; see `llamaops eval tasks`"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise EvalInputError(f"task file {path} is not readable YAML ({_first_line(exc)})") from None
    if not isinstance(raw, dict):
        raise EvalInputError(f"task file {path} must be a YAML mapping of task fields")
    raw.setdefault("name", path.stem)
    raw.setdefault("kind", "multiple_choice")
    try:
        spec = _SPEC.validate_python(raw)
    except ValidationError as exc:
        raise EvalInputError(f"task file {path}: {_validation_error(exc)}") from None
    if spec.data_file is not None and not spec.data_file.is_absolute():
        spec = spec.model_copy(update={"data_file": path.parent / spec.data_file})
    return spec


def _validation_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"]]
    if loc and loc[0] in KINDS:  # the union's tag, not a field the user wrote
        loc = loc[1:]
    if err["type"] == "union_tag_invalid":
        loc = ["kind"]
    message = err["msg"].replace("Value error, ", "")
    return f"{'.'.join(loc)}: {message}" if loc else message


def fewshot_split(spec: TaskBase, records: list[dict]) -> list[tuple[list[dict], dict]]:
    """(few-shot examples, evaluated record) pairs, with `limit` applied to the evaluated records."""
    if len(records) <= spec.num_fewshot:
        raise EvalInputError(f"task {spec.name} has {len(records)} items, not more than num_fewshot={spec.num_fewshot}")
    evaluated = list(range(spec.num_fewshot if spec.fewshot == "first" else 0, len(records)))
    if spec.limit is not None and spec.limit < len(evaluated):
        evaluated = sorted(random.Random(spec.seed).sample(evaluated, spec.limit))
    pairs = []
    for index in evaluated:
        others = [r for at, r in enumerate(records) if at != index]
        pairs.append((others[: spec.num_fewshot], records[index]))
    return pairs


def task_items(spec: MultipleChoiceTask) -> list[Item]:
    """The items to evaluate, each with the task's few-shot examples in its context."""
    items = []
    for number, (shots, record) in enumerate(fewshot_split(spec, task_records(spec))):
        prefix = "".join(_shot(spec, shot) + spec.fewshot_delimiter for shot in shots)
        choices, answer = _choices_and_answer(spec, record, number)
        items.append(Item(prefix + _render(spec, record), tuple(spec.target_delimiter + str(c) for c in choices), answer))
    return items


def generation_items(spec: GenerationTask) -> list[GenerationItem]:
    items = []
    for number, (shots, record) in enumerate(fewshot_split(spec, task_records(spec))):
        prefix = "".join(_shot(spec, shot) + spec.fewshot_delimiter for shot in shots)
        items.append(GenerationItem(prefix + _render(spec, record), _field(spec, record, spec.answer_field, number)))
    return items


def task_records(spec: MultipleChoiceTask | GenerationTask) -> list[dict]:
    """The raw records of a task's source, in file (or package, or generated) order."""
    try:
        if isinstance(spec, MultipleChoiceTask) and spec.mmlu_dev is not None:
            from .mmlu import load_mmlu_dev

            return [{"question": q.question, "choices": list(q.choices), "answer": q.answer, "subject": q.subject,
                     "language": q.language} for q in load_mmlu_dev(spec.mmlu_dev)]
        if isinstance(spec, GenerationTask) and spec.gsm8k_cot:
            from .gsm8k import load_gsm8k_cot

            return load_gsm8k_cot()
    except MissingPackageDataError as exc:
        raise EvalInputError(str(exc)) from None
    if isinstance(spec, GenerationTask) and spec.arithmetic is not None:
        return arithmetic_records(spec.arithmetic, spec.seed)
    assert spec.data_file is not None
    return _jsonl_records(spec.name, spec.data_file)


def _jsonl_records(task: str, data_file: Path) -> list[dict]:
    try:
        lines = data_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalInputError(f"task {task}: cannot read data_file {data_file} ({_first_line(exc)})") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalInputError(f"task {task}: {data_file}:{number} is not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise EvalInputError(f"task {task}: {data_file}:{number} is not a JSON object")
        records.append(record)
    return records


def _render(spec: TaskBase, record: dict) -> str:
    try:
        return spec.prompt.format(**record)
    except (KeyError, IndexError, ValueError) as exc:
        raise EvalInputError(f"task {spec.name}: prompt {spec.prompt!r} does not fit the items ({exc!r})") from None


def _shot(spec: MultipleChoiceTask | GenerationTask, record: dict) -> str:
    """A few-shot example: its prompt, then its answer (the correct choice, or the target text)."""
    if isinstance(spec, GenerationTask):
        target = _field(spec, record, spec.target_field, 0)
    else:
        choices, answer = _choices_and_answer(spec, record, 0)
        target = choices[answer]
    return _render(spec, record) + spec.target_delimiter + str(target)


def _field(spec: TaskBase, record: dict, field: str, number: int) -> str:
    value = record.get(field)
    if value is None or isinstance(value, (dict, list)):
        raise EvalInputError(f"task {spec.name}: item {number} needs a text or number '{field}'")
    return str(value)


def _choices_and_answer(spec: MultipleChoiceTask, record: dict, number: int) -> tuple[list, int]:
    choices, answer = record.get(spec.choices_field), record.get(spec.answer_field)
    if not isinstance(choices, list) or len(choices) < 2:
        raise EvalInputError(f"task {spec.name}: item {number} needs a list of at least 2 '{spec.choices_field}'")
    if not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise EvalInputError(f"task {spec.name}: item {number} '{spec.answer_field}' must be an index into its choices")
    return choices, answer


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
