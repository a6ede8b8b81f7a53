"""Integration fixtures: real servers only, started once per session by tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest
from mcpsec.store import open_store
from mcpsec.store.redis_store import RedisStore

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
