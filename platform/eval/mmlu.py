"""Llama 3.1's multilingual MMLU dev questions, read from the lm-eval task files (a data package).

lm-eval 0.4.13 ships, for each language and MMLU subject, the five few-shot examples Meta used
for Llama 3.1 (`fewshot_config.samples` of `tasks/llama3/instruct/mmlu_<lang>/mmlu_<lang>_*.yaml`):
question, choices A-D and the correct letter. Nothing else of lm-eval is used or installed.
"""
import re
import zipfile
from dataclasses import dataclass

import yaml

from llamaops.platform.data.packages import package_archive

PACKAGE, VERSION = "lm-eval", "0.4.13"
_TASK_FILE = re.compile(r"lm_eval/tasks/llama3/instruct/mmlu_(\w+)/mmlu_\1_(\w+)\.yaml")


@dataclass(frozen=True)
class Question:
    language: str
    subject: str
    question: str
    choices: tuple[str, ...]
    answer: int  # index into choices


class _TaskLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # C parser: 5x faster when built
    """Safe YAML that reads lm-eval's `!function module.name` tags as plain strings."""


_TaskLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _questions_in(task_yaml: str, language: str, subject: str) -> list[Question]:
    task = yaml.load(task_yaml, Loader=_TaskLoader)
    questions = []
    for sample in task.get("fewshot_config", {}).get("samples", []):
        letters = sorted(sample["input_choice_list"])
        choices = tuple(str(sample["input_choice_list"][letter]).strip() for letter in letters)
        correct = sample["input_correct_responses"][0]
        questions.append(Question(language, subject, str(sample["input_question"]).strip(), choices, letters.index(correct)))
    return questions


def load_mmlu_dev(languages: list[str]) -> list[Question]:
    """Every dev question of the given languages, in a stable order (language, subject, sample)."""
    questions = []
    with zipfile.ZipFile(package_archive(PACKAGE, VERSION)) as archive:
        for name in sorted(archive.namelist()):
            match = _TASK_FILE.fullmatch(name)
            if match and match.group(1) in languages:
                questions += _questions_in(archive.read(name).decode("utf-8"), match.group(1), match.group(2))
    return questions
