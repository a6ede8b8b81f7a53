"""Rotation, update and revocation when something else changes the key at the worst moment.

Each test forces the interleaving (by wrapping one step) instead of hoping threads hit it.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcpsec.core.api_keys import ApiKeys
from mcpsec.core.errors import InvalidInputError, StoreUnavailableError
from mcpsec.core.key_records import Status
from mcpsec.store import Store


@pytest.fixture
def keys(store: Store) -> ApiKeys:
    return ApiKeys(store)


def owned(keys: ApiKeys, owner: str) -> list[str]:
    return sorted(k.key_id for k in keys.list(owner=owner, limit=100).keys)


def test_rotation_never_copies_a_grant_removed_while_it_ran(
    keys: ApiKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = keys.create("bot", owner="team", permissions=["files:read", "files:write"])
    real_create = keys.create
    calls = {"n": 0}

    def create_then_interfere(*args: Any, **kwargs: Any) -> Any:
        created = real_create(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:  # the successor exists; now an operator takes a grant away
            keys.update(old.key_id, remove_permissions=["files:write"])
        return created

    monkeypatch.setattr(keys, "create", create_then_interfere)
    rotation = keys.rotate(old.key_id, grace=3600)
    monkeypatch.undo()
    assert calls["n"] == 2  # the first successor was thrown away and the rotation redone
    assert rotation.permissions == ("files:read",)
    assert not keys.verify(rotation.api_key, permission="files:write").valid
    assert owned(keys, "team") == sorted([old.key_id, rotation.key_id])  # no orphan left


def test_a_failed_rotation_leaves_no_successor(
    keys: ApiKeys, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = keys.create("bot", owner="team")

    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("the store went away")

    monkeypatch.setattr(store, "update", down)
    with pytest.raises(StoreUnavailableError):
        keys.rotate(old.key_id)
    monkeypatch.undo()
    assert owned(keys, "team") == [old.key_id]
    assert keys.show(old.key_id).rotated_to is None


@pytest.mark.parametrize("state", ["rotated", "revoked", "expired"])
def test_the_lifetime_of_a_finished_key_cannot_be_changed(keys: ApiKeys, state: str) -> None:
    import time

    created = keys.create("bot", ttl=0.3 if state == "expired" else 3600)
    if state == "rotated":
        keys.rotate(created.key_id, grace=60)
    elif state == "revoked":
        keys.revoke(created.key_id)
    else:
        time.sleep(0.5)
    before = keys.show(created.key_id).expires_at
    for ttl in (None, 86400.0):
        with pytest.raises(InvalidInputError, match="lifetime can no longer be changed"):
            keys.update(created.key_id, ttl=ttl)
    assert keys.show(created.key_id).expires_at == before
    assert not keys.verify(created.api_key).valid or state == "rotated"


def test_rotate_works_after_the_lifetime_was_changed(keys: ApiKeys) -> None:
    created = keys.create("bot")
    keys.update(created.key_id, ttl=30 * 86400.0)
    rotation = keys.rotate(created.key_id)
    assert rotation.rotated_from == created.key_id


def test_rotate_a_key_whose_lifetime_grew_past_100_years(keys: ApiKeys) -> None:
    created = keys.create("bot", ttl=60)
    keys.update(created.key_id, ttl=100 * 365 * 86400.0)
    assert keys.rotate(created.key_id).expires_at is not None


def test_revoke_owner_catches_a_key_that_appears_behind_the_scan(
    keys: ApiKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = keys.create("a", owner="team")
    real_revoke = keys._revoke
    late: list[str] = []

    def revoke_and_race(key_id: str, reason: str | None) -> Any:
        result = real_revoke(key_id, reason)
        if not late:  # a rotation finishing now puts its successor anywhere in the order
            late.append(keys.create("late", owner="team").key_id)
        return result

    monkeypatch.setattr(keys, "_revoke", revoke_and_race)
    result = keys.revoke_owner("team")
    monkeypatch.undo()
    assert result.revoked == 2
    assert keys.show(first.key_id).status is Status.REVOKED
    assert keys.show(late[0]).status is Status.REVOKED
