"""The audit log across real processes: many writers keep one chain, and `mcpsec audit tail
-f` (a real process) shows what another process appends, within half a second, until Ctrl-C.

Backends: a real redis-server and an SQLite file. Every process opens its own store from
the URL, as separate servers and CLI runs do.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from uuid import uuid4

import pytest
from mcpsec.core.audit import AuditLog, Outcome
from mcpsec.store import Store, open_store

from tests.support.cli import Cli
from tests.support.processes import run_in_processes

PROCESSES = 4
EVENTS_PER_PROCESS = 500
FOLLOW_CLAIM = 0.5  # seconds, from an append to its line in `audit tail -f`
FOLLOW_BOUND = 2.0  # what the test allows, for a busy CI machine


@dataclass(frozen=True)
class Target:
    url: str
    prefix: str
    key: str  # the audit key, as MCPSEC_AUDIT_KEY holds it

    def open(self) -> Store:
        return open_store(self.url, prefix=self.prefix)

    def audit_log(self, store: Store, actor: str = "test") -> AuditLog:
        return AuditLog(store, self.key.encode(), actor=actor)


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis_server), "sqlite"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    prefix = f"a{uuid4().hex[:8]}:"
    key = secrets.token_hex(24)  # 48 characters
    if request.param == "sqlite":
        return Target(f"sqlite:///{tmp_path / 'audit.db'}", prefix, key)
    return Target(request.getfixturevalue("redis_server").url, prefix, key)


# -- many writer processes -------------------------------------------------------------------


def write_in_process(
    url: str, prefix: str, key: str, count: int, barrier: Any, results: Any
) -> None:
    """Runs in a spawned process: its own store and AuditLog, `count` events."""
    store = open_store(url, prefix=prefix)
    try:
        log = AuditLog(store, key.encode(), actor=f"pid{os.getpid()}")
        barrier.wait(timeout=60)
        seqs = [
            log.record("key.verified", Outcome.ALLOWED, details={"n": n}).seq for n in range(count)
        ]
        results.put((os.getpid(), seqs))
    except BaseException as e:
        results.put(repr(e))
        raise
    finally:
        store.close()


def test_four_writer_processes_keep_one_chain(target: Target) -> None:
    outcomes = run_in_processes(
        write_in_process,
        (target.url, target.prefix, target.key, EVENTS_PER_PROCESS),
        count=PROCESSES,
        timeout=150,
    )
    store = target.open()
    try:
        log = target.audit_log(store)
        result = log.verify()
        assert result.intact, result
        assert (result.total, result.valid, result.trimmed) == (2000, 2000, 0)
        events = list(log.events())
        assert [e.seq for e in events] == list(range(1, 2001))
        # Every process's events, each once and in its own order, with the seq it was told.
        for pid, seqs in outcomes:
            mine = [e for e in events if e.actor == f"pid{pid}"]
            assert [e.details["n"] for e in mine] == list(range(EVENTS_PER_PROCESS))
            assert [e.seq for e in mine] == seqs
    finally:
        store.close()


# -- audit tail -f as a real process ------------------------------------------------------


class Lines:
    """A process's stdout, line by line, each stamped with when it arrived."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[tuple[float, str]] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put((time.monotonic(), line))

    def next(self, timeout: float) -> tuple[float, str]:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no line from `audit tail -f` within {timeout} s")

    def join(self) -> None:
        self._thread.join(timeout=10)


@pytest.fixture
def follower(target: Target, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    mcpsec = Cli(
        tmp_path / "home",
        MCPSEC_STORE_URL=target.url,
        MCPSEC_STORE_PREFIX=target.prefix,
        MCPSEC_AUDIT_KEY=target.key,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "mcpsec", "audit", "tail", "-f", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=mcpsec.environment(),
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_tail_follow_shows_another_process_append_and_ends_on_ctrl_c(
    target: Target, follower: subprocess.Popen[str]
) -> None:
    store = target.open()
    try:
        log = target.audit_log(store, actor="writer")
        log.record("rate.reset", Outcome.ALLOWED, subject="before")
        assert follower.stdout is not None
        lines = Lines(follower.stdout)
        _, shown = lines.next(timeout=30)  # the newest event, printed on start
        assert json.loads(shown)["subject"] == "before"
        # `tail` starts following just after it printed the newest events; give it that
        # moment (an append in between is the separate, known race of cli/audit.py).
        time.sleep(1.0)

        appended_at = time.monotonic()
        log.record("key.revoked", Outcome.ALLOWED, key_id="4fJq8Lw2Xc9a", reason="leaked")
        seen_at, line = lines.next(timeout=10)
        latency = seen_at - appended_at
        print(f"audit tail -f showed the event {latency:.3f} s after the append")
        event = json.loads(line)
        assert (event["type"], event["key_id"], event["actor"]) == (
            "key.revoked",
            "4fJq8Lw2Xc9a",
            "writer",
        )
        assert event["seq"] == 2
        assert latency <= FOLLOW_BOUND, f"{latency:.3f} s (the claim is {FOLLOW_CLAIM} s)"

        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 0
        assert follower.stderr is not None
        assert "Traceback" not in follower.stderr.read()
        lines.join()
    finally:
        store.close()
