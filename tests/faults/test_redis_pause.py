"""Fault 2: `CLIENT PAUSE` longer than the configured timeout.

The server accepts connections but answers nothing: every command must give up after
`store.timeout` (one attempt: a retried script could count a use twice) and say so in one
line, exit 5. A paused server runs no command at all, CLIENT UNPAUSE included, so each test
ends the pause by killing and restarting the server (its append-only file keeps the keys).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from mcpsec.core.api_keys import ApiKeys, AsyncApiKeys
from mcpsec.core.errors import StoreUnavailableError
from mcpsec.core.ratelimit import AsyncRateLimiter, RateLimiter
from mcpsec.store import open_store

from tests.support.cli import Cli, assert_store_failure
from tests.support.redis_servers import RedisServer, command

pytestmark = pytest.mark.redis_server

PAUSE_MS = 60_000  # far longer than anything here waits: ended early by a restart
CLI_TIMEOUT = "500ms"  # MCPSEC_STORE_TIMEOUT for the commands
CLI_BOUND = 0.5 + 3.0  # the timeout, plus a generous allowance for Python's start-up
LIBRARY_TIMEOUT = 1.0  # a second attempt would take at least twice this
NO_ANSWER = "did not answer in time"


@contextmanager
def paused(server: RedisServer) -> Iterator[None]:
    """Every client's commands held (new connections are still accepted); then the pause
    ended the only way a paused server allows, a restart."""
    command(server.port, "CLIENT", "PAUSE", str(PAUSE_MS), "ALL")
    try:
        yield
    finally:
        server.kill()
        server.restart()


def test_every_command_gives_up_within_the_configured_timeout_with_exit_5(
    durable_redis: RedisServer, tmp_path: Path
) -> None:
    cli = Cli.on_store(
        tmp_path, durable_redis.url, timeout=CLI_TIMEOUT, MCPSEC_STORE_PREFIX="pause-cli:"
    )
    key = cli.document("keys", "create", "--name", "ci")["api_key"]
    token = cli.document("token", "mint", "--subject", "alice")["access_token"]
    commands: list[tuple[tuple[str, ...], str | None]] = [
        (("keys", "create", "--name", "late"), None),
        (("keys", "verify", "-"), key),
        (("token", "revoke", "-"), token),
        (("rate", "show", "alice"), None),
        (("audit", "tail"), None),
    ]
    with paused(durable_redis):
        for args, secret in commands:
            ran = cli.process(*args, input=secret)
            line = assert_store_failure(ran, NO_ANSWER)
            print(f"\n{' '.join(args)}: exit {ran.exit_code} in {ran.seconds:.2f} s: {line}")
            assert ran.seconds < CLI_BOUND, f"{' '.join(args)} took {ran.seconds:.2f} s"
    # The pause over, nothing was changed by the commands that gave up.
    assert cli("keys", "verify", "-", input=key).exit_code == 0
    assert cli("token", "verify", "-", input=token).exit_code == 0


def one_attempt(call: Callable[[], Any]) -> tuple[Any, float]:
    """(what the call returned or raised, seconds it took)."""
    started = time.monotonic()
    try:
        result: Any = call()
    except StoreUnavailableError as e:
        result = e
    return result, time.monotonic() - started


def assert_gave_up_once(result: Any, seconds: float, what: str) -> None:
    print(f"\n{what}: {type(result).__name__} after {seconds:.2f} s")
    assert isinstance(result, StoreUnavailableError), result
    assert NO_ANSWER in str(result)
    assert seconds < 2 * LIBRARY_TIMEOUT, f"{what} took {seconds:.2f} s: was it retried?"


def test_the_library_gives_up_once_sync_and_async_and_the_same_objects_recover(
    durable_redis: RedisServer,
) -> None:
    store = open_store(durable_redis.url, prefix="pause-lib:", timeout=LIBRARY_TIMEOUT)
    keys = ApiKeys(store)
    async_keys = AsyncApiKeys(keys)
    limiter = AsyncRateLimiter(RateLimiter(store))
    key = keys.create("server")

    def in_loop(call: Callable[[], Awaitable[Any]]) -> Any:
        """Run on a new event loop, whose asyncio connections are closed after."""

        async def run() -> Any:
            try:
                return await call()
            finally:
                await async_keys.aclose()

        return asyncio.run(run())

    def verify_async() -> Any:
        return in_loop(lambda: async_keys.verify(key.api_key))

    try:
        with paused(durable_redis):
            assert_gave_up_once(*one_attempt(lambda: keys.verify(key.api_key)), "verify")
            assert_gave_up_once(*one_attempt(lambda: keys.create("late")), "create")
            assert_gave_up_once(*one_attempt(verify_async), "async verify")
            decision, seconds = one_attempt(lambda: in_loop(lambda: limiter.check("alice")))
            print(f"async rate check: {decision} after {seconds:.2f} s")
            assert (decision.allowed, decision.store_unavailable) == (True, True)  # fail_open
            assert seconds < 2 * LIBRARY_TIMEOUT
        assert keys.verify(key.api_key).valid
        assert verify_async().valid
    finally:
        store.close()
