"""`mcpsec doctor` against real servers set up the ways production goes wrong: eviction on,
persistence off, a replica given as the store; and a healthy cluster, clock included."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Ran, run_cli
from tests.support.redis_servers import (
    RedisClusterProcs,
    RedisServer,
    command,
    require_binaries,
    start_redis_server,
)

pytestmark = pytest.mark.redis_server


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require_binaries("redis-server", "redis-cli")
    with start_redis_server(tmp_path_factory.mktemp("primary")) as server:
        yield server


@pytest.fixture(scope="module")
def replica(
    tmp_path_factory: pytest.TempPathFactory, primary: RedisServer
) -> Iterator[RedisServer]:
    folder = tmp_path_factory.mktemp("replica")
    with start_redis_server(folder, "--replicaof", "127.0.0.1", str(primary.port)) as server:
        yield server


def doctor(home: Path, url: str) -> tuple[Ran, dict[str, Any]]:
    ran = run_cli(home, "--store", url, "doctor", "--json")
    assert "Traceback" not in ran.output
    return ran, {c["name"]: c for c in json.loads(ran.stdout)["checks"]}


def configure(server: RedisServer, **settings: str) -> None:
    for name, value in settings.items():
        command(server.port, "CONFIG", "SET", name.replace("_", "-"), value)


def test_eviction_and_persistence_off_warn(tmp_path, primary):
    configure(primary, maxmemory_policy="allkeys-lru", appendonly="no", save="")
    ran, checks = doctor(tmp_path, primary.url)
    assert ran.exit_code == 0, ran.output  # warnings, not failures
    assert checks["eviction"]["status"] == "warn"
    assert "allkeys-lru" in checks["eviction"]["detail"]
    assert checks["persistence"]["status"] == "warn"
    assert "lost when Redis restarts" in checks["persistence"]["detail"]
    assert checks["clock"]["status"] == "ok" and "of the store" in checks["clock"]["detail"]


@pytest.mark.parametrize(
    ("appendonly", "save", "words"),
    [("yes", "", "AOF is on"), ("no", "3600 1", "RDB snapshots (save 3600 1)")],
)
def test_persistence_on_is_ok(tmp_path, primary, appendonly, save, words):
    configure(primary, maxmemory_policy="noeviction", appendonly=appendonly, save=save)
    try:
        ran, checks = doctor(tmp_path, primary.url)
    finally:
        configure(primary, appendonly="no", save="")
    assert ran.exit_code == 0, ran.output
    assert checks["persistence"]["status"] == "ok"
    assert words in checks["persistence"]["detail"]
    assert "eviction" not in checks


def test_a_read_only_replica_fails_naming_the_primary(tmp_path, replica):
    configure(replica, replica_read_only="yes")
    ran, checks = doctor(tmp_path, replica.url)
    assert ran.exit_code == 5
    detail = checks["replica"]["detail"]
    assert checks["replica"]["status"] == "fail"
    assert "read-only replica" in detail and "writes" in detail and "primary" in detail
    assert "persistence" not in checks  # a replica's persistence is not the question


def test_a_writable_replica_fails_too(tmp_path, replica):
    configure(replica, replica_read_only="no")
    try:
        ran, checks = doctor(tmp_path, replica.url)
    finally:
        configure(replica, replica_read_only="yes")
    assert ran.exit_code == 5
    assert "lost at its next sync" in checks["replica"]["detail"]


@pytest.mark.cluster
def test_a_healthy_cluster(tmp_path, redis_cluster: RedisClusterProcs):
    ran, checks = doctor(tmp_path, redis_cluster.url)
    assert ran.exit_code == 0, ran.output
    assert checks["store"]["detail"].startswith("redis-cluster ")
    assert checks["cluster"] == {
        "name": "cluster",
        "status": "ok",
        "detail": "cluster_state ok",
        "area": "store",
    }
    assert checks["acl"]["status"] == "ok"
    assert checks["clock"]["status"] == "ok" and "of the store" in checks["clock"]["detail"]


@pytest.mark.parametrize(("wait", "status"), [("1", "ok"), ("2", "fail")])
def test_wait_replicas_is_checked_against_the_connected_replicas(
    tmp_path, primary, replica, wait, status
):
    deadline = time.monotonic() + 10
    while "connected_slaves:1" not in command(primary.port, "INFO", "replication"):
        assert time.monotonic() < deadline, "the replica never connected"
        time.sleep(0.05)
    env = {"MCPSEC_STORE_WAIT_REPLICAS": wait}
    ran = run_cli(tmp_path, "--store", primary.url, "doctor", "--json", env=env)
    checks = {c["name"]: c for c in json.loads(ran.stdout)["checks"]}
    assert checks["replicas"]["status"] == status, checks["replicas"]
    assert ran.exit_code == (0 if status == "ok" else 5), ran.output
