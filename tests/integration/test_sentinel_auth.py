"""Sentinels with a password of their own: the URL's credentials are the data nodes', the
sentinels' come from `sentinel_username` / `sentinel_password`, and neither is ever shown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mcpsec.core.errors import StoreUnavailableError
from mcpsec.store import open_store

from tests.support.redis_servers import (
    command,
    require_binaries,
    start_redis_server,
    start_sentinel,
)

pytestmark = pytest.mark.redis_server

DATA_PASSWORD = "data-pw-1"
SENTINEL_PASSWORD = "sentinel-pw-2"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`host:port/service` of one sentinel that wants SENTINEL_PASSWORD, watching a
    primary that wants DATA_PASSWORD (both set once started, as PING checks readiness)."""
    require_binaries("redis-server")
    folder = tmp_path_factory.mktemp("sentinel-auth")
    with (
        start_redis_server(folder / "primary") as primary,
        start_sentinel(folder / "sentinel", "guarded", primary.port) as sentinel,
    ):
        command(sentinel.port, "SENTINEL", "SET", "guarded", "auth-pass", DATA_PASSWORD)
        command(primary.port, "CONFIG", "SET", "requirepass", DATA_PASSWORD)
        command(sentinel.port, "ACL", "SETUSER", "default", "resetpass", f">{SENTINEL_PASSWORD}")
        yield f"127.0.0.1:{sentinel.port}/guarded"


def test_each_side_gets_its_own_password(guarded: str) -> None:
    url = f"redis+sentinel://:{DATA_PASSWORD}@{guarded}?sentinel_password={SENTINEL_PASSWORD}"
    store = open_store(url, prefix="auth:", timeout=0.5)
    try:
        store.put("thing", "a", {"n": 1})
        record = store.get("thing", "a")
        assert record is not None and record.fields == {"n": 1}
        assert store.info().backend == "redis-sentinel"
    finally:
        store.close()


@pytest.mark.parametrize(
    ("userinfo", "query", "said"),
    [
        (f":{DATA_PASSWORD}@", "", "a sentinel refused the credentials"),
        (f":{DATA_PASSWORD}@", "?sentinel_password=not-it", "a sentinel refused the credentials"),
        (":not-it@", f"?sentinel_password={SENTINEL_PASSWORD}", "refused the credentials"),
        ("", f"?sentinel_password={SENTINEL_PASSWORD}", "authentication"),
    ],
)
def test_a_refusal_is_one_line_that_shows_no_password(
    guarded: str, userinfo: str, query: str, said: str
) -> None:
    store = open_store(f"redis+sentinel://{userinfo}{guarded}{query}", timeout=0.5)
    try:
        with pytest.raises(StoreUnavailableError, match=said) as caught:
            store.now()
    finally:
        store.close()
    text = str(caught.value)
    assert "\n" not in text
    for secret in (DATA_PASSWORD, SENTINEL_PASSWORD, "not-it"):
        assert secret not in text
