"""Planning in worker processes: a pass reads and writes while other processes plan.

Planning a patient is pure Python (the planner, the message rules, the templates)
and most of a planning pass's work in one process (figures: docs/benchmarks.md).
A pass over more than one chunk of patients can hand each chunk to a pool of
worker processes and, while they plan, read the next chunk and write the rows
that came back. Chunks travel as plain tuples (:func:`pack_rows`): pickling
SQLAlchemy rows costs about as much as planning them.

The pool is started once per process with the ``spawn`` method, so a worker begins
from a clean interpreter whatever threads the parent runs (the clock's scheduler)
and whatever locks they hold; it lives as long as the parent, so its caches (dose
schedules, local times, rule timings) stay warm from one pass to the next. A
worker that dies breaks the pool: the pass fails and rolls back, the pool is
discarded and the next pass starts a new one.

Nothing here knows about the outbox: the task and its arguments are the caller's.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import deque, namedtuple
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import lru_cache
from typing import Any

#: Most worker processes a pass uses by default, however many cores the machine has:
#: beyond that the pass's own process (reading, checking keys, inserting) is the limit.
MAX_DEFAULT_PROCESSES = 4

Packed = tuple[tuple[str, ...], list[tuple[Any, ...]]]


def default_planning_processes() -> int:
    """Worker processes for a planning pass on this machine: one per core, 0 on one core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    return 0 if cores < 2 else min(cores, MAX_DEFAULT_PROCESSES)


def pack_rows(rows: Sequence[Any]) -> Packed:
    """Table rows (with ``_fields``) as their field names and plain tuples, cheap to pickle."""
    if not rows:
        return (), []
    return tuple(rows[0]._fields), [tuple(row) for row in rows]


@lru_cache(maxsize=64)
def _record_type(fields: tuple[str, ...]) -> Any:
    return namedtuple("Record", fields)


def unpack_rows(packed: Packed) -> list[Any]:
    """Rows with attribute access again (named tuples), from :func:`pack_rows`."""
    fields, values = packed
    if not fields:
        return []
    make = _record_type(fields)._make
    return [make(value) for value in values]


_pools: dict[int, ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()


def planning_pool(processes: int) -> ProcessPoolExecutor:
    """The process's pool of ``processes`` planning workers, started on first use."""
    with _pools_lock:
        pool = _pools.get(processes)
        if pool is None:
            context = multiprocessing.get_context("spawn")
            pool = _pools[processes] = ProcessPoolExecutor(processes, mp_context=context)
        return pool


def discard_pool(processes: int) -> None:
    """Forget a broken pool (the next pass starts a new one)."""
    with _pools_lock:
        pool = _pools.pop(processes, None)
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


class PlanningWorkers:
    """Chunks planned by a pool, their results handed back in the order they were sent.

    At most ``2 * processes`` chunks are in flight: enough to keep every worker busy
    while the caller reads and writes, few enough that memory stays flat.
    """

    def __init__(self, processes: int, task: Callable[..., Any], *args: Any) -> None:
        self.processes = processes
        self._pool = planning_pool(processes)
        self._task = task
        self._args = args
        self._pending: deque[Future[Any]] = deque()

    def submit(self, payload: Any) -> Iterator[Any]:
        """Send one chunk; yield the results that must be taken before sending more."""
        self._pending.append(self._pool.submit(self._task, payload, *self._args))
        while len(self._pending) > 2 * self.processes:
            yield self._result(self._pending.popleft())

    def drain(self) -> Iterator[Any]:
        """Yield every remaining result, in order."""
        while self._pending:
            yield self._result(self._pending.popleft())

    def cancel(self) -> None:
        """Drop the chunks not yet taken (the pass failed)."""
        while self._pending:
            self._pending.popleft().cancel()

    def _result(self, future: Future[Any]) -> Any:
        try:
            return future.result()
        except BrokenProcessPool:
            discard_pool(self.processes)
            raise
