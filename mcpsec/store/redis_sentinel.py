"""Redis behind Sentinel: clients that ask the sentinels where the primary is.

    client = sentinel_client(parse_store_url("redis+sentinel://s1:26379,s2:26379/main"), common)
    client.execute_command("EVALSHA", sha, 1, key)   # on whichever node is primary now

redis-py's Sentinel pool asks the sentinels each time it opens a connection, and drops a
connection on a socket error or on a READONLY reply (the primary it reached was demoted).
So after a failover the call that hits the dead or demoted primary fails once (the store
says "unavailable"; nothing is retried, so no script runs twice) and the next one opens a
connection to the promoted replica, with no restart of the process.

Credentials: the URL's user and password are for the data nodes; the sentinels get their
own `sentinel_username` / `sentinel_password` from the URL, or none. With
`rediss+sentinel://` both the sentinels and the data nodes are reached over TLS, with the
same TLS options. Sentinels are asked with the same timeouts and no retries either, so a
dead sentinel costs one connect timeout before the next one is asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis
import redis.asyncio as aredis
from redis.asyncio.sentinel import MasterNotFoundError as AsyncMasterNotFoundError
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import MasterNotFoundError, Sentinel

from mcpsec.core.errors import StoreUnavailableError
from mcpsec.store.url import StoreUrl

__all__ = [
    "AsyncMasterNotFoundError",
    "MasterNotFoundError",
    "async_sentinel_client",
    "no_primary_error",
    "sentinel_client",
]


def sentinel_client(url: StoreUrl, common: Mapping[str, Any]) -> redis.Redis:
    """A client for the primary of `url.service`; closing it closes its sentinel clients."""
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(url.nodes), sentinel_kwargs=_sentinel_kwargs(url, common)
    )
    client: _SentinelRedis = sentinel.master_for(  # type: ignore[no-untyped-call]
        _service(url), redis_class=_SentinelRedis, **_primary_kwargs(url, common)
    )
    client.manager = sentinel
    return client


def async_sentinel_client(url: StoreUrl, common: Mapping[str, Any]) -> aredis.Redis:
    """The asyncio twin of `sentinel_client`; `common` holds redis.asyncio's Retry."""
    sentinel = AsyncSentinel(  # type: ignore[no-untyped-call]
        list(url.nodes), sentinel_kwargs=_sentinel_kwargs(url, common)
    )
    client: _AsyncSentinelRedis = sentinel.master_for(
        _service(url), redis_class=_AsyncSentinelRedis, **_primary_kwargs(url, common)
    )
    client.manager = sentinel
    return client


def no_primary_error(error: redis.ConnectionError, where: str) -> StoreUnavailableError:
    """No sentinel named a primary that is up. redis-py's message quotes every sentinel's
    client at length; this says what an operator can act on."""
    if "AuthenticationError" in str(error):  # how redis-py reports a sentinel's refusal
        return StoreUnavailableError(
            f"the store at {where}: a sentinel refused the credentials",
            hint="give the sentinels' own user and password as sentinel_username and "
            "sentinel_password in the store URL (the URL's user and password are the data "
            "nodes')",
        )
    return StoreUnavailableError(
        f"the store at {where}: no sentinel names a primary that is up",
        hint="a failover may be under way: try again in a few seconds; else check that the "
        "sentinels run and are reachable at the URL's addresses, and the service name",
    )


def _primary_kwargs(url: StoreUrl, common: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **common,
        "db": url.db,
        "username": url.username,
        "password": url.password,
        "ssl": url.tls,
    }


def _sentinel_kwargs(url: StoreUrl, common: Mapping[str, Any]) -> dict[str, Any]:
    """How to reach a sentinel: the store's timeouts, no retries, its TLS options, and the
    sentinels' own credentials. redis-py's default would take only the socket options, and
    so retry a dead sentinel with backoff before asking the next one."""
    kwargs = {
        name: value
        for name, value in common.items()
        if name.startswith(("socket_", "ssl")) or name == "retry"
    }
    kwargs["username"] = url.sentinel_username
    kwargs["password"] = url.sentinel_password
    if url.tls:
        kwargs["ssl"] = True
    return kwargs


def _service(url: StoreUrl) -> str:
    assert url.service is not None, "parse_store_url names a service for every Sentinel URL"
    return url.service


class _SentinelRedis(redis.Redis):
    """The primary's client, which also closes its connections to the sentinels."""

    manager: Sentinel | None = None  # the sentinels asked for the primary

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.manager is not None:
                self.manager.close()


class _AsyncSentinelRedis(aredis.Redis):
    """The asyncio primary's client, which also closes its connections to the sentinels."""

    manager: AsyncSentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            if self.manager is not None:
                await self.manager.aclose()
