"""A generated arithmetic task: two-operand sums, differences and products, the same for a seed.

Each record has the question, a one-step worked solution (`target`, shown in few-shot examples)
and the answer that exact match compares with.
"""
import operator
import random
from typing import Literal

from pydantic import Field, PositiveInt

from llamaops.platform.config.base import Config

Operation = Literal["+", "-", "*"]
_APPLY = {"+": operator.add, "-": operator.sub, "*": operator.mul}


class ArithmeticSource(Config):
    items: PositiveInt = 64
    max_operand: PositiveInt = 20  # operands are drawn from 0..max_operand
    operations: list[Operation] = Field(default=["+", "-"], min_length=1)


def arithmetic_records(source: ArithmeticSource, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    records = []
    for _ in range(source.items):
        a, b = rng.randint(0, source.max_operand), rng.randint(0, source.max_operand)
        op = rng.choice(source.operations)
        result = _APPLY[op](a, b)
        records.append({"question": f"What is {a} {op} {b}?", "target": f"{a} {op} {b} = {result}. The answer is {result}.",
                        "answer": str(result)})
    return records
