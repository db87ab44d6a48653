"""Hash-partitioned map-reduce: the exchange that keeps de-duplication exact across workers.

Each item becomes (key, value) records; a record goes to partition hash(key) mod P, so every
record of one key meets in one partition, and each partition is reduced on its own with no
shared state. Records reach a reducer sorted, and the reduced outputs are returned sorted, so the
result does not depend on the number of workers or partitions: P = 1 in-process, and on Ray
map tasks hand each reducer its share straight through the object store (the driver holds refs).
"""
import hashlib
import pickle
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .timings import TaskTime, record_tasks, timed

Item = TypeVar("Item")
Output = TypeVar("Output")
Record = tuple[bytes, Any]
Emit = Callable[[int, Item], Iterable[Record]]  # (the item's index in the input, the item) -> its records
Reduce = Callable[[list[Record]], Iterable[Output]]  # one partition's records, sorted -> outputs
_PARTITIONS_PER_WORKER = 2
_CHUNKS_PER_WORKER = 4


def key_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def partition_of(key: bytes, partitions: int) -> int:
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") % partitions


def _emit_partitioned(payload: bytes, start: int, emit: Emit, partitions: int) -> list[list[Record]]:
    shares: list[list[Record]] = [[] for _ in range(partitions)]
    for index, item in enumerate(pickle.loads(payload), start):
        for key, value in emit(index, item):
            shares[partition_of(key, partitions)].append((key, value))
    return shares


def _reduce_shares(reduce: Reduce, *shares: list[Record]) -> list:
    return list(reduce(sorted(record for share in shares for record in share)))


def _timed_emit(payload: bytes, start: int, emit: Emit, partitions: int) -> list:
    """The map task on Ray: one share per partition, then the task's timing."""
    shares, timing = timed("shuffle_map", _emit_partitioned, payload, start, emit, partitions)
    return [*shares, timing]


def _timed_reduce(reduce: Reduce, *shares: list[Record]) -> tuple[list, TaskTime]:
    return timed("shuffle_reduce", _reduce_shares, reduce, *shares)


def map_reduce(items: list[Item], emit: Emit, reduce: Reduce, workers: int, partitions: int | None = None) -> list[Output]:
    """sorted(outputs of `reduce` over each hash partition of the records `emit` makes of `items`);
    `partitions` defaults to 1 in-process and to a few per worker on Ray."""
    if workers <= 1 or len(items) < 2:
        shares = _emit_partitioned(pickle.dumps(items), 0, emit, partitions or 1)
        return sorted(output for share in shares for output in _reduce_shares(reduce, share))
    import ray

    from ..train.ray_runner import ensure_ray

    ensure_ray(workers)
    partitions = partitions or workers * _PARTITIONS_PER_WORKER
    size = -(-len(items) // (workers * _CHUNKS_PER_WORKER))
    mapper = ray.remote(_timed_emit).options(num_returns=partitions + 1, num_cpus=1)
    shares = [
        mapper.remote(pickle.dumps(items[start : start + size], protocol=pickle.HIGHEST_PROTOCOL), start, emit, partitions)
        for start in range(0, len(items), size)
    ]
    reducer = ray.remote(_timed_reduce).options(num_cpus=1)
    reduced = ray.get([reducer.remote(reduce, *[chunk[p] for chunk in shares]) for p in range(partitions)])
    record_tasks(ray.get([chunk[partitions] for chunk in shares]))
    record_tasks(timing for _, timing in reduced)
    return sorted(output for outputs, _ in reduced for output in outputs)
