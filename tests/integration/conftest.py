"""Integration fixtures: real servers only, started once per session by tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest
import redis
from mcpsec.store import open_store
from mcpsec.store.redis_store import RedisStore
from redis.cluster import RedisCluster

from tests.support.redis_servers import RedisClusterProcs, RedisServer


@pytest.fixture(params=["redis", "cluster"])
def store(request: pytest.FixtureRequest) -> Iterator[RedisStore]:
    """A Redis store on the session's real redis-server, then on its real cluster, each test
    in its own key prefix."""
    server: RedisServer | RedisClusterProcs = request.getfixturevalue(
        "redis_server" if request.param == "redis" else "redis_cluster"
    )
    opened = open_store(server.url, prefix=f"t{uuid4().hex[:8]}:")
    assert isinstance(opened, RedisStore)
    yield opened
    opened.close()


@pytest.fixture
def nodes(store: RedisStore) -> Iterator[list[redis.Redis]]:
    """A plain connection to each primary, opened beforehand, to read the servers' own
    command counters (INFO commandstats) around a call."""
    if isinstance(store.client, RedisCluster):
        places = [(n.host, n.port) for n in store.client.get_primaries()]
    else:
        kwargs = store.client.connection_pool.connection_kwargs
        places = [(kwargs["host"], kwargs["port"])]
    clients = [redis.Redis(host=h, port=p, decode_responses=True) for h, p in places]
    for client in clients:
        client.ping()
    yield clients
    for client in clients:
        client.close()
