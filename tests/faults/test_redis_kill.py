"""Fault 1: Redis killed (SIGKILL) in the middle of a run of key verifications.

Every verification either answers right or says the store is unavailable: never "valid" for
a revoked key, never another exception. After Redis restarts on the same port (its append-only
file fsynced on every write, so the keys survive), the same store object in the same process
answers again, without being reopened.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcpsec.core.api_keys import ApiKeys, AsyncApiKeys, CreatedKey, Reason
from mcpsec.core.errors import StoreUnavailableError
from mcpsec.store import open_store

from tests.support.cli import Cli, assert_store_failure
from tests.support.redis_servers import RedisServer

pytestmark = pytest.mark.redis_server

THREADS = 4
CALLS = 500  # in all, alternating the valid and the revoked key
KILL_AFTER = 100  # answered calls before the SIGKILL
TIMEOUT = 1.0  # store.timeout, seconds
RECOVERY_LIMIT = 15.0  # seconds the same store may take to answer again after the restart


class Tally:
    """What the verifying threads saw, counted under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: Counter[str] = Counter()
        self.wrong: list[str] = []
        self.done = 0

    def add(self, outcome: str, wrong: str | None = None) -> None:
        with self.lock:
            self.seen[outcome] += 1
            self.done += 1
            if wrong is not None:
                self.wrong.append(wrong)


def verify_once(keys: ApiKeys, key: CreatedKey, revoked: bool, tally: Tally) -> None:
    """One verification, judged: right, unavailable, or wrong (anything else)."""
    label = "revoked" if revoked else "valid"
    try:
        verdict = keys.verify(key.api_key)
    except StoreUnavailableError:
        tally.add(f"{label}: unavailable")
        return
    except Exception as e:  # any other exception is a defect: collected and reported
        tally.add("wrong", f"{label} key raised {type(e).__name__}: {e}")
        return
    right = verdict.reason is Reason.REVOKED if revoked else verdict.valid
    tally.add(f"{label}: answered" if right else "wrong", None if right else f"{label}: {verdict}")


def test_a_killed_server_never_makes_a_revoked_key_valid_and_the_same_store_recovers(
    running: RedisServer,
) -> None:
    store = open_store(running.url, prefix="kill:", timeout=TIMEOUT)
    try:
        keys = ApiKeys(store)
        valid, revoked = keys.create("valid"), keys.create("revoked")
        keys.revoke(revoked.key_id)
        tally = Tally()

        def worker() -> None:
            for i in range(CALLS // THREADS):
                verify_once(keys, revoked if i % 2 else valid, bool(i % 2), tally)
                time.sleep(0.001)  # paced, so the kill lands with calls still to come

        with ThreadPoolExecutor(THREADS) as pool:
            runs = [pool.submit(worker) for _ in range(THREADS)]
            while tally.done < KILL_AFTER and not all(r.done() for r in runs):
                time.sleep(0.001)
            running.kill()
            for r in runs:
                r.result()

        print(f"\n{CALLS} verifications, Redis killed after {KILL_AFTER}: {dict(tally.seen)}")
        assert tally.wrong == []
        assert tally.done == CALLS
        assert tally.seen["valid: answered"] + tally.seen["revoked: answered"] >= KILL_AFTER
        assert tally.seen["valid: unavailable"] + tally.seen["revoked: unavailable"] > 0

        started = time.monotonic()
        running.restart()
        restart = time.monotonic() - started
        recovery = recover(keys, valid, revoked)
        print(f"redis-server restarted in {restart:.3f} s; the same store answered right")
        print(f"{recovery.seconds:.3f} s later, after {recovery.failures} unavailable call(s)")
        # The server was back before the first call: a connection it hung up on is replaced
        # before anything is sent on it, so not one call fails for the restart.
        assert recovery.failures == 0
        # No acknowledged use was lost (fsynced before the reply); a call whose reply the
        # kill swallowed may have counted.
        counted = keys.show(valid.key_id).use_count
        acknowledged = tally.seen["valid: answered"] + recovery.uses
        assert acknowledged <= counted <= acknowledged + tally.seen["valid: unavailable"]
        assert_every_thread_answers(keys, valid, revoked)
    finally:
        store.close()


def test_a_restart_while_idle_costs_no_failed_call(running: RedisServer) -> None:
    """The connections a thread and an event loop hold are replaced, before anything is sent
    on them, when the server hung up on them: a Redis restarted between two requests makes
    neither fail (a server would otherwise refuse one request per connection)."""
    store = open_store(running.url, prefix="idle:", timeout=TIMEOUT)
    keys = ApiKeys(store)
    async_keys = AsyncApiKeys(keys)
    valid = keys.create("idle")

    async def scenario() -> None:
        try:
            assert keys.verify(valid.api_key).valid  # this thread's connection, held
            assert (await async_keys.verify(valid.api_key)).valid  # the loop's, held
            running.kill()
            running.restart()
            await asyncio.sleep(0.05)  # the loop runs, as a server's does between requests
            assert keys.verify(valid.api_key).valid
            assert (await async_keys.verify(valid.api_key)).valid
        finally:
            await async_keys.aclose()

    try:
        asyncio.run(scenario())
        assert keys.show(valid.key_id).use_count == 4
    finally:
        store.close()


@dataclass(frozen=True)
class Recovery:
    seconds: float  # from the restart until both keys were answered right
    failures: int  # calls that still said "unavailable" meanwhile
    uses: int  # valid verifications made (each counts a use)


def recover(keys: ApiKeys, valid: CreatedKey, revoked: CreatedKey) -> Recovery:
    """Until the same ApiKeys object answers both keys right again, counting the calls that
    said "unavailable" meanwhile (nothing is retried: a verification counts a use)."""
    started = time.monotonic()
    failures = uses = 0
    while True:
        try:
            verdict = keys.verify(valid.api_key)
            uses += 1
            assert verdict.valid
            assert keys.verify(revoked.api_key).reason is Reason.REVOKED
            return Recovery(time.monotonic() - started, failures, uses)
        except StoreUnavailableError:
            failures += 1
            assert time.monotonic() - started < RECOVERY_LIMIT, "the store never came back"
            time.sleep(0.02)


def assert_every_thread_answers(keys: ApiKeys, valid: CreatedKey, revoked: CreatedKey) -> None:
    """Threads of the same process, each with its own connection, are answered too."""

    def check(_: int) -> None:
        recover(keys, valid, revoked)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(check, range(THREADS)))


def test_the_cli_says_unavailable_in_one_line_while_the_server_is_down(
    running: RedisServer, tmp_path: Path
) -> None:
    cli = Cli.on_store(tmp_path, running.url, MCPSEC_STORE_PREFIX="kill-cli:")
    key = cli.document("keys", "create", "--name", "ci")["api_key"]
    running.kill()
    try:
        down = cli.process("keys", "verify", "-", input=key)
        line = assert_store_failure(down, "is unreachable", running.url)
        print(f"\nwhile Redis is down: exit {down.exit_code}: {line}")
    finally:
        running.restart()
    up = cli.process("keys", "verify", "-", input=key)
    assert (up.exit_code, up.stdout, up.stderr) == (0, "valid\n", ""), up
