"""Threads of one process writing to one SQLite file take turns instead of racing the busy
handler: with a short timeout, 16 threads hammering one row never see "locked"."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mcpsec.store import open_store

THREADS = 16
UPDATES = 100
TIMEOUT = 0.25  # seconds: far longer than any one write, far shorter than a starved poller waits


def test_threads_sharing_a_file_never_time_out_on_each_other(tmp_path: Path) -> None:
    # Two store objects on the same file, as a server with a store per component has:
    # the turn-taking is per file, not per object.
    url = f"sqlite:///{tmp_path / 'store.db'}"
    stores = [open_store(url, timeout=TIMEOUT), open_store(url, timeout=TIMEOUT)]
    stores[0].put("thing", "counter", {"uses": 0})
    barrier = threading.Barrier(THREADS)
    failures: list[Exception] = []

    def work(i: int) -> None:
        store = stores[i % 2]
        barrier.wait(timeout=30)
        for _ in range(UPDATES):
            try:
                store.update("thing", "counter", increment={"uses": 1})
            except Exception as e:  # collected: the assertion below names them
                failures.append(e)

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        list(pool.map(work, range(THREADS)))
    record = stores[0].get("thing", "counter")
    for store in stores:
        store.close()
    assert failures == []
    assert record is not None and record.fields["uses"] == THREADS * UPDATES
