"""GSM8K-style grade-school maths: the eight chain-of-thought examples of Wei et al. (2022) that
lm-eval 0.4.13 ships as the few-shot samples of `tasks/gsm8k/gsm8k-cot.yaml`.

Each record is the question, its worked solution ending in "The answer is N." (the `target`, what
a few-shot example shows) and N itself (the `answer`, what exact match compares with). The GSM8K
test set is not in any package, so these examples are the evaluated items too: a task over them
takes its few-shot examples from the other items (`fewshot: others`).
"""
import re

from .lm_eval_files import fewshot_samples, task_files

TASK_FILE = "lm_eval/tasks/gsm8k/gsm8k-cot.yaml"
_FINAL = re.compile(r"The answer is (-?[\d,.]+?)\.?$")


def load_gsm8k_cot() -> list[dict[str, str]]:
    records = []
    for _, task in task_files(lambda name: name == TASK_FILE):
        for sample in fewshot_samples(task):
            target = " ".join(str(sample["target"]).split())
            match = _FINAL.search(target)
            if match is None:
                raise ValueError(f"{TASK_FILE}: a target does not end in 'The answer is N.': {target!r}")
            records.append({"question": " ".join(str(sample["question"]).split()), "target": target,
                            "answer": match.group(1).replace(",", "")})
    return records
