"""Fault 5: a Sentinel failover (1 primary, 1 replica, 3 sentinels on loopback).

The primary is killed (SIGKILL) while one process keeps verifying API keys through the
same store object. Every call must either answer correctly or say the store is
unavailable, never "valid" for the revoked key; once the replica is promoted the calls
succeed again without reopening anything, and a revocation acknowledged by the replica
(`store.wait_replicas = 1`) still holds. Recovery times are printed (`pytest -s`), not
asserted: only a generous deadline keeps a broken failover from hanging the suite.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from mcpsec.core.api_keys import ApiKeys, AsyncApiKeys, Reason, Verdict
from mcpsec.core.errors import StoreUnavailableError
from mcpsec.core.key_records import Status
from mcpsec.store import Store
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

from tests.support.cli import Ran
from tests.support.redis_servers import SentinelTopology

pytestmark = [pytest.mark.redis_server, pytest.mark.slow]

DEADLINE = 30.0  # seconds; a failover on loopback takes a few
TIMEOUT = 0.5  # the store timeout: a dead primary costs at most this per call
SETTLED = 20  # calls in a row that must succeed once the first one has
Stores = Callable[..., Store]


@dataclass
class Keys:
    """One revoked key and one valid key, and how a verdict on each must look."""

    revoked: str
    valid: str

    def check(self, api_key: str, verdict: Verdict) -> None:
        if api_key == self.revoked:
            assert (verdict.valid, verdict.reason) == (False, Reason.REVOKED), verdict
        else:
            assert verdict.valid, verdict


@dataclass
class Recovery:
    seconds: float  # from the kill to the first call that succeeded
    unavailable: int  # calls that said "store unavailable" meanwhile
    last_error: str

    def report(self, what: str, switched: float | None) -> str:
        """`switched`: seconds from the kill to the sentinels' announcing the new primary."""
        failover = f"{switched:.2f} s" if switched is not None else "an unknown time"
        return (
            f"\n{what}: answers again {self.seconds:.2f} s after the primary was killed (the "
            f"sentinels announced the new primary after {failover}); {self.unavailable} "
            f"call(s) said unavailable meanwhile, the last: {self.last_error}"
        )


def kill_primary(topology: SentinelTopology) -> tuple[int, float, float]:
    """SIGKILL the primary: its port, and when, by the monotonic and the wall clock."""
    old, started, wall = topology.primary.port, time.monotonic(), time.time()
    topology.primary.kill()
    return old, started, wall


def failover_seconds(topology: SentinelTopology, old: int, wall: float) -> float | None:
    topology.wait_for_new_primary(old)
    switched = topology.switched_at(wall)
    return switched - wall if switched is not None else None


def open_keys(topology: SentinelTopology, stores: Stores) -> ApiKeys:
    """Keys over a store that waits for the replica: an acknowledged change survives."""
    return ApiKeys(stores(topology.url, timeout=TIMEOUT, wait_replicas=1))


def cli_env(prefix: str) -> dict[str, str]:
    return {
        "MCPSEC_STORE_PREFIX": prefix,
        "MCPSEC_STORE_TIMEOUT": "500ms",
        "MCPSEC_STORE_WAIT_REPLICAS": "1",
    }


def unavailable(error: StoreUnavailableError) -> str:
    """The error, checked to be one line a user can read (and no secret to leak here)."""
    text = str(error)
    assert "\n" not in text and "Traceback" not in text
    return text


def follow(check: Callable[[], None], started: float) -> Recovery:
    """Call `check` until it has succeeded SETTLED times; a call may fail only as
    unavailable, and only before the first success."""
    failures, last, successes, recovered = 0, "", 0, None
    while successes < SETTLED:
        assert time.monotonic() - started < DEADLINE, f"no recovery; last error: {last}"
        try:
            check()
        except StoreUnavailableError as e:
            assert recovered is None, f"failed again after recovering: {e}"
            failures, last = failures + 1, unavailable(e)
            time.sleep(0.02)
            continue
        if recovered is None:
            recovered = Recovery(time.monotonic() - started, failures, last)
        successes += 1
    assert recovered is not None
    return recovered


async def follow_async(akeys: AsyncApiKeys, keys: Keys, started: float) -> Recovery:
    """`follow` for a server: bursts of concurrent verifications in one event loop, each
    call answering correctly or saying unavailable, until SETTLED bursts succeeded."""
    presented = [keys.revoked, keys.valid] * 8
    failures, last, successes, recovered = 0, "", 0, None
    while successes < SETTLED:
        assert time.monotonic() - started < DEADLINE, f"no recovery; last error: {last}"
        calls: list[Awaitable[Verdict]] = [akeys.verify(k) for k in presented]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        for api_key, outcome in zip(presented, outcomes, strict=True):
            if isinstance(outcome, Verdict):
                keys.check(api_key, outcome)
            else:
                assert isinstance(outcome, StoreUnavailableError), repr(outcome)
        errors = [o for o in outcomes if isinstance(o, StoreUnavailableError)]
        if errors:
            assert recovered is None, f"failed again after recovering: {errors[0]}"
            failures, last = failures + len(errors), unavailable(errors[0])
            await asyncio.sleep(0.02)
            continue
        if recovered is None:
            recovered = Recovery(time.monotonic() - started, failures, last)
        successes += 1
    assert recovered is not None
    return recovered


def test_verify_follows_a_failover_without_reopening_the_store(
    failover_topology: SentinelTopology,
    prefix: str,
    stores: Stores,
    mcpsec_process: Callable[..., Ran],
) -> None:
    api_keys = open_keys(failover_topology, stores)
    revoked = api_keys.create("revoked-bot", roles=["user"])
    api_keys.revoke(revoked.key_id)  # acknowledged by the replica, or this would raise
    made = mcpsec_process(
        "--store", failover_topology.url, "keys", "create", "--name", "valid-bot",
        "--role", "user", "--quiet", env=cli_env(prefix),
    )  # fmt: skip
    assert made.exit_code == 0, made.stderr
    keys = Keys(revoked.api_key, made.stdout.strip())

    def verify_both() -> None:
        for api_key in (keys.revoked, keys.valid):
            keys.check(api_key, api_keys.verify(api_key))

    verify_both()
    old, started, wall = kill_primary(failover_topology)
    recovery = follow(verify_both, started)
    print(recovery.report("sync verify", failover_seconds(failover_topology, old, wall)))
    assert recovery.unavailable > 0  # the dead primary was noticed, not skipped over

    for api_key, exit_code in ((keys.revoked, 1), (keys.valid, 0)):  # a new process too
        ran = mcpsec_process(
            "--store", failover_topology.url, "keys", "verify", "-",
            input=api_key, env=cli_env(prefix),
        )  # fmt: skip
        assert ran.exit_code == exit_code, ran.stdout + ran.stderr


def test_async_verify_follows_a_failover(
    failover_topology: SentinelTopology, stores: Stores
) -> None:
    api_keys = open_keys(failover_topology, stores)
    revoked = api_keys.create("revoked-bot", roles=["user"])
    api_keys.revoke(revoked.key_id)
    keys = Keys(revoked.api_key, api_keys.create("valid-bot", roles=["user"]).api_key)

    async def scenario() -> tuple[Recovery, int, float]:
        akeys = AsyncApiKeys(api_keys)
        try:
            for api_key in (keys.revoked, keys.valid):  # this loop's client, connected
                keys.check(api_key, await akeys.verify(api_key))
            old, started, wall = kill_primary(failover_topology)
            return await follow_async(akeys, keys, started), old, wall
        finally:
            await akeys.aclose()

    recovery, old, wall = asyncio.run(scenario())
    print(recovery.report("async verify", failover_seconds(failover_topology, old, wall)))
    assert recovery.unavailable > 0


def stale_once(real: Callable[..., Any], address: tuple[str, int]) -> Callable[..., Any]:
    """`Sentinel.discover_master` that names `address` the first time, as a sentinel that
    has not yet heard of a failover names the demoted primary, then asks the sentinels."""
    asked: list[str] = []

    def discover(sentinel: Any, service: str) -> Any:
        if asked:
            return real(sentinel, service)
        asked.append(service)
        return address

    return discover


def test_a_demoted_primary_named_by_a_stale_sentinel_costs_one_call(
    redis_sentinel: SentinelTopology, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write reaches a replica, which answers READONLY: that call says unavailable
    (it is not retried) and drops the connection, so the next asks the sentinels again."""
    created = open_keys(redis_sentinel, stores).create("bot", roles=["user"])  # on the replica
    replica = ("127.0.0.1", redis_sentinel.replica.port)
    monkeypatch.setattr(Sentinel, "discover_master", stale_once(Sentinel.discover_master, replica))
    api_keys = ApiKeys(stores(redis_sentinel.url, timeout=TIMEOUT))
    with pytest.raises(StoreUnavailableError, match="previous master is now a slave") as caught:
        api_keys.revoke(created.key_id)
    unavailable(caught.value)
    assert api_keys.revoke(created.key_id).status is Status.REVOKED
    assert api_keys.verify(created.api_key).reason is Reason.REVOKED


def test_the_async_client_too_leaves_a_demoted_primary_after_one_call(
    redis_sentinel: SentinelTopology, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verification counts the use, a write: the replica refuses it with READONLY.
    The script is also missing there (NOSCRIPT first), which must not trap the loop's
    held connection on the replica."""
    api_keys = open_keys(redis_sentinel, stores)
    created = api_keys.create("bot", roles=["user"])  # on the replica too
    stale = stale_once(AsyncSentinel.discover_master, ("127.0.0.1", redis_sentinel.replica.port))

    async def discover(sentinel: Any, service: str) -> Any:
        found = stale(sentinel, service)
        return found if isinstance(found, tuple) else await found

    monkeypatch.setattr(AsyncSentinel, "discover_master", discover)

    async def scenario() -> None:
        akeys = AsyncApiKeys(api_keys)
        try:
            with pytest.raises(StoreUnavailableError, match="previous master") as caught:
                await akeys.verify(created.api_key)
            unavailable(caught.value)
            assert (await akeys.verify(created.api_key)).valid
        finally:
            await akeys.aclose()

    asyncio.run(scenario())
