import math

import pytest

from llamaops.platform.eval.errors import EvalInputError
from llamaops.platform.eval.humaneval import evaluate_humaneval, load_humaneval, pass_at_k, truncate_completion
from llamaops.platform.eval.sandbox import SandboxLimits

LIMITS = SandboxLimits(cpu_seconds=1, wall_seconds=3, memory_bytes=512 << 20, max_processes=8)


@pytest.fixture(scope="module")
def problems():
    return load_humaneval()


def test_humaneval_ships_164_problems(problems):
    assert len(problems) == 164 and problems[0].task_id == "HumanEval/0"
    assert problems[0].entry_point in problems[0].prompt and "def check(candidate)" in problems[0].test


def test_pass_at_k_is_the_unbiased_estimator():
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_truncation_stops_at_a_new_top_level_block():
    assert truncate_completion("    return 1\n\ndef other():\n    pass") == "    return 1\n"
    assert truncate_completion("    return 1\n") == "    return 1\n"


def test_canonical_solutions_pass_and_hostile_completions_fail(problems):
    picked = problems[:3]
    hostile = ["    while True:\n        pass\n", "    import os\n    while True:\n        os.fork()\n",
               "    import socket\n    socket.socket()\n", "    return [0] * 10**10\n"]

    def complete(prompts, n):
        by_prompt = {p.prompt: p for p in picked}
        return [[by_prompt[prompt].canonical_solution] + hostile[: n - 1] for prompt in prompts]

    metrics, results = evaluate_humaneval(complete, picked, samples=5, ks=[1, 5], limits=LIMITS)
    assert [r.passed for r in results] == [1, 1, 1]
    assert results[0].statuses[0] == "passed" and all(s != "passed" for s in results[0].statuses[1:])
    assert metrics["pass@1"] == pytest.approx(0.2) and metrics["pass@5"] == 1.0 and metrics["pass@1_stderr"] == 0.0
    with pytest.raises(EvalInputError, match="1 <= k <= samples"):
        evaluate_humaneval(complete, picked, samples=2, ks=[5], limits=LIMITS)
