"""How the Sentinel clients are built: which credentials and options go where (no server).

Failover itself, against real sentinels, is in tests/faults/test_sentinel_failover.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mcpsec.store.redis_sentinel import async_sentinel_client, sentinel_client
from mcpsec.store.redis_store import RedisStore
from mcpsec.store.url import parse_store_url
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import SentinelManagedSSLConnection

URL = "redis+sentinel://app:datapw@127.0.0.1:1,127.0.0.1:2/main?db=4"
COMMON: dict[str, Any] = {
    "socket_connect_timeout": 0.3,
    "socket_timeout": 0.3,
    "retry": Retry(NoBackoff(), 0),
    "decode_responses": True,
}


def sentinel_kwargs(client: Any) -> list[dict[str, Any]]:
    return [s.connection_pool.connection_kwargs for s in client.manager.sentinels]


def test_the_urls_credentials_go_to_the_data_nodes_only():
    client = sentinel_client(parse_store_url(URL), COMMON)
    try:
        primary = client.connection_pool.connection_kwargs
        assert (primary["username"], primary["password"], primary["db"]) == ("app", "datapw", 4)
        pool: Any = client.connection_pool  # a SentinelConnectionPool
        assert pool.service_name == "main"
        for kwargs in sentinel_kwargs(client):
            assert kwargs.get("password") is None and kwargs.get("username") is None
    finally:
        client.close()


def test_sentinels_get_their_own_credentials_timeouts_and_no_retries():
    url = parse_store_url(URL + "&sentinel_username=watch&sentinel_password=sentpw")
    client = sentinel_client(url, COMMON)
    try:
        sentinels = sentinel_kwargs(client)
        assert [(k["host"], k["port"]) for k in sentinels] == [("127.0.0.1", 1), ("127.0.0.1", 2)]
        for kwargs in sentinels:
            assert (kwargs["username"], kwargs["password"]) == ("watch", "sentpw")
            assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.3
            assert kwargs["retry"].get_retries() == 0
        assert client.connection_pool.connection_kwargs["password"] == "datapw"
    finally:
        client.close()


def test_tls_reaches_the_sentinels_and_the_primary_with_the_same_options():
    url = parse_store_url(URL.replace("redis+", "rediss+"))
    tls = {"ssl_ca_certs": "/etc/ca.pem", "ssl_check_hostname": True}
    client = sentinel_client(url, {**COMMON, **tls})
    try:
        assert client.connection_pool.connection_class is SentinelManagedSSLConnection
        assert client.connection_pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem"
        for kwargs in sentinel_kwargs(client):
            assert kwargs["ssl_ca_certs"] == "/etc/ca.pem"
            assert kwargs["ssl_check_hostname"] is True
    finally:
        client.close()


def test_the_asyncio_client_is_built_alike():
    url = parse_store_url(URL + "&sentinel_password=sentpw")

    async def build() -> None:
        client = async_sentinel_client(url, {**COMMON, "retry": AsyncRetry(NoBackoff(), 0)})
        try:
            primary = client.connection_pool.connection_kwargs
            assert (primary["username"], primary["password"], primary["db"]) == (
                "app",
                "datapw",
                4,
            )
            for kwargs in sentinel_kwargs(client):
                assert kwargs["password"] == "sentpw"
                assert kwargs["retry"].get_retries() == 0
        finally:
            await client.aclose()

    asyncio.run(build())


def test_a_sentinel_store_sends_every_call_through_the_pool():
    """The held per-thread connections bypass the pool's connect, and with it the question
    to the sentinels: they would go to localhost:6379, or stay with a dead primary."""
    store = RedisStore.from_url(parse_store_url(URL), prefix="t:", timeout=0.3)
    try:
        assert store.backend == "redis-sentinel"
        assert store._direct is None
    finally:
        store.close()


@pytest.mark.parametrize("wait", [0, 1])
def test_a_sentinel_store_takes_wait_replicas(wait):
    store = RedisStore.from_url(parse_store_url(URL), prefix="t:", timeout=0.3, wait_replicas=wait)
    try:
        assert store.wait_replicas == wait
    finally:
        store.close()
