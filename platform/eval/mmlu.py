"""Llama 3.1's multilingual MMLU dev questions, read from the lm-eval task files (a data package).

lm-eval 0.4.13 ships, for each language and MMLU subject, the five few-shot examples Meta used
for Llama 3.1 (`fewshot_config.samples` of `tasks/llama3/instruct/mmlu_<lang>/mmlu_<lang>_*.yaml`):
question, choices A-D and the correct letter. Nothing else of lm-eval is used or installed.
"""
import re
from dataclasses import dataclass

from .lm_eval_files import fewshot_samples, task_files

_TASK_FILE = re.compile(r"lm_eval/tasks/llama3/instruct/mmlu_(\w+)/mmlu_\1_(\w+)\.yaml")


@dataclass(frozen=True)
class Question:
    language: str
    subject: str
    question: str
    choices: tuple[str, ...]
    answer: int  # index into choices


def _questions_in(task: dict, language: str, subject: str) -> list[Question]:
    questions = []
    for sample in fewshot_samples(task):
        letters = sorted(sample["input_choice_list"])
        choices = tuple(str(sample["input_choice_list"][letter]).strip() for letter in letters)
        correct = sample["input_correct_responses"][0]
        questions.append(Question(language, subject, str(sample["input_question"]).strip(), choices, letters.index(correct)))
    return questions


def load_mmlu_dev(languages: list[str]) -> list[Question]:
    """Every dev question of the given languages, in a stable order (language, subject, sample)."""
    def wanted(name: str) -> bool:
        match = _TASK_FILE.fullmatch(name)
        return bool(match) and match.group(1) in languages

    questions = []
    for name, task in task_files(wanted):
        match = _TASK_FILE.fullmatch(name)
        questions += _questions_in(task, match.group(1), match.group(2))
    return questions
