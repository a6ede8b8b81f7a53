"""On Redis a verify is one round trip (one EVALSHA) that touches one key, hence one slot."""

from __future__ import annotations

import pytest
from mcpsec.core.api_keys import ApiKeys
from mcpsec.store.redis_store import RedisStore

from tests.support.sent_commands import record_commands

pytestmark = pytest.mark.redis_server


@pytest.mark.parametrize("outcome", ["valid", "revoked", "wrong-secret"])
def test_verify_is_one_command(store: RedisStore, monkeypatch: pytest.MonkeyPatch, outcome: str):
    keys = ApiKeys(store)
    created = keys.create("bot", owner="team", roles=["user"])
    presented = created.api_key
    if outcome == "revoked":
        keys.revoke(created.key_id)
    if outcome == "wrong-secret":
        from mcpsec.core.key_format import KeyParts, format_key, parse_key, random_base62

        parts = parse_key(created.api_key)
        presented = format_key(KeyParts(parts.prefix, parts.key_id, random_base62(43)))
    keys.verify(presented)  # the script is loaded on this client once

    sent = record_commands(store, monkeypatch)
    verdict = keys.verify(presented, permission="files:read")
    assert [a[0] for a in sent] == ["EVALSHA"]
    numkeys = int(sent[0][2])
    assert numkeys == 1 and sent[0][3].endswith("key:{" + created.key_id + "}")
    assert verdict.valid == (outcome == "valid")


def test_verify_survives_a_script_flush(store: RedisStore):
    """After SCRIPT FLUSH (or a failover to a fresh node) the script is loaded again and the
    verify still counts exactly one use."""
    keys = ApiKeys(store)
    created = keys.create("bot")
    assert keys.verify(created.api_key).valid
    store.client.script_flush()
    assert keys.verify(created.api_key).valid
    assert keys.show(created.key_id).use_count == 2
