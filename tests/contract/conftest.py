"""The contract suite runs every test on every backend, each test in its own namespace.

Fixtures:
    store_target  a `StoreTarget` for the test's backend: `.backend`, `.url`, `.prefix`,
                  `.open()` (another Store object on the same namespace), `.reopenable`
    store         a `Store` opened from `store_target`; closed after the test
    module_store_target
                  like `store_target`, but shared by the tests of one module (for data that
                  is expensive to write, such as 10,000 records)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

import fakeredis
import pytest
from mcpsec.store import open_store
from mcpsec.store.interface import Store
from mcpsec.store.redis_store import RedisStore

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("fakeredis", id="fakeredis"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis_server),
    pytest.param("sentinel", id="sentinel", marks=pytest.mark.redis_server),
    pytest.param("cluster", id="cluster", marks=pytest.mark.cluster),
]

INFO_BACKEND = {
    "sqlite": "sqlite",
    "fakeredis": "redis",
    "redis": "redis",
    "sentinel": "redis-sentinel",
    "cluster": "redis-cluster",
}


@dataclass
class StoreTarget:
    """Where a test's stores live; every `open()` sees the same records."""

    backend: str
    url: str
    prefix: str
    factory: Callable[[], Store]
    opened: list[Store] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def reopenable(self) -> bool:
        """False for fakeredis: its data lives in one client object, not behind a URL."""
        return self.backend != "fakeredis"

    @property
    def info_backend(self) -> str:
        return INFO_BACKEND[self.backend]

    def open(self) -> Store:
        store = self.factory()
        with self.lock:
            self.opened.append(store)
        return store

    def close_all(self) -> None:
        with self.lock:
            stores, self.opened = self.opened, []
        for store in stores:
            store.close()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_target(backend: str, request: pytest.FixtureRequest, folder: Path) -> StoreTarget:
    prefix = f"t{uuid4().hex[:8]}:"
    if backend == "fakeredis":
        client = fakeredis.FakeRedis(decode_responses=True)
        url = "fakeredis://"
        return StoreTarget(backend, url, prefix, lambda: RedisStore(client, url=url, prefix=prefix))
    if backend == "sqlite":
        url = sqlite_url(folder / "store.db")
    elif backend == "redis":
        url = request.getfixturevalue("redis_server").url
    elif backend == "sentinel":  # the primary found through three sentinels
        url = request.getfixturevalue("redis_sentinel").url
    elif backend == "cluster":
        url = request.getfixturevalue("redis_cluster").url
    else:
        raise ValueError(f"unknown backend {backend!r}")
    return StoreTarget(backend, url, prefix, lambda: open_store(url, prefix=prefix))


@pytest.fixture(params=BACKENDS)
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreTarget]:
    target = make_target(request.param, request, tmp_path)
    try:
        yield target
    finally:
        target.close_all()


@pytest.fixture
def store(store_target: StoreTarget) -> Store:
    return store_target.open()


@pytest.fixture(scope="module", params=BACKENDS)
def module_store_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StoreTarget]:
    target = make_target(request.param, request, tmp_path_factory.mktemp("contract"))
    try:
        yield target
    finally:
        target.close_all()
