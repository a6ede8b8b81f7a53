"""API keys over every backend: the rules of `mcpsec.core.api_keys` on SQLite, fakeredis, a real
redis-server and a real Redis Cluster.

Each test gets its own namespace (an SQLite file, a fakeredis client, or a Redis key prefix),
so listings see only the keys the test created. Tests that need a second Store object on the
same namespace (another process, in effect) skip on fakeredis, whose data lives in one client.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
import redis
from mcpsec.cli.output import jsonable
from mcpsec.core.api_keys import (
    ApiKeys,
    AsyncApiKeys,
    CreatedKey,
    KeyPage,
    Reason,
    Verdict,
)
from mcpsec.core.errors import InvalidInputError, NotFoundError
from mcpsec.core.key_filters import KeyFilter, StatusChoice
from mcpsec.core.key_format import (
    SECRET_LENGTH,
    KeyParts,
    format_key,
    new_key,
    parse_key,
    random_base62,
    secret_hash,
)
from mcpsec.core.key_records import OWNER_KIND, ApiKey, RateLimit, Status
from mcpsec.store import KEY_KIND, Page, Record, Store
from mcpsec.store.url import parse_store_url

if TYPE_CHECKING:
    from .conftest import StoreTarget

CREATED_FIELDS = {
    "key_id",
    "api_key",
    "name",
    "owner",
    "roles",
    "permissions",
    "created_at",
    "expires_at",
}
EPSILON = 0.01  # seconds: epoch floats travel through datetimes and JSON


@pytest.fixture
def keys(store: Store) -> ApiKeys:
    return ApiKeys(store)


def secret_of(created: CreatedKey) -> str:
    return parse_key(created.api_key).secret


def wrong_secret_for(created: CreatedKey) -> str:
    """The same key id and a checksum that matches, but another secret: a forged key."""
    parts = parse_key(created.api_key)
    other = random_base62(SECRET_LENGTH)
    assert other != parts.secret
    return format_key(KeyParts(parts.prefix, parts.key_id, other))


def epoch(moment: Any) -> float:
    assert moment is not None
    return float(moment.timestamp())


# --- a store proxy that counts (or forbids) calls -----------------------------------------------


class StoreProxy:
    """Delegates to a real store; counts what is read, and can forbid any operation."""

    def __init__(self, inner: Store, *, forbid: Sequence[str] = ()) -> None:
        self.inner = inner
        self.forbid = set(forbid)
        self.calls: dict[str, int] = {}
        self.records_read = 0

    def _call(self, name: str) -> None:
        if name in self.forbid:
            raise AssertionError(f"the store was touched: {name}")
        self.calls[name] = self.calls.get(name, 0) + 1

    def get(self, kind: str, id: str) -> Record | None:
        self._call("get")
        self.records_read += 1
        return self.inner.get(kind, id)

    def get_many(self, kind: str, ids: Sequence[str]) -> list[Record | None]:
        self._call("get_many")
        self.records_read += len(ids)
        return self.inner.get_many(kind, ids)

    def list(self, kind: str, *, cursor: str | None = None, limit: int = 100) -> Page:
        self._call("list")
        page = self.inner.list(kind, cursor=cursor, limit=limit)
        self.records_read += len(page.records)
        return page

    def touch_key(self, key_id: str, secret_hash: str) -> Any:
        self._call("touch_key")
        self.records_read += 1
        return self.inner.touch_key(key_id, secret_hash)

    def __getattr__(self, name: str) -> Any:
        self._call(name)
        return getattr(self.inner, name)

    def as_store(self) -> Store:
        return cast(Store, self)


# --- create and show ---------------------------------------------------------------------------


def test_create_returns_the_documented_fields(keys: ApiKeys) -> None:
    created = keys.create("ci-bot", owner="platform", roles=["user"], permissions=["metrics:view"])
    assert {f.name for f in dataclasses.fields(created)} == CREATED_FIELDS
    assert set(jsonable(created)) == CREATED_FIELDS
    parts = parse_key(created.api_key)
    assert parts.prefix == "mcp"
    assert parts.key_id == created.key_id
    assert created.name == "ci-bot"
    assert created.owner == "platform"
    assert created.roles == ("user",)
    assert created.permissions == ("metrics:view",)
    assert created.expires_at is not None
    assert epoch(created.expires_at) - epoch(created.created_at) == pytest.approx(90 * 86400)
    assert created.created_at.tzinfo is not None
    assert abs(epoch(created.created_at) - keys.store.now()) < 60
    assert created.api_key not in repr(created)


def test_create_with_no_ttl_never_expires_and_keeps_its_limits(keys: ApiKeys) -> None:
    created = keys.create("forever", ttl=None, rate_limit=RateLimit(100, 60.0))
    assert created.expires_at is None
    shown = keys.show(created.key_id)
    assert shown.expires_at is None
    assert shown.rate_limit == RateLimit(100, 60.0)
    assert shown.status is Status.ACTIVE


def test_another_prefix_is_used_for_new_keys(store: Store) -> None:
    created = ApiKeys(store, prefix="acme").create("x")
    assert created.api_key.startswith("acme_")
    assert ApiKeys(store, prefix="acme").verify(created.api_key).valid


def test_show_never_exposes_the_secret_or_its_hash(keys: ApiKeys) -> None:
    created = keys.create("ci-bot", owner="platform", roles=["user"])
    keys.verify(created.api_key)
    secret = secret_of(created)
    digest = secret_hash(secret)
    shown = keys.show(created.key_id)
    assert shown.key_id == created.key_id
    assert shown.name == "ci-bot"
    assert shown.owner == "platform"
    assert shown.status is Status.ACTIVE
    assert shown.use_count == 1
    for text in (
        repr(dataclasses.asdict(shown)),
        json.dumps(jsonable(shown)),
        repr(shown),
        str(shown),
    ):
        assert secret not in text
        assert digest not in text
        assert created.api_key not in text


def test_show_of_unknown_and_malformed_ids(keys: ApiKeys) -> None:
    with pytest.raises(NotFoundError):
        keys.show(new_key()[1].key_id)
    for bad in ("", "short", "x" * 13, "abc{def}ghij", "abcdefghijk!"):
        with pytest.raises(InvalidInputError):
            keys.show(bad)


# --- verify ------------------------------------------------------------------------------------


def test_verify_counts_exactly_one_use(keys: ApiKeys) -> None:
    created = keys.create("ci-bot", owner="platform", roles=["user"], permissions=["x:y"])
    before = keys.show(created.key_id)
    assert before.use_count == 0
    assert before.last_used_at is None

    verdict = keys.verify(created.api_key)
    granted = ("files:read", "weather:read", "x:y")  # the role's and the key's own, sorted
    assert verdict == Verdict(True, None, created.key_id, "platform", ("user",), granted)

    after = keys.show(created.key_id)
    assert after.use_count == 1
    assert after.last_used_at is not None
    assert epoch(after.last_used_at) >= epoch(after.created_at) - EPSILON

    keys.verify(created.api_key)
    assert keys.show(created.key_id).use_count == 2


def test_a_wrong_secret_is_unknown_counts_nothing_and_leaks_nothing(keys: ApiKeys) -> None:
    created = keys.create("ci-bot", owner="platform", roles=["admin"], permissions=["x:y"])
    forged = wrong_secret_for(created)
    verdict = keys.verify(forged)
    assert verdict.valid is False
    assert verdict.reason is Reason.UNKNOWN
    assert verdict.owner is None
    assert verdict.roles == ()
    assert verdict.permissions == ()
    shown = keys.show(created.key_id)
    assert shown.use_count == 0
    assert shown.last_used_at is None
    # Also with a permission asked for, and on a revoked key: still nothing learned.
    assert keys.verify(forged, permission="files:read").reason is Reason.UNKNOWN
    keys.revoke(created.key_id)
    revoked_forgery = keys.verify(forged)
    assert revoked_forgery.reason is Reason.UNKNOWN
    assert (revoked_forgery.owner, revoked_forgery.roles) == (None, ())


def test_an_unknown_key_id_is_unknown(keys: ApiKeys) -> None:
    keys.create("someone else")
    api_key, parts = new_key()
    verdict = keys.verify(api_key)
    assert (verdict.valid, verdict.reason) == (False, Reason.UNKNOWN)
    assert verdict.owner is None
    with pytest.raises(NotFoundError):
        keys.show(parts.key_id)


def malformed_variants(api_key: str) -> list[str]:
    flipped = api_key[:-1] + ("A" if api_key[-1] != "A" else "B")
    return [
        "",
        "garbage",
        flipped,  # a bad checksum
        api_key + "\n",
        " " + api_key,
        api_key[:-1],
        api_key + "0",
        api_key.upper(),
        api_key.replace("_", "-"),
    ]


def test_malformed_keys_never_reach_the_store(keys: ApiKeys) -> None:
    created = keys.create("ci-bot")
    untouchable = StoreProxy(
        keys.store, forbid=["touch_key", "get", "get_many", "list", "put", "update", "delete"]
    )
    guarded = ApiKeys(untouchable.as_store())
    for bad in malformed_variants(created.api_key):
        verdict = guarded.verify(bad)
        assert verdict == Verdict(False, Reason.MALFORMED, None), repr(bad)
        assert guarded.verify(bad, permission="files:read").reason is Reason.MALFORMED
    assert untouchable.calls == {}
    assert keys.show(created.key_id).use_count == 0


def test_revocation_holds_on_the_next_verify_through_another_store(
    store_target: StoreTarget, keys: ApiKeys
) -> None:
    if not store_target.reopenable:
        pytest.skip("fakeredis data lives in one client object: nothing to reopen")
    other = ApiKeys(store_target.open())
    created = keys.create("ci-bot", owner="platform")
    assert other.verify(created.api_key).valid  # the other store is warm: any cache is filled
    revoked = keys.revoke(created.key_id, reason="leaked")
    assert revoked.status is Status.REVOKED
    verdict = other.verify(created.api_key)
    assert (verdict.valid, verdict.reason) == (False, Reason.REVOKED)
    assert other.show(created.key_id).status is Status.REVOKED
    assert other.show(created.key_id).use_count == 1  # a refused verify is not a use


def test_an_expired_key_is_refused(keys: ApiKeys) -> None:
    created = keys.create("short-lived", ttl=1.0)
    assert keys.verify(created.api_key).valid
    time.sleep(1.3)
    verdict = keys.verify(created.api_key)
    assert (verdict.valid, verdict.reason) == (False, Reason.EXPIRED)
    shown = keys.show(created.key_id)
    assert shown.status is Status.EXPIRED
    assert shown.use_count == 1


def test_permissions_through_roles(keys: ApiKeys) -> None:
    user = keys.create("user-bot", roles=["user"])
    assert keys.verify(user.api_key, permission="files:read").valid
    denied = keys.verify(user.api_key, permission="files:write")
    assert (denied.valid, denied.reason) == (False, Reason.INSUFFICIENT_PERMISSION)
    assert denied.key_id == user.key_id
    assert denied.roles == ("user",)


def test_permissions_granted_directly_and_by_wildcard(keys: ApiKeys) -> None:
    direct = keys.create("metrics", permissions=["metrics:view"])
    assert keys.verify(direct.api_key, permission="metrics:view").valid
    assert keys.verify(direct.api_key, permission="files:read").reason is (
        Reason.INSUFFICIENT_PERMISSION
    )
    files = keys.create("files", permissions=["files:*"])
    assert keys.verify(files.api_key, permission="files:delete").valid
    assert keys.verify(files.api_key, permission="weather:read").reason is (
        Reason.INSUFFICIENT_PERMISSION
    )
    admin = keys.create("root", roles=["admin"])
    for needed in ("admin:users", "files:delete", "anything:at-all"):
        assert keys.verify(admin.api_key, permission=needed).valid, needed
    nothing = keys.create("bare")
    assert keys.verify(nothing.api_key).valid  # no permission asked: authentication only
    assert keys.verify(nothing.api_key, permission="weather:read").reason is (
        Reason.INSUFFICIENT_PERMISSION
    )


@pytest.mark.parametrize("bad", ["files", "Files:read", "files:", ":read", "files read", "a:b:c"])
def test_a_bad_permission_to_check_is_refused(keys: ApiKeys, bad: str) -> None:
    created = keys.create("ci-bot", roles=["admin"])
    with pytest.raises(InvalidInputError):
        keys.verify(created.api_key, permission=bad)
    assert keys.show(created.key_id).use_count == 0


def test_the_async_entry_points_run_the_same_rules(keys: ApiKeys) -> None:
    async def scenario() -> tuple[Verdict, Verdict, ApiKey]:
        akeys = AsyncApiKeys(keys)
        try:
            created = await akeys.create("async-bot", roles=["user"])
            ok = await akeys.verify(created.api_key, permission="files:read")
            await akeys.revoke(created.key_id)
            refused = await akeys.verify(created.api_key)
            return ok, refused, await akeys.show(created.key_id)
        finally:
            await akeys.aclose()

    ok, refused, shown = asyncio.run(scenario())
    assert ok.valid
    assert refused.reason is Reason.REVOKED
    assert shown.use_count == 1


# --- rotate ------------------------------------------------------------------------------------


def test_rotate_with_grace_keeps_both_keys_working_and_linked(keys: ApiKeys) -> None:
    old = keys.create(
        "ci-bot",
        owner="platform",
        roles=["user"],
        permissions=["metrics:view"],
        ttl=7 * 86400,
        rate_limit=RateLimit(100, 60.0),
    )
    grace = 600.0
    rotation = keys.rotate(old.key_id, grace=grace)
    now = epoch(rotation.created_at)

    assert rotation.rotated_from == old.key_id
    assert rotation.key_id != old.key_id
    assert rotation.old_key_status is Status.ACTIVE
    assert keys.verify(old.api_key).valid
    assert keys.verify(rotation.api_key).valid

    before = keys.show(old.key_id)
    after = keys.show(rotation.key_id)
    assert before.rotated_to == rotation.key_id
    assert after.rotated_from == old.key_id
    assert before.rotated_from is None
    assert after.rotated_to is None
    limit = min(epoch(old.expires_at), now + grace)
    assert epoch(before.expires_at) <= limit + EPSILON
    assert epoch(before.expires_at) >= now + grace - 60  # the grace is not cut short
    assert epoch(rotation.old_key_expires_at) == pytest.approx(epoch(before.expires_at), abs=1e-3)
    for field in ("name", "owner", "roles", "permissions", "rate_limit"):
        assert getattr(after, field) == getattr(before, field), field
    assert after.rate_limit == RateLimit(100, 60.0)
    assert after.expires_at is not None
    lifetime = epoch(after.expires_at) - epoch(after.created_at)
    assert lifetime == pytest.approx(7 * 86400, abs=1)
    assert after.use_count == 1
    assert rotation.api_key != old.api_key


def test_a_rotated_key_cannot_be_rotated_again(keys: ApiKeys) -> None:
    old = keys.create("ci-bot")
    rotation = keys.rotate(old.key_id, grace=600)
    with pytest.raises(InvalidInputError):
        keys.rotate(old.key_id, grace=600)
    with pytest.raises(InvalidInputError):
        keys.rotate(old.key_id, grace=None)
    assert keys.show(old.key_id).rotated_to == rotation.key_id  # still the first successor
    assert keys.rotate(rotation.key_id, grace=600).rotated_from == rotation.key_id


def test_rotate_now_stops_the_old_key_at_once(keys: ApiKeys) -> None:
    old = keys.create("ci-bot", owner="platform", roles=["user"])
    rotation = keys.rotate(old.key_id, grace=None)
    assert rotation.old_key_status is Status.REVOKED
    verdict = keys.verify(old.api_key)
    assert (verdict.valid, verdict.reason) == (False, Reason.REVOKED)
    assert keys.verify(rotation.api_key, permission="files:read").valid
    assert keys.show(old.key_id).status is Status.REVOKED
    assert keys.show(old.key_id).rotated_to == rotation.key_id


def test_grace_never_extends_past_the_old_keys_own_expiry(keys: ApiKeys) -> None:
    old = keys.create("short", ttl=60)
    rotation = keys.rotate(old.key_id, grace=3600)
    expires = epoch(keys.show(old.key_id).expires_at)
    assert expires == pytest.approx(epoch(old.created_at) + 60, abs=EPSILON)
    assert epoch(rotation.old_key_expires_at) == pytest.approx(expires, abs=EPSILON)
    # The successor has the same lifetime as the old key had: 60 seconds from its creation.
    assert epoch(rotation.expires_at) - epoch(rotation.created_at) == pytest.approx(60, abs=1e-3)


def test_the_old_key_stops_when_the_grace_ends(keys: ApiKeys) -> None:
    old = keys.create("ci-bot")
    rotation = keys.rotate(old.key_id, grace=0.3)
    time.sleep(0.5)
    assert keys.verify(old.api_key).reason is Reason.EXPIRED
    assert keys.verify(rotation.api_key).valid


def test_a_bad_grace_is_refused_and_leaves_no_successor(keys: ApiKeys) -> None:
    old = keys.create("ci-bot", ttl=None)
    for bad in (math.nan, math.inf, -10.0):
        with pytest.raises(InvalidInputError):
            keys.rotate(old.key_id, grace=bad)
        shown = keys.show(old.key_id)
        assert (shown.status, shown.expires_at, shown.rotated_to) == (Status.ACTIVE, None, None)
        successors = [k.key_id for k in keys.list().keys if k.key_id != old.key_id]
        assert successors == [], f"grace={bad} left an orphan successor"
    assert keys.verify(old.api_key).valid


def test_revoked_and_unknown_keys_cannot_be_rotated(keys: ApiKeys) -> None:
    old = keys.create("ci-bot")
    keys.revoke(old.key_id)
    with pytest.raises(InvalidInputError):
        keys.rotate(old.key_id)
    with pytest.raises(NotFoundError):
        keys.rotate(new_key()[1].key_id)
    assert len(keys.list().keys) == 1  # no successor was left behind


# --- revoke ------------------------------------------------------------------------------------


def test_revoke_is_idempotent(keys: ApiKeys) -> None:
    created = keys.create("ci-bot")
    first = keys.revoke(created.key_id, reason="leaked")
    assert first.status is Status.REVOKED
    assert first.revoked_at is not None
    assert first.revoked_reason == "leaked"
    second = keys.revoke(created.key_id, reason="again")
    assert second.status is Status.REVOKED
    assert second.revoked_at == first.revoked_at
    assert second.revoked_reason == "leaked"
    assert keys.show(created.key_id).revoked_at == first.revoked_at


def test_revoke_of_unknown_and_malformed_ids(keys: ApiKeys) -> None:
    with pytest.raises(NotFoundError):
        keys.revoke(new_key()[1].key_id)
    for bad in ("", "nope", "a{b}cdefghij", "x" * 40):
        with pytest.raises(InvalidInputError):
            keys.revoke(bad)
    assert keys.list().keys == ()


def test_revoke_owner_counts_exactly_the_active_ones(keys: ApiKeys) -> None:
    mine = [keys.create(f"k{i}", owner="al") for i in range(4)]
    keys.revoke(mine[0].key_id)
    theirs = [keys.create(f"t{i}", owner=owner) for i, owner in enumerate(["al-b", "alb", "a"])]
    unowned = keys.create("nobody's")

    result = keys.revoke_owner("al", reason="offboarded")
    assert result.owner == "al"
    assert result.revoked == 3
    for created in mine:
        assert keys.verify(created.api_key).reason is Reason.REVOKED
    assert keys.show(mine[1].key_id).revoked_reason == "offboarded"
    for created in [*theirs, unowned]:
        assert keys.verify(created.api_key).valid
    assert keys.revoke_owner("al").revoked == 0
    assert keys.revoke_owner("nobody").revoked == 0
    with pytest.raises(InvalidInputError):
        keys.revoke_owner("a b")


def test_a_key_id_collision_never_ties_a_key_to_another_owner(
    keys: ApiKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`create` retries with a new id when the random one is taken; the taken key must not
    end up listed (or revoked) as a key of the new owner."""
    theirs = keys.create("alice-bot", owner="alice")
    taken = parse_key(theirs.api_key).key_id
    calls = {"n": 0}

    def colliding_first(prefix: str = "mcp") -> tuple[str, KeyParts]:
        calls["n"] += 1
        if calls["n"] == 1:
            parts = KeyParts(prefix, taken, random_base62(SECRET_LENGTH))
            return format_key(parts), parts
        return new_key(prefix)

    monkeypatch.setattr("mcpsec.core.api_keys.new_key", colliding_first)
    mine = keys.create("mallory-bot", owner="mallory")
    monkeypatch.undo()
    assert calls["n"] == 2
    assert mine.key_id != taken
    assert listed(keys, owner="mallory") == [mine.key_id]
    assert listed(keys, owner="alice") == [taken]
    assert keys.revoke_owner("mallory").revoked == 1
    assert keys.verify(theirs.api_key).valid


def test_revoke_owner_does_not_count_expired_keys(keys: ApiKeys) -> None:
    keys.create("live", owner="ops")
    expired = keys.create("gone", owner="ops", ttl=0.3)
    time.sleep(0.5)
    assert keys.show(expired.key_id).status is Status.EXPIRED
    assert keys.revoke_owner("ops").revoked == 1


# --- list --------------------------------------------------------------------------------------


def all_pages(
    keys: ApiKeys, *, limit: int, owner: str | None = None, where: KeyFilter | None = None
) -> Iterator[KeyPage]:
    cursor: str | None = None
    for _ in range(1000):
        page = keys.list(owner=owner, where=where, limit=limit, cursor=cursor)
        assert len(page.keys) <= limit
        yield page
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
    pytest.fail("paging did not end")


def listed(
    keys: ApiKeys, *, limit: int = 50, owner: str | None = None, where: KeyFilter | None = None
) -> list[str]:
    pages = all_pages(keys, limit=limit, owner=owner, where=where)
    return [key.key_id for page in pages for key in page.keys]


def test_paging_covers_every_key_exactly_once(keys: ApiKeys) -> None:
    created = {keys.create(f"k{i}", owner=f"o{i % 3}").key_id for i in range(30)}
    ids = listed(keys, limit=7)
    assert len(ids) == 30
    assert set(ids) == created
    sizes = [len(page.keys) for page in all_pages(keys, limit=7)]
    assert sizes[:4] == [7, 7, 7, 7]
    assert sum(sizes) == 30


def test_the_owner_filter_is_exact_among_owners_sharing_a_prefix(keys: ApiKeys) -> None:
    owners = {"al": 5, "al-b": 4, "alb": 3, "a": 2, "al.": 2, "alA": 1}
    made: dict[str, set[str]] = {}
    for owner, count in owners.items():
        made[owner] = {keys.create(f"{owner}-{i}", owner=owner).key_id for i in range(count)}
    keys.create("unowned")
    for owner in owners:
        for limit in (1, 2, 50):
            ids = listed(keys, owner=owner, limit=limit)
            assert len(ids) == len(set(ids)), (owner, limit)
            assert set(ids) == made[owner], (owner, limit)
        assert all(k.owner == owner for k in keys.list(owner=owner).keys)
    assert listed(keys, owner="al-") == []
    assert listed(keys, owner="nobody") == []


def test_status_and_time_filters(keys: ApiKeys) -> None:
    expired = keys.create("expired", ttl=0.3).key_id
    unused = keys.create("unused").key_id
    used = keys.create("used")
    revoked = keys.create("revoked").key_id
    soon = keys.create("soon", ttl=3600).key_id
    never = keys.create("never", ttl=None).key_id
    keys.revoke(revoked)
    time.sleep(1.0)
    keys.verify(used.api_key)

    def ids(where: KeyFilter) -> set[str]:
        return set(listed(keys, where=where, limit=2))

    everything = {expired, unused, used.key_id, revoked, soon, never}
    assert ids(KeyFilter()) == everything
    assert ids(KeyFilter(status=StatusChoice.ALL)) == everything
    assert ids(KeyFilter(status=StatusChoice.ACTIVE)) == {unused, used.key_id, soon, never}
    assert ids(KeyFilter(status=StatusChoice.REVOKED)) == {revoked}
    assert ids(KeyFilter(status=StatusChoice.EXPIRED)) == {expired}
    assert ids(KeyFilter(expiring_within=7200)) == {soon}
    assert ids(KeyFilter(expiring_within=100 * 86400)) == {unused, used.key_id, soon}
    assert ids(KeyFilter(unused_for=0.8)) == everything - {used.key_id}
    assert ids(KeyFilter(status=StatusChoice.ACTIVE, unused_for=0.8)) == {unused, soon, never}
    assert ids(KeyFilter(unused_for=3600)) == set()
    statuses = {k.key_id: k.status for k in keys.list().keys}
    assert statuses[expired] is Status.EXPIRED
    assert statuses[revoked] is Status.REVOKED
    assert statuses[never] is Status.ACTIVE


def test_a_page_reads_a_bounded_number_of_records(keys: ApiKeys) -> None:
    made = [keys.create(f"k{i}", owner="al" if i % 2 else "bo") for i in range(30)]
    for created in made[:3]:
        keys.revoke(created.key_id)

    def cost(**kwargs: Any) -> tuple[KeyPage, StoreProxy]:
        proxy = StoreProxy(keys.store)
        page = ApiKeys(proxy.as_store()).list(**kwargs)
        return page, proxy

    page, proxy = cost(limit=5)
    assert len(page.keys) == 5
    assert page.next_cursor is not None
    assert proxy.records_read <= 2 * 5, proxy.calls
    assert sum(proxy.calls.values()) <= 3, proxy.calls

    page, proxy = cost(limit=5, owner="al")
    assert len(page.keys) == 5
    assert proxy.records_read <= 2 * 5, proxy.calls
    assert sum(proxy.calls.values()) <= 4, proxy.calls

    # A filter may look further than one page (ten pages' worth), but never at everything.
    page, proxy = cost(limit=2, where=KeyFilter(status=StatusChoice.EXPIRED))
    assert page.keys == ()
    assert page.next_cursor is not None
    assert proxy.records_read <= 10 * 2 + 2, proxy.calls
    assert proxy.records_read < 30

    # Following the cursor of a sparse filter still finds every match, each once.
    revoked = listed(keys, limit=2, where=KeyFilter(status=StatusChoice.REVOKED))
    assert sorted(revoked) == sorted(c.key_id for c in made[:3])
    page, proxy = cost(limit=2, owner="al", where=KeyFilter(status=StatusChoice.EXPIRED))
    assert page.keys == ()
    assert proxy.records_read <= 2 * (10 * 2 + 2), proxy.calls


# --- update ------------------------------------------------------------------------------------


def test_update_permissions_name_and_ttl(keys: ApiKeys) -> None:
    created = keys.create("ci-bot", owner="platform", permissions=["files:read"])
    keys.verify(created.api_key)

    added = keys.update(created.key_id, add_permissions=["files:write", "files:read"])
    assert added.permissions == ("files:read", "files:write")
    assert keys.verify(created.api_key, permission="files:write").valid

    removed = keys.update(created.key_id, remove_permissions=["files:read"])
    assert removed.permissions == ("files:write",)
    assert keys.verify(created.api_key, permission="files:read").reason is (
        Reason.INSUFFICIENT_PERMISSION
    )

    renamed = keys.update(created.key_id, name="  deploy-bot  ")
    assert renamed.name == "deploy-bot"
    assert renamed.permissions == ("files:write",)

    now = keys.store.now()
    longer = keys.update(created.key_id, ttl=3600)
    assert epoch(longer.expires_at) == pytest.approx(now + 3600, abs=30)
    forever = keys.update(created.key_id, ttl=None)
    assert forever.expires_at is None
    assert keys.show(created.key_id).expires_at is None

    shown = keys.show(created.key_id)
    assert shown.owner == "platform"
    assert shown.use_count == 2  # two verifies were valid; the refused one is not a use

    assert shown.status is Status.ACTIVE


def test_update_refuses_bad_input(keys: ApiKeys) -> None:
    created = keys.create("ci-bot", permissions=["files:read"])
    with pytest.raises(NotFoundError):
        keys.update(new_key()[1].key_id, name="x")
    with pytest.raises(InvalidInputError):
        keys.update("bad id", name="x")
    with pytest.raises(InvalidInputError):
        keys.update(created.key_id, add_permissions=["files"])
    with pytest.raises(InvalidInputError):
        keys.update(created.key_id, name="")
    with pytest.raises(InvalidInputError):
        keys.update(created.key_id, name="x" * 101)
    shown = keys.show(created.key_id)
    assert (shown.name, shown.permissions) == ("ci-bot", ("files:read",))


def test_update_refuses_a_bad_ttl_and_changes_nothing(keys: ApiKeys) -> None:
    """The same rule as `create`: a lifetime is positive and finite. A refused update must not
    have written anything (a record that cannot be read back would break `show` and `list`)."""
    created = keys.create("ci-bot", ttl=3600)
    for bad in (1e12, math.nan, math.inf, -5.0, 0.0):
        with pytest.raises(InvalidInputError):
            keys.update(created.key_id, ttl=bad)
        shown = keys.show(created.key_id)
        assert shown.expires_at == created.expires_at, bad
        assert shown.status is Status.ACTIVE, bad
    assert [k.key_id for k in keys.list().keys] == [created.key_id]
    assert keys.verify(created.api_key).valid


def test_concurrent_updates_all_land(keys: ApiKeys) -> None:
    created = keys.create("ci-bot", permissions=["base:read"])
    threads = 8
    barrier = threading.Barrier(threads)

    def add(i: int) -> ApiKey:
        barrier.wait(timeout=30)
        return keys.update(created.key_id, add_permissions=[f"perm{i}:read"])

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = [f.result(timeout=120) for f in [pool.submit(add, i) for i in range(threads)]]
    assert len(results) == threads
    final = set(keys.show(created.key_id).permissions)
    assert final == {"base:read", *(f"perm{i}:read" for i in range(threads))}


# --- create validation -------------------------------------------------------------------------

BAD_CREATES: list[tuple[str, dict[str, Any]]] = [
    ("empty name", {"name": ""}),
    ("blank name", {"name": "   "}),
    ("101-char name", {"name": "n" * 101}),
    ("control character in name", {"name": "ci\x1bbot"}),
    ("unknown role", {"roles": ["user", "superuser"]}),
    ("bad permission", {"permissions": ["files:read", "files"]}),
    ("bad owner (space)", {"owner": "a b"}),
    ("bad owner (colon)", {"owner": "a:b"}),
    ("bad owner (brace)", {"owner": "a{b}"}),
    ("bad owner (too long)", {"owner": "o" * 101}),
    ("zero ttl", {"ttl": 0}),
    ("negative ttl", {"ttl": -5.0}),
    ("NaN ttl", {"ttl": math.nan}),
    ("infinite ttl", {"ttl": math.inf}),
    ("ttl past the year 9999", {"ttl": 1e12}),
]


@pytest.mark.parametrize(("case", "changes"), BAD_CREATES, ids=[c for c, _ in BAD_CREATES])
def test_create_validation_writes_nothing(
    keys: ApiKeys, case: str, changes: dict[str, Any]
) -> None:
    arguments: dict[str, Any] = {
        "name": "ci-bot",
        "owner": "platform",
        "roles": ["user"],
        "permissions": ["files:read"],
    }
    arguments.update(changes)
    name = arguments.pop("name")
    with pytest.raises(InvalidInputError):
        keys.create(name, **arguments)
    assert keys.store.list(KEY_KIND).records == ()
    assert keys.store.list(OWNER_KIND).records == ()


def test_a_name_of_exactly_one_hundred_characters_is_accepted(keys: ApiKeys) -> None:
    assert keys.create("n" * 100).name == "n" * 100


# --- the secret is stored nowhere --------------------------------------------------------------


def forbidden_forms(api_key: str) -> list[str]:
    """What must never be stored: the key, its secret, encodings and long pieces of it."""
    secret = parse_key(api_key).secret
    raw = secret.encode()
    forms = [
        api_key,
        secret,
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        base64.b32encode(raw).decode().rstrip("="),
        raw.hex(),
        raw.hex().upper(),
        secret[::-1],
    ]
    windows = [secret[i : i + 16] for i in range(0, len(secret) - 15, 3)]
    return forms + windows


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, dict):
        return " ".join(f"{_text(k)}={_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return " ".join(_text(v) for v in value)
    return str(value)


def dump_sqlite(url: str) -> tuple[list[str], list[str]]:
    """Every value of every row of every table, read with sqlite3 itself; and the raw files
    (database, WAL, journal), whose free and superseded pages keep old row versions."""
    parsed = parse_store_url(url)
    assert parsed.path is not None
    path = Path(parsed.path)
    values: list[str] = []
    db = sqlite3.connect(path)
    try:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert "records" in tables
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                values.extend(_text(v) for v in row)
    finally:
        db.close()
    files = [Path(f"{path}{suffix}") for suffix in ("", "-wal", "-journal")]
    return values, [_text(file.read_bytes()) for file in files if file.exists()]


def dump_redis(client: Any) -> list[str]:
    """Every key the client's node holds, and every value by type."""
    values: list[str] = []
    names = list(client.scan_iter(count=1000))
    for start in range(0, len(names), 500):
        batch = names[start : start + 500]
        pipe = client.pipeline(transaction=False)
        for name in batch:
            pipe.type(name)
        types = [_text(t) for t in pipe.execute()]
        pipe = client.pipeline(transaction=False)
        for name, kind in zip(batch, types, strict=True):
            if kind == "hash":
                pipe.hgetall(name)
            elif kind == "zset":
                pipe.zrange(name, 0, -1, withscores=True)
            elif kind == "stream":
                pipe.xrange(name, "-", "+")
            elif kind == "string":
                pipe.get(name)
            elif kind == "list":
                pipe.lrange(name, 0, -1)
            elif kind == "set":
                pipe.smembers(name)
            else:
                raise AssertionError(f"unexpected redis type {kind} for {name!r}")
        for name, value in zip(batch, pipe.execute(), strict=True):
            values.append(_text(name))
            values.append(_text(value))
    return values


def dump_store(store_target: StoreTarget, store: Store) -> tuple[list[str], list[str]]:
    """(every stored value, raw bytes of the store's files where it has any)."""
    if store_target.backend == "sqlite":
        return dump_sqlite(store_target.url)
    if store_target.backend in {"fakeredis", "sentinel"}:  # the store's client finds the data
        return dump_redis(cast(Any, store).client), []
    if store_target.backend == "redis":
        client = redis.Redis.from_url(store_target.url)
        try:
            return dump_redis(client), []
        finally:
            client.close()
    nodes = store_target.url.removeprefix("redis+cluster://").split(",")
    values: list[str] = []
    for node in nodes:  # every master holds its own slots: scan each one
        host, _, port = node.rpartition(":")
        client = redis.Redis(host=host, port=int(port))
        try:
            values.extend(dump_redis(client))
        finally:
            client.close()
    return values, []


def test_the_plaintext_secret_is_stored_nowhere(
    store_target: StoreTarget, store: Store, keys: ApiKeys
) -> None:
    created = [
        keys.create("ci-bot", owner="platform", roles=["user"]),
        keys.create("deploy", owner="platform", permissions=["files:*"], ttl=None),
        keys.create("agent", owner="team-b"),
        keys.create("unowned"),
    ]
    for item in created:
        keys.verify(item.api_key)
        keys.verify(wrong_secret_for(item))
    rotation = keys.rotate(created[0].key_id, grace=600)
    keys.verify(rotation.api_key)
    keys.revoke(created[2].key_id, reason="test")
    keys.update(created[1].key_id, add_permissions=["metrics:view"], name="deploy-2")
    keys.revoke_owner("platform")
    all_keys = [c.api_key for c in created] + [rotation.api_key]

    values, files = dump_store(store_target, store)
    blob = "\n".join(values)
    everything = "\n".join([blob, *files])
    for api_key in all_keys:
        for form in forbidden_forms(api_key):
            assert form not in everything, "a form of a secret was found in the store"
        # The scan really saw the records: each hash is there, once, as the `hash` field.
        digest = secret_hash(parse_key(api_key).secret)
        assert blob.count(digest) == 1
        assert f'"hash":"{digest}"' in blob or f'"{digest}"' in blob
    for record in store.list(KEY_KIND).records:
        assert set(record.fields["hash"]) <= set("0123456789abcdef")
        assert len(record.fields["hash"]) == 64


def test_dump_of_the_store_is_not_blind(store_target: StoreTarget, store: Store) -> None:
    """The scanner finds a secret that someone did store: the test above can fail."""
    api_key, _ = new_key()
    store.put("leak", "x", {"oops": parse_key(api_key).secret})
    values, files = dump_store(store_target, store)
    assert any(form in "\n".join(values) for form in forbidden_forms(api_key))
    if store_target.backend == "sqlite":
        assert files
        assert any(form in "\n".join(files) for form in forbidden_forms(api_key))


def test_a_verify_refused_for_permission_is_not_a_use(keys: ApiKeys) -> None:
    """The permission is checked in the same atomic step that counts, on every backend."""
    created = keys.create("guest-bot", roles=["guest"], permissions=["metrics:view"])
    for needed in ("files:delete", "admin:users", "weather:write"):
        verdict = keys.verify(created.api_key, permission=needed)
        assert verdict.reason is Reason.INSUFFICIENT_PERMISSION
    for granted in ("weather:read", "metrics:view"):  # through the role, and directly
        assert keys.verify(created.api_key, permission=granted).valid
    shown = keys.show(created.key_id)
    assert shown.use_count == 2


def test_wildcard_grants_satisfy_in_the_store(keys: ApiKeys) -> None:
    created = keys.create("ops", permissions=["files:*", "*:view"])
    assert keys.verify(created.api_key, permission="files:delete").valid
    assert keys.verify(created.api_key, permission="metrics:view").valid
    assert not keys.verify(created.api_key, permission="admin:users").valid
    admin = keys.create("root", roles=["admin"])
    assert keys.verify(admin.api_key, permission="anything:at-all").valid
