"""Real processes against one store, started together: for claims that hold across processes.

    outcomes = run_in_processes(worker, (url, 20), count=4)

Each process runs `worker(*args, barrier, results)`: it waits on the barrier (so they all
start at once), then puts one picklable result on `results`, or `repr(error)` if it failed.
The processes are spawned, not forked: each opens its own store, as separate servers would.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any


def run_in_processes(
    worker: Callable[..., None], args: Sequence[Any], *, count: int, timeout: float = 180.0
) -> list[Any]:
    """Every process's result, once all have exited 0 and none reported an error."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(count)
    results = context.Queue()
    workers = [context.Process(target=worker, args=(*args, barrier, results)) for _ in range(count)]
    for process in workers:
        process.start()
    try:
        outcomes = [results.get(timeout=timeout) for _ in workers]
    finally:
        for process in workers:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
                process.join()
    errors = [o for o in outcomes if isinstance(o, str)]
    assert errors == [], errors
    assert [p.exitcode for p in workers] == [0] * count
    return outcomes
