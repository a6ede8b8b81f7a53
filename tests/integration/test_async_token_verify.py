"""AsyncTokens.verify on real Redis and a real cluster: the asyncio transport, batched.

Many verifications in flight at once go out as pipelines; each must still get its own
verdict (tokens of many subjects live in many cluster slots), a lost script must be
reloaded, and a server that cannot answer must fail every caller closed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mcpsec.core.errors import StoreError
from mcpsec.core.secret_files import Secret
from mcpsec.core.signing_keys import Algorithm, Keyring
from mcpsec.core.token_keys import TokenKeys
from mcpsec.core.token_rules import Reason
from mcpsec.core.tokens import AsyncTokens, Tokens
from mcpsec.store import open_store
from mcpsec.store.redis_store import RedisStore

from tests.support.redis_servers import free_port


@pytest.fixture
def keys(tmp_path: Path) -> TokenKeys:
    ring = Keyring(tmp_path / "ring")
    ring.generate(Algorithm.EDDSA)
    return TokenKeys.load(ring, Secret(b"s" * 48, "test"))


def test_concurrent_verifies_each_get_their_own_verdict(store: RedisStore, keys: TokenKeys) -> None:
    tokens = Tokens(store, keys)
    minted = [tokens.mint(f"user-{n}", roles=["user"], refresh=False) for n in range(40)]
    revoked = {m.jti for m in minted[::3]}
    for m in minted[::3]:
        tokens.revoke(m.access_token)
    verifier = AsyncTokens(tokens)

    async def run() -> list[tuple[str, bool, Reason | None]]:
        async def one(n: int) -> tuple[str, bool, Reason | None]:
            m = minted[n % len(minted)]
            verdict = await verifier.verify(m.access_token, permission="files:read")
            return m.jti, verdict.valid, verdict.reason

        try:
            return await asyncio.gather(*(one(n) for n in range(400)))
        finally:
            await verifier.aclose()

    results = asyncio.run(run())
    assert len(results) == 400
    for jti, valid, reason in results:
        assert (valid, reason) == ((False, Reason.REVOKED) if jti in revoked else (True, None))


def test_a_permission_is_checked_after_the_revocation(store: RedisStore, keys: TokenKeys) -> None:
    tokens = Tokens(store, keys)
    minted = tokens.mint("guest-user", roles=["guest"], refresh=False)
    verifier = AsyncTokens(tokens)

    async def run() -> tuple[Reason | None, Reason | None]:
        try:
            denied = await verifier.verify(minted.access_token, permission="files:write")
            tokens.revoke(minted.access_token)
            gone = await verifier.verify(minted.access_token, permission="files:write")
            return denied.reason, gone.reason
        finally:
            await verifier.aclose()

    assert asyncio.run(run()) == (Reason.INSUFFICIENT_PERMISSION, Reason.REVOKED)


def test_a_flushed_script_is_loaded_again(store: RedisStore, keys: TokenKeys) -> None:
    tokens = Tokens(store, keys)
    minted = tokens.mint("flushed", refresh=False)
    verifier = AsyncTokens(tokens)

    async def run() -> list[bool]:
        try:
            await verifier.verify(minted.access_token)  # the script is cached now
            store.client.script_flush()
            found = await asyncio.gather(*(verifier.verify(minted.access_token) for _ in range(20)))
            return [v.valid for v in found]
        finally:
            await verifier.aclose()

    assert asyncio.run(run()) == [True] * 20


def test_an_unreachable_server_fails_every_caller_closed(keys: TokenKeys, tmp_path: Path) -> None:
    minter = Tokens(open_store(f"sqlite:///{tmp_path}/mint.db"), keys)
    minted = minter.mint("alice", refresh=False)
    dead = open_store(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    verifier = AsyncTokens(Tokens(dead, keys))

    async def run() -> list[object]:
        try:
            return await asyncio.gather(
                *(verifier.verify(minted.access_token) for _ in range(10)), return_exceptions=True
            )
        finally:
            await verifier.aclose()

    outcomes = asyncio.run(run())
    assert all(isinstance(o, StoreError) for o in outcomes), outcomes


def test_a_connection_dropped_while_idle_is_replaced_before_the_next_batch(
    store: RedisStore, keys: TokenKeys
) -> None:
    """The asyncio transport holds one connection per event loop: when the server drops it
    between batches (a restart, an idle timeout), the next batch sees the end of file the
    loop has read and opens a new one before sending: no request fails for it."""
    if store.info().backend != "redis":
        pytest.skip("the cluster path sends call by call over redis-py's client")
    tokens = Tokens(store, keys)
    minted = tokens.mint("reconnect", refresh=False)
    verifier = AsyncTokens(tokens)

    async def run() -> list[bool]:
        try:
            await verifier.verify(minted.access_token)  # the held connection is open now
            store.client.client_kill_filter(_type="normal", skipme=True)
            await asyncio.sleep(0.05)  # the loop runs between requests, as a server's does
            return [(await verifier.verify(minted.access_token)).valid for _ in range(3)]
        finally:
            await verifier.aclose()

    assert asyncio.run(run()) == [True, True, True]


def test_a_connection_dropped_in_flight_fails_its_batch_and_the_next_one_reconnects(
    store: RedisStore, keys: TokenKeys
) -> None:
    """A batch whose connection dies while it waits for the reply fails closed (a store
    error, never a verdict), and is not sent again; the next batch opens a new connection."""
    if store.info().backend != "redis":
        pytest.skip("the cluster path sends call by call over redis-py's client")
    tokens = Tokens(store, keys)
    minted = tokens.mint("in-flight", refresh=False)
    verifier = AsyncTokens(tokens)

    async def run() -> list[object]:
        try:
            await verifier.verify(minted.access_token)  # the held connection is open now
            # Scripts wait while clients are paused for writes; CLIENT KILL does not.
            store.client.client_pause(5000, all=False)
            try:
                waiting = asyncio.ensure_future(verifier.verify(minted.access_token))
                await asyncio.sleep(0.2)  # sent, and waiting for its reply
                assert not waiting.done()
                store.client.client_kill_filter(_type="normal", skipme=True)
                outcomes: list[object] = []
                try:
                    outcomes.append((await waiting).valid)
                except StoreError as e:
                    outcomes.append(e)
            finally:
                store.client.client_unpause()
            outcomes += [(await verifier.verify(minted.access_token)).valid for _ in range(2)]
            return outcomes
        finally:
            await verifier.aclose()

    outcomes = asyncio.run(run())
    assert isinstance(outcomes[0], StoreError), outcomes  # the dead connection, not a verdict
    assert outcomes[1:] == [True, True], outcomes
