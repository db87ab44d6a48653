"""Evaluation tasks as files: one YAML per task, validated into a TaskSpec, and the items it yields.

Built-in tasks live in task_files/ next to this module; `load_task(name_or_path)` takes a built-in
name or the path of a user's YAML file. A task's items come from a local JSON-lines file (a path
relative to the YAML file's folder) or from Llama 3.1's multilingual MMLU dev set in lm-eval.
The prompt and target conventions are lm-eval's: context = few-shot examples + prompt, each
choice is scored as target_delimiter + choice.
"""
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, NonNegativeInt, PositiveInt, ValidationError, model_validator

from llamaops.platform.config.base import Config
from llamaops.platform.config.eval import MMLU_LANGUAGES
from llamaops.platform.data.packages import MissingPackageDataError
from llamaops.platform.model.checkpoint import first_error

from .errors import EvalInputError

BUILTIN_DIR = Path(__file__).parent / "task_files"


class TaskSpec(Config):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    kind: Literal["multiple_choice"] = "multiple_choice"
    # Exactly one source: a JSON-lines file, or MMLU dev languages shipped in lm-eval.
    data_file: Path | None = None
    mmlu_dev: list[str] | None = None
    prompt: str = "Question: {question}\nAnswer:"  # str.format over a record's fields
    choices_field: str = "choices"
    answer_field: str = "answer"  # index into the choices
    target_delimiter: str = " "
    num_fewshot: NonNegativeInt = 0  # the first items are the examples; the rest are evaluated
    fewshot_delimiter: str = "\n\n"
    limit: PositiveInt | None = None  # evaluate at most this many items (after the few-shot ones)
    seed: int = 0  # order of the evaluated items when limit picks a sample

    @model_validator(mode="after")
    def _one_source(self) -> "TaskSpec":
        if (self.data_file is None) == (self.mmlu_dev is None):
            raise ValueError("set exactly one of data_file and mmlu_dev")
        if self.mmlu_dev is not None and (unknown := sorted(set(self.mmlu_dev) - set(MMLU_LANGUAGES))):
            raise ValueError(f"mmlu_dev languages {unknown} are not shipped; choose from {list(MMLU_LANGUAGES)}")
        return self


@dataclass(frozen=True)
class Item:
    """One multiple-choice question, rendered: the context string and the continuation strings."""

    context: str
    continuations: tuple[str, ...]
    answer: int


def builtin_tasks() -> dict[str, Path]:
    return {path.stem: path for path in sorted(BUILTIN_DIR.glob("*.yaml"))}


def load_task(name_or_path: str) -> TaskSpec:
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
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as exc:
        raise EvalInputError(f"task file {path}: {first_error(exc).replace('Value error, ', '')}") from None
    if spec.data_file is not None and not spec.data_file.is_absolute():
        spec = spec.model_copy(update={"data_file": path.parent / spec.data_file})
    return spec


def task_items(spec: TaskSpec) -> list[Item]:
    """The items to evaluate, each with the task's few-shot examples in its context."""
    records = task_records(spec)
    if len(records) <= spec.num_fewshot:
        raise EvalInputError(f"task {spec.name} has {len(records)} items, not more than num_fewshot={spec.num_fewshot}")
    shots, rest = records[: spec.num_fewshot], records[spec.num_fewshot :]
    if spec.limit is not None and spec.limit < len(rest):
        picked = sorted(random.Random(spec.seed).sample(range(len(rest)), spec.limit))
        rest = [rest[i] for i in picked]
    prefix = "".join(_render(spec, r, with_answer=True) + spec.fewshot_delimiter for r in shots)
    items = []
    for number, record in enumerate(rest):
        choices, answer = _choices_and_answer(spec, record, number)
        items.append(Item(prefix + _render(spec, record), tuple(spec.target_delimiter + str(c) for c in choices), answer))
    return items


def task_records(spec: TaskSpec) -> list[dict]:
    """The raw records of a task's source, in file (or package) order."""
    if spec.mmlu_dev is not None:
        from .mmlu import load_mmlu_dev

        try:
            questions = load_mmlu_dev(spec.mmlu_dev)
        except MissingPackageDataError as exc:
            raise EvalInputError(str(exc)) from None
        return [{"question": q.question, "choices": list(q.choices), "answer": q.answer, "subject": q.subject,
                 "language": q.language} for q in questions]
    assert spec.data_file is not None
    try:
        lines = spec.data_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalInputError(f"task {spec.name}: cannot read data_file {spec.data_file} ({_first_line(exc)})") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalInputError(f"task {spec.name}: {spec.data_file}:{number} is not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise EvalInputError(f"task {spec.name}: {spec.data_file}:{number} is not a JSON object")
        records.append(record)
    return records


def _render(spec: TaskSpec, record: dict, with_answer: bool = False) -> str:
    try:
        text = spec.prompt.format(**record)
    except (KeyError, IndexError, ValueError) as exc:
        raise EvalInputError(f"task {spec.name}: prompt {spec.prompt!r} does not fit the items ({exc!r})") from None
    if with_answer:
        choices, answer = _choices_and_answer(spec, record, 0)
        text += spec.target_delimiter + str(choices[answer])
    return text


def _choices_and_answer(spec: TaskSpec, record: dict, number: int) -> tuple[list, int]:
    choices, answer = record.get(spec.choices_field), record.get(spec.answer_field)
    if not isinstance(choices, list) or len(choices) < 2:
        raise EvalInputError(f"task {spec.name}: item {number} needs a list of at least 2 '{spec.choices_field}'")
    if not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise EvalInputError(f"task {spec.name}: item {number} '{spec.answer_field}' must be an index into its choices")
    return choices, answer


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
