"""`store.wait_replicas`: a change counts once that many replicas have it, or fails clearly.

With fewer replicas than asked for, the change is still on the primary (WAIT cannot undo
it): the error says so, in one line, and the CLI exits 5 like any store failure.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mcpsec.core.api_keys import ApiKeys, Reason
from mcpsec.core.errors import StoreError
from mcpsec.core.key_records import OWNER_KIND
from mcpsec.store import Store

from tests.support.cli import Ran, assert_store_failure
from tests.support.redis_servers import RedisServer, SentinelTopology

pytestmark = pytest.mark.redis_server

TIMEOUT = 0.4  # WAIT gives up after half of it
Stores = Callable[..., Store]


def too_few(error: StoreError, acknowledged: int, wanted: int) -> None:
    text = str(error)
    assert f"only {acknowledged} of {wanted} replica(s) acknowledged it" in text
    assert "may not survive a failover" in text and "the change is on the primary" in text
    assert "\n" not in text


def test_each_change_waits_for_the_replica(
    redis_sentinel: SentinelTopology, stores: Stores
) -> None:
    store = stores(redis_sentinel.url, timeout=TIMEOUT, wait_replicas=1)
    keys = ApiKeys(store)
    created = keys.create("bot", owner="ops", roles=["user"])  # two records, each waited for
    keys.revoke(created.key_id)
    assert store.set_mark("revoked", "jti-1", 1.0, ttl=60) == 1.0
    assert store.delete(OWNER_KIND, f"ops:{created.key_id}")
    assert keys.verify(created.api_key).reason is Reason.REVOKED  # verify waits for nothing


def test_too_few_replicas_fail_the_change_clearly(
    redis_sentinel: SentinelTopology, stores: Stores
) -> None:
    created = ApiKeys(stores(redis_sentinel.url)).create("bot")
    keys = ApiKeys(stores(redis_sentinel.url, timeout=TIMEOUT, wait_replicas=2))
    with pytest.raises(StoreError) as caught:
        keys.revoke(created.key_id)
    too_few(caught.value, 1, 2)
    assert keys.verify(created.api_key).reason is Reason.REVOKED  # on the primary, as it says


@pytest.mark.parametrize("change", ["put", "update", "delete", "set_mark"])
def test_a_server_without_replicas_acknowledges_nothing(
    redis_server: RedisServer, stores: Stores, change: str
) -> None:
    """Standalone, where the scripts usually go over held connections: the waited-for
    change goes with its WAIT on one connection all the same."""
    stores(redis_server.url).put("thing", "a", {"n": 0})
    store = stores(redis_server.url, timeout=TIMEOUT, wait_replicas=1)
    calls: dict[str, Callable[[], object]] = {
        "put": lambda: store.put("thing", "a", {"n": 1}),
        "update": lambda: store.update("thing", "a", set={"n": 2}),
        "delete": lambda: store.delete("thing", "a"),
        "set_mark": lambda: store.set_mark("revoked", "a", 1.0, ttl=60),
    }
    with pytest.raises(StoreError) as caught:
        calls[change]()
    too_few(caught.value, 0, 1)


def test_the_cli_exits_5_with_one_line(
    redis_sentinel: SentinelTopology,
    prefix: str,
    stores: Stores,
    mcpsec_process: Callable[..., Ran],
) -> None:
    created = ApiKeys(stores(redis_sentinel.url)).create("bot")
    env = {
        "MCPSEC_STORE_PREFIX": prefix,
        "MCPSEC_STORE_TIMEOUT": "400ms",
        "MCPSEC_STORE_WAIT_REPLICAS": "2",
    }
    ran = mcpsec_process("--store", redis_sentinel.url, "keys", "revoke", created.key_id, env=env)
    assert_store_failure(ran, "only 1 of 2 replica(s) acknowledged it")

    env["MCPSEC_STORE_WAIT_REPLICAS"] = "-1"
    bad = mcpsec_process("--store", redis_sentinel.url, "keys", "list", env=env)
    assert bad.exit_code == 4, bad.stdout + bad.stderr
    assert "store.wait_replicas from env MCPSEC_STORE_WAIT_REPLICAS" in bad.stderr
