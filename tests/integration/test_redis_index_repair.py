"""Redis keeps a record and its index entry in different slots: a write that fails between
the two steps must not leave a live record that `list` can never show."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from mcpsec.core.errors import StoreUnavailableError
from mcpsec.store.redis_store import RedisStore

pytestmark = pytest.mark.redis_server


def fail_once(store: RedisStore, script: str) -> None:
    """The next call of `script` fails with a timeout before it runs: the step after the
    record's write is lost."""
    real = store._run
    calls = {"n": 0}

    def flaky(name: str, *args: Any) -> Any:
        if name == script:
            calls["n"] += 1
            if calls["n"] == 1:
                raise redis.TimeoutError("Timeout reading from socket")
        return real(name, *args)

    setattr(store, "_run", flaky)  # noqa: B010 - replace one bound method on this instance


def test_retried_put_if_absent_indexes_the_record_the_lost_try_wrote(store: RedisStore) -> None:
    fail_once(store, "index_add")
    with pytest.raises(StoreUnavailableError):
        store.put("key", "k1", {"name": "ci"}, only_if_absent=True)
    assert store.get("key", "k1") is not None  # the record landed; its indexing did not

    assert store.put("key", "k1", {"name": "ci"}, only_if_absent=True) is False
    assert [r.id for r in store.list("key").records] == ["k1"]


def test_retried_put_indexes_the_record(store: RedisStore) -> None:
    fail_once(store, "index_add")
    with pytest.raises(StoreUnavailableError):
        store.put("key", "k2", {"name": "ci"})
    assert store.put("key", "k2", {"name": "ci"}) is True
    assert [r.id for r in store.list("key").records] == ["k2"]


def test_delete_whose_index_step_failed_is_tidied_by_the_next_listing(store: RedisStore) -> None:
    store.put("key", "k3", {})
    fail_once(store, "index_forget")
    with pytest.raises(StoreUnavailableError):
        store.delete("key", "k3")
    assert store.get("key", "k3") is None
    assert store.list("key").records == ()
    versions = store.client.hgetall(store._index_keys("key")[2])
    assert versions == {}  # the dangling entry was forgotten, not just skipped
