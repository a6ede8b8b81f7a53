"""Fault injection: real server processes that the tests kill, and what mcpsec does then.

Fixtures:
    durable_redis      a redis-server of the module's own, every write fsynced to its
                       append-only file, so that tests can kill it and start it again
    running            durable_redis, started again if an earlier test left it dead
    failover_topology  a Sentinel topology of the module's own, since its tests kill the
                       primary; before each test a dead node rejoins as the replica
    mcpsec_process     mcpsec_process(*args, input=None, env=None): the real `mcpsec`
                       command as a subprocess, in an empty home, as a runbook runs it
    prefix             a fresh key prefix, so tests sharing a server never meet
    stores             stores(url, **options): open_store with the test's prefix, closed
                       after the test whatever happened
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from mcpsec.store import Store, open_store

from tests.support.cli import Cli, Ran
from tests.support.redis_servers import (
    RedisServer,
    SentinelTopology,
    require_binaries,
    start_redis_server,
    start_sentinel_topology,
)

DURABLE = ("--appendonly", "yes", "--appendfsync", "always")  # acknowledged = on disk


@pytest.fixture(scope="module")
def durable_redis(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisServer]:
    """One per module: a server its tests kill must poison no other module's tests."""
    require_binaries("redis-server")
    folder = tmp_path_factory.mktemp(f"redis-{request.module.__name__.rpartition('.')[2]}")
    with start_redis_server(folder, *DURABLE) as server:
        yield server


@pytest.fixture
def running(durable_redis: RedisServer) -> RedisServer:
    if not durable_redis.running:
        durable_redis.restart()
    return durable_redis


@pytest.fixture(scope="module")
def _module_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    require_binaries("redis-server")
    with start_sentinel_topology(tmp_path_factory.mktemp("failover")) as topology:
        yield topology


@pytest.fixture
def failover_topology(_module_topology: SentinelTopology) -> SentinelTopology:
    """The module's topology with both data nodes up: after a test killed the primary, the
    replica's promotion is awaited and the dead node brought back as the new replica."""
    topology = _module_topology
    if not topology.primary.running:
        topology.wait_for_new_primary(topology.primary.port)
    if not topology.replica.running:
        topology.rejoin(topology.replica)
    return topology


@pytest.fixture
def prefix() -> str:
    return f"t{uuid4().hex[:8]}:"


@pytest.fixture
def stores(prefix: str) -> Iterator[Callable[..., Store]]:
    opened: list[Store] = []

    def open_one(url: str, **options: Any) -> Store:
        store = open_store(url, prefix=prefix, **options)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def mcpsec_process(tmp_path: Path) -> Callable[..., Ran]:
    return Cli(tmp_path).process
