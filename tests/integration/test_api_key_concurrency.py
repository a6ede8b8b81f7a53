"""API key verification under real concurrency: exact use counts, and a revocation that holds
for every verify that starts after it returned.

Backends: a real redis-server, a real 3-master Redis Cluster, and an SQLite file. Threads share
one store object (as a server's request handlers do); processes each open their own store from
the URL (as several server processes do).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from mcpsec.core.api_keys import ApiKeys, Reason
from mcpsec.core.key_records import Status
from mcpsec.store import Store, open_store

from tests.support.processes import run_in_processes

THREADS = 32
VERIFIES_PER_THREAD = 50
PROCESSES = 4
VERIFIES_PER_PROCESS = 100


@dataclass(frozen=True)
class Target:
    url: str
    prefix: str

    def open(self) -> Store:
        return open_store(self.url, prefix=self.prefix)


def make_target(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    prefix = f"c{uuid4().hex[:8]}:"
    if backend == "sqlite":
        return Target(f"sqlite:///{tmp_path / 'keys.db'}", prefix)
    fixture = "redis_server" if backend == "redis" else "redis_cluster"
    return Target(request.getfixturevalue(fixture).url, prefix)


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis_server),
        pytest.param("cluster", marks=pytest.mark.cluster),
        "sqlite",
    ]
)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return make_target(request.param, request, tmp_path)


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis_server), "sqlite"])
def process_target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return make_target(request.param, request, tmp_path)


@pytest.fixture
def keys(target: Target) -> Iterator[ApiKeys]:
    store = target.open()
    try:
        yield ApiKeys(store)
    finally:
        store.close()


# --- threads -----------------------------------------------------------------------------------


def test_thirty_two_threads_count_every_use(keys: ApiKeys) -> None:
    created = keys.create("busy-bot", owner="load", roles=["user"])
    barrier = threading.Barrier(THREADS)

    def work(_: int) -> list[tuple[bool, Reason | None]]:
        barrier.wait(timeout=30)
        return [
            (v.valid, v.reason)
            for v in (
                keys.verify(created.api_key, permission="files:read")
                for _ in range(VERIFIES_PER_THREAD)
            )
        ]

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(work, i) for i in range(THREADS)]
        verdicts = [v for future in futures for v in future.result(timeout=240)]

    assert len(verdicts) == THREADS * VERIFIES_PER_THREAD
    refused = [v for v in verdicts if v != (True, None)]
    assert refused == []
    shown = keys.show(created.key_id)
    assert shown.use_count == THREADS * VERIFIES_PER_THREAD == 1600
    assert shown.last_used_at is not None


# --- processes ---------------------------------------------------------------------------------


def verify_in_process(
    url: str,
    prefix: str,
    api_key: str,
    count: int,
    barrier: Any,
    results: Any,
) -> None:
    """Runs in a spawned process: its own store from the URL, `count` verifies of one key."""
    store = open_store(url, prefix=prefix)
    try:
        keys = ApiKeys(store)
        barrier.wait(timeout=60)
        outcomes = [keys.verify(api_key).valid for _ in range(count)]
        results.put(outcomes)
    except BaseException as e:
        results.put(repr(e))
        raise
    finally:
        store.close()


def test_four_processes_count_every_use(process_target: Target) -> None:
    store = process_target.open()
    try:
        keys = ApiKeys(store)
        created = keys.create("multi-process-bot")
        outcomes = run_in_processes(
            verify_in_process,
            (process_target.url, process_target.prefix, created.api_key, VERIFIES_PER_PROCESS),
            count=PROCESSES,
            timeout=120,
        )
        flat = [valid for batch in outcomes for valid in batch]
        assert flat == [True] * (PROCESSES * VERIFIES_PER_PROCESS)
        assert keys.show(created.key_id).use_count == PROCESSES * VERIFIES_PER_PROCESS == 400
    finally:
        store.close()


# --- revocation mid-run ------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    started: float
    ended: float
    valid: bool
    reason: Reason | None


def test_no_verify_that_starts_after_a_revoke_returns_is_valid(
    target: Target, keys: ApiKeys
) -> None:
    """16 threads verify in a loop; another store object (another process, in effect) revokes
    the key mid-run. Every verify that started after `revoke` returned must say revoked."""
    threads = 16
    created = keys.create("about-to-leak")
    revoker = target.open()
    stop = threading.Event()
    revoked_returned = threading.Event()
    after_revoke = [0] * threads
    valid_before = threading.Semaphore(0)
    attempts: list[list[Attempt]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def work(i: int) -> None:
        barrier.wait(timeout=30)
        while not stop.is_set():
            after = revoked_returned.is_set()
            started = time.monotonic()
            verdict = keys.verify(created.api_key)
            ended = time.monotonic()
            attempts[i].append(Attempt(started, ended, verdict.valid, verdict.reason))
            if verdict.valid:
                valid_before.release()
            if after:
                after_revoke[i] += 1
                if after_revoke[i] >= 20:
                    return

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            futures = [pool.submit(work, i) for i in range(threads)]
            try:  # whatever fails here, the workers are told to stop before the pool is joined
                barrier.wait(timeout=30)
                for _ in range(100):  # the key is in real use when it is revoked
                    assert valid_before.acquire(timeout=60)
                revoke_called = time.monotonic()
                result = ApiKeys(revoker).revoke(created.key_id, reason="leaked")
                revoke_returned = time.monotonic()
                revoked_returned.set()
                assert result.status is Status.REVOKED
                for future in futures:
                    future.result(timeout=120)
            finally:
                stop.set()
    finally:
        revoker.close()

    everything = [a for batch in attempts for a in batch]
    started_after = [a for a in everything if a.started > revoke_returned]
    ended_before = [a for a in everything if a.ended < revoke_called]
    assert len(started_after) >= threads * 19  # every thread went on verifying after the revoke
    assert len(ended_before) >= 100
    late_valid = [a for a in started_after if a.valid or a.reason is not Reason.REVOKED]
    assert late_valid == [], f"{len(late_valid)} verifies started after the revoke and passed"
    assert all(a.valid for a in ended_before)
    valid_total = sum(a.valid for a in everything)
    assert keys.show(created.key_id).use_count == valid_total
