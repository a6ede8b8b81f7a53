"""Session-wide fixtures: real Redis processes, started once and only when a test asks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis_servers import (
    RedisClusterProcs,
    RedisServer,
    SentinelTopology,
    require_binaries,
    start_redis_cluster,
    start_redis_server,
    start_sentinel_topology,
)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One standalone `redis-server` on a free port for the whole session (no persistence)."""
    require_binaries("redis-server", "redis-cli")
    with start_redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcs]:
    """One local Redis Cluster (3 masters, no replicas) for the whole session."""
    require_binaries("redis-server", "redis-cli")
    with start_redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    """A primary, its replica and three sentinels for the whole session. Tests that kill a
    node use a topology of their own (tests/faults), so this one keeps its roles."""
    require_binaries("redis-server")
    with start_sentinel_topology(tmp_path_factory.mktemp("redis-sentinel")) as topology:
        yield topology
