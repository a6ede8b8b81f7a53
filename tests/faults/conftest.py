"""Fault injection: real server processes that the tests kill, and what mcpsec does then.

Fixtures:
    failover_topology  a Sentinel topology of the module's own, since its tests kill the
                       primary; before each test a dead node rejoins as the replica
    mcpsec_process     mcpsec_process(*args, input=None, env=None): the real `mcpsec`
                       command as a subprocess, in an empty home, as a runbook runs it
    prefix             a fresh key prefix, so tests sharing a server never meet
    stores             stores(url, **options): open_store with the test's prefix, closed
                       after the test whatever happened
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from mcpsec.store import Store, open_store

from tests.support.redis_servers import (
    SentinelTopology,
    require_binaries,
    start_sentinel_topology,
)


@dataclass(frozen=True)
class Ran:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def _module_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    require_binaries("redis-server")
    topology = start_sentinel_topology(tmp_path_factory.mktemp("failover"))
    try:
        yield topology
    finally:
        topology.stop()


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
    """Run `python -m mcpsec` with every XDG folder in tmp_path and no MCPSEC_* from the host."""
    home = {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "NO_COLOR": "1",
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("MCPSEC_")} | home

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Ran:
        done = subprocess.run(  # noqa: PLW1510 - the exit code is the result
            [sys.executable, "-m", "mcpsec", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            env=base | (env or {}),
        )
        return Ran(done.returncode, done.stdout, done.stderr)

    return run
