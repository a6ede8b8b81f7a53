"""Rate limits under real concurrency: a bucket of 100 admits exactly 100, never more.

The seed's limiter (GET, then SETEX from Python) admitted 640 of 640 requests to a bucket of
100 under 32 clients. Here: 32 real threads on a real redis-server and a real Redis Cluster,
4 processes of 8 threads on one SQLite file, asyncio requests in flight together, and per-tool
buckets charged all or nothing; and one decision is one EVALSHA to one slot.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import redis
from mcpsec.core.ratelimit import AsyncRateLimiter, Decision, Limit, RateLimiter
from mcpsec.store import BucketRequest, open_store
from mcpsec.store.redis_store import RedisStore
from redis.crc import key_slot

from tests.support.processes import run_in_processes
from tests.support.sent_commands import record_commands

THREADS = 32
REQUESTS_PER_THREAD = 20
PROCESSES = 4
THREADS_PER_PROCESS = 8
QUOTA = Limit.of(100, 0)  # no refill: whatever is admitted is admitted out of these 100


def hammer(
    limiter: RateLimiter,
    identity: str,
    *,
    threads: int,
    requests: int,
    tools: list[tuple[str, Limit]] | None = None,
) -> list[Decision]:
    """`threads` real threads, released together, each making `requests` checks."""
    barrier = threading.Barrier(threads)

    def work(_: int) -> list[Decision]:
        barrier.wait(timeout=60)
        return [limiter.check(identity, limit=QUOTA, tools=tools or ()) for _ in range(requests)]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(work, i) for i in range(threads)]
        return [d for future in futures for d in future.result(timeout=240)]


def admitted(decisions: list[Decision]) -> int:
    assert not any(d.store_unavailable for d in decisions), "a decision failed open"
    return sum(d.allowed for d in decisions)


# --- real Redis and Cluster, threads ----------------------------------------------------------


@pytest.mark.redis_server
def test_thirty_two_threads_get_exactly_the_capacity(store: RedisStore) -> None:
    limiter = RateLimiter(store)
    decisions = hammer(limiter, "busy-bot", threads=THREADS, requests=REQUESTS_PER_THREAD)
    assert len(decisions) == THREADS * REQUESTS_PER_THREAD == 640
    assert admitted(decisions) == 100
    refused = [d for d in decisions if not d.allowed]
    assert {(d.remaining, d.retry_after) for d in refused} == {(0, None)}
    # every remaining count from 99 down to 0 was handed out exactly once
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(100))
    assert limiter.show("busy-bot", limit=QUOTA).tokens == 0.0


@pytest.mark.redis_server
def test_a_tool_bucket_and_the_identity_are_charged_together(store: RedisStore) -> None:
    limiter = RateLimiter(store)
    tools = [("t", Limit.of(50, 0))]
    decisions = hammer(limiter, "tool-bot", threads=THREADS, requests=5, tools=tools)
    assert admitted(decisions) == 50
    # the 110 refused requests charged the identity nothing
    assert limiter.show("tool-bot", limit=QUOTA).tokens == 50.0
    tool = store.take_buckets("tool-bot", [BucketRequest("tool:t", 50, 0)], consume=False)
    assert tool.levels[0].tokens == 0.0
    assert limiter.check("tool-bot", limit=QUOTA, tools=[("other", Limit.of(5, 0))]).allowed


@pytest.mark.redis_server
def test_asyncio_requests_in_flight_together_get_exactly_the_capacity(store: RedisStore) -> None:
    checker = AsyncRateLimiter(RateLimiter(store))

    async def run() -> list[Decision]:
        try:
            return await asyncio.gather(
                *(checker.check("async-bot", limit=QUOTA) for _ in range(300))
            )
        finally:
            await checker.aclose()

    decisions = asyncio.run(run())
    assert admitted(decisions) == 100
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(100))


# --- one decision, one command ----------------------------------------------------------------


def evalsha_calls(nodes: list[redis.Redis]) -> list[int]:
    """EVALSHA calls each server has counted so far."""
    return [int(c.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)) for c in nodes]


def script_keys(command: tuple[Any, ...]) -> list[str]:
    numkeys = int(command[2])
    return [str(k) for k in command[3 : 3 + numkeys]]


@pytest.mark.redis_server
@pytest.mark.parametrize("override", [False, True])
def test_a_decision_is_one_evalsha_to_one_slot(
    store: RedisStore, nodes: list[redis.Redis], monkeypatch: pytest.MonkeyPatch, override: bool
) -> None:
    limiter = RateLimiter(store)
    if override:
        limiter.set_override("alice@example.com", Limit.of(10, 0))
    script = resources.files("mcpsec.store").joinpath("scripts/bucket_take.lua").read_text()
    for node in nodes:  # loaded everywhere, so no NOSCRIPT round trip is counted
        node.script_load(script)
    tools = [("write_file", Limit.of(5, 1)), ("read_file", Limit.of(5, 1))]

    for round_ in ("creates three buckets", "the buckets exist now"):
        before = evalsha_calls(nodes)
        sent = record_commands(store, monkeypatch)
        decision = limiter.check("alice@example.com", roles=["user"], tools=tools)
        monkeypatch.undo()
        after = evalsha_calls(nodes)
        assert decision.allowed
        assert decision.policy == ("override" if override else "role:user")
        # the servers saw one EVALSHA in all, on one node
        assert sorted(b - a for a, b in zip(before, after, strict=True))[-1] == 1
        assert sum(after) - sum(before) == 1
        names = [str(c[0]).upper() for c in sent]
        assert names.count("EVALSHA") == 1, round_
        # besides it, at most one ZADD (listing new buckets), and none once they exist
        assert set(names) <= {"EVALSHA", "ZADD"}
        assert names.count("ZADD") <= (1 if round_ == "creates three buckets" else 0)
        (command,) = [c for c in sent if str(c[0]).upper() == "EVALSHA"]
        keys = script_keys(command)
        assert len(keys) == 4  # the override record, the identity and two tools
        assert len({key_slot(k.encode()) for k in keys}) == 1


# --- SQLite, several processes ----------------------------------------------------------------


def check_in_process(url: str, threads: int, requests: int, barrier: Any, results: Any) -> None:
    """Runs in a spawned process: its own store on the shared file, `threads` threads."""
    store = open_store(url, timeout=60)
    try:
        limiter = RateLimiter(store)
        barrier.wait(timeout=120)
        decisions = hammer(limiter, "shared-bot", threads=threads, requests=requests)
        results.put([(d.allowed, d.store_unavailable) for d in decisions])
    except BaseException as e:
        results.put(repr(e))
        raise
    finally:
        store.close()


def test_four_processes_on_one_sqlite_file_get_exactly_the_capacity(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rate.db'}"
    store = open_store(url)
    try:
        outcomes = run_in_processes(
            check_in_process, (url, THREADS_PER_PROCESS, REQUESTS_PER_THREAD), count=PROCESSES
        )
        flat = [pair for batch in outcomes for pair in batch]
        assert len(flat) == PROCESSES * THREADS_PER_PROCESS * REQUESTS_PER_THREAD == 640
        assert not any(unavailable for _, unavailable in flat), "a decision failed open"
        assert sum(allowed for allowed, _ in flat) == 100
        assert RateLimiter(store).show("shared-bot", limit=QUOTA).tokens == 0.0
    finally:
        store.close()
