"""`store.wait_replicas`: read from every layer, checked, and free when it is 0.

What WAIT does against real replicas is in tests/faults/test_sentinel_failover.py.
"""

from __future__ import annotations

import fakeredis
import pytest
from mcpsec.core.api_keys import ApiKeys
from mcpsec.core.config import load_settings
from mcpsec.core.errors import ConfigError
from mcpsec.store.redis_store import RedisStore
from mcpsec.store.url import parse_store_url

from tests.support.sent_commands import record_commands


@pytest.fixture
def env(tmp_path):
    return {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}


def test_default_is_no_waiting(env):
    assert load_settings(env).store.wait_replicas == 0


def test_from_the_environment_and_from_the_file(env, tmp_path):
    env["MCPSEC_STORE_WAIT_REPLICAS"] = "2"
    assert load_settings(env).store.wait_replicas == 2
    config = tmp_path / "config.toml"
    config.write_text("[store]\nwait_replicas = 1\n")  # a TOML integer
    settings = load_settings({**env, "MCPSEC_STORE_WAIT_REPLICAS": ""}, config_path=config)
    assert settings.store.wait_replicas == 1
    assert settings.source_of("store.wait_replicas") == f"file {config}"


@pytest.mark.parametrize("value", ["-1", "one", "1.5", "1001", "²"])
def test_anything_but_a_count_is_one_config_error(env, value):
    env["MCPSEC_STORE_WAIT_REPLICAS"] = value
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert message.startswith("store.wait_replicas from env MCPSEC_STORE_WAIT_REPLICAS")
    assert "\n" not in message


def test_a_cluster_refuses_it_before_connecting():
    url = parse_store_url("redis+cluster://:hunter2@127.0.0.1:1,127.0.0.1:2")
    with pytest.raises(ConfigError, match="not supported on the Redis Cluster") as caught:
        RedisStore.from_url(url, prefix="t:", timeout=0.1, wait_replicas=1)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("count", [-1, True, 1.0])
def test_the_store_checks_the_count_too(count):
    client = fakeredis.FakeRedis(decode_responses=True)
    with pytest.raises(ConfigError, match="whole number"):
        RedisStore(client, url="fakeredis://", wait_replicas=count)


def test_zero_sends_no_wait_and_no_extra_round_trip(monkeypatch):
    """The default must cost nothing: each change is the same script calls as before."""
    store = RedisStore(fakeredis.FakeRedis(decode_responses=True), url="fakeredis://")
    keys = ApiKeys(store)
    sent = record_commands(store, monkeypatch)

    def never(*command):
        raise AssertionError(f"waited for replicas after {command[0]}")

    monkeypatch.setattr(store, "_acknowledged", never)
    created = keys.create("ci-bot", roles=["user"])
    keys.revoke(created.key_id)
    store.set_mark("tok", "jti-1", 1.0, ttl=60)
    store.delete("key", created.key_id)
    assert [args[0] for args in sent].count("EVALSHA") >= 5  # the writes went out as before
    assert not [args for args in sent if "WAIT" in args]
    assert store._direct is not None  # standalone: the held per-thread connections
