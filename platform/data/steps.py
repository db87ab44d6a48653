"""Per-document steps, fused into one pass, run in-process or on Ray Data across workers.

A DocumentStep looks at one document, may rewrite it, and returns a removal reason or None.
Consecutive document steps run as one pass so Ray Data moves each document once; every
document carries back a trace of its size after each step, from which the report counts
documents, characters and tokens in and out of each step exactly as if the steps ran one by one.
Results come back in input order, so 1 and N workers give identical output.
"""
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .documents import Document
from .report import PrepReport
from .timings import driver_phase, record_tasks, timed

Item = TypeVar("Item")
Result = TypeVar("Result")
_CHUNKS_PER_WORKER = 2  # two chunks per worker balance uneven documents; each task costs ~0.1 s


@dataclass(frozen=True)
class DocumentStep:
    name: str
    check: Callable[[Document], str | None]  # may modify the document; returns why to drop it, or None


Trace = tuple[list[tuple[int, int]], str | None]  # (chars, tokens) before the first and after each step passed; reason


def _run_steps(steps: Sequence[DocumentStep], doc: Document) -> tuple[Document, Trace]:
    sizes = [(len(doc.text), len(doc.tokens))]
    for step in steps:
        reason = step.check(doc)
        if reason is not None:
            return doc, (sizes, reason)
        sizes.append((len(doc.text), len(doc.tokens)))
    return doc, (sizes, None)


def _apply_chunk(payload: bytes, fn: Callable[[Any], Any]) -> bytes:
    return pickle.dumps([fn(item) for item in pickle.loads(payload)], protocol=pickle.HIGHEST_PROTOCOL)


def _apply_batch(batch, fn_ref) -> dict:
    """One Arrow batch of pickled chunks through `fn` (fetched once per task from the object store),
    with each chunk's timing."""
    import ray

    fn = ray.get(fn_ref)
    results = [timed("document_steps", _apply_chunk, payload, fn) for payload in batch.column("chunk").to_pylist()]
    return {"chunk": [chunk for chunk, _ in results], "timing": [pickle.dumps(timing) for _, timing in results]}


def map_items(fn: Callable[[Item], Result], items: list[Item], workers: int) -> list[Result]:
    """`[fn(item) for item in items]`, on Ray Data with `workers` parallel tasks when workers > 1."""
    if workers <= 1 or len(items) < 2:
        return [fn(item) for item in items]
    import ray.data

    from ..train.ray_runner import ensure_ray

    ensure_ray(workers)
    import pyarrow as pa

    size = -(-len(items) // (workers * _CHUNKS_PER_WORKER))
    chunks = [pickle.dumps(items[i : i + size], protocol=pickle.HIGHEST_PROTOCOL) for i in range(0, len(items), size)]
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    # One block per chunk, one Arrow batch per block; the function (models, tokenizer) goes to the
    # object store once instead of inside every task.
    blocks = [pa.table({"chunk": pa.array([chunk], pa.large_binary())}) for chunk in chunks]
    dataset = ray.data.from_arrow(blocks)
    mapped = dataset.map_batches(
        _apply_batch, fn_args=(ray.put(fn),), batch_size=None, batch_format="pyarrow", zero_copy_batch=True,
        compute=ray.data.TaskPoolStrategy(size=workers),
    )  # fmt: skip
    results: list[Result] = []
    timings = []
    for batch in mapped.iter_batches(batch_size=None, batch_format="pyarrow"):
        for payload in batch.column("chunk").to_pylist():
            results.extend(pickle.loads(payload))
        timings.extend(pickle.loads(timing) for timing in batch.column("timing").to_pylist())
    record_tasks(timings)
    return results


def run_document_steps(
    steps: Sequence[DocumentStep], documents: list[Document], report: PrepReport, workers: int
) -> list[Document]:
    """Apply `steps` to every document; record each step in `report`; return the documents kept by all."""
    with driver_phase("+".join(step.name for step in steps)):
        results = map_items(lambda doc: _run_steps(steps, doc), documents, workers)
        return _record(steps, results, report)


def _record(steps: Sequence[DocumentStep], results: list[tuple[Document, Trace]], report: PrepReport) -> list[Document]:
    for index, step in enumerate(steps):
        entered = [(doc, trace) for doc, trace in results if len(trace[0]) > index]
        passed = [(doc, trace) for doc, trace in entered if len(trace[0]) > index + 1]
        dropped = [(doc, trace) for doc, trace in entered if len(trace[0]) == index + 1 and trace[1] is not None]
        report.record_sizes(
            step.name,
            [trace[0][index] for _, trace in entered],
            [trace[0][index + 1] for _, trace in passed],
            [(doc, trace[1], trace[0][index]) for doc, trace in dropped],
        )
    return [doc for doc, (_, reason) in results if reason is None]
