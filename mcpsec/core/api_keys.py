"""API keys: issue, verify, rotate with grace, revoke, list, for machines calling MCP servers.

    keys = ApiKeys(store)
    created = keys.create("ci-bot", owner="platform", roles=["user"])  # created.api_key, once
    keys.verify(created.api_key, permission="files:read").valid          # True, one use counted
    keys.revoke(created.key_id)                                          # the next verify fails

Verification is one atomic store step (`Store.touch_key`), so use counts are exact under any
concurrency and a revocation holds from the very next call, in every process. The rules live
here once; `AsyncApiKeys` runs the same code for asyncio servers.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from mcpsec.core.async_bridge import in_thread
from mcpsec.core.audit import NO_AUDIT, Audit, Outcome, audited
from mcpsec.core.clock import to_datetime
from mcpsec.core.durations import MAX_SECONDS, check_lifetime
from mcpsec.core.errors import InvalidInputError, MCPSecError, NotFoundError, StoreError
from mcpsec.core.key_filters import KeyFilter
from mcpsec.core.key_format import (
    DEFAULT_PREFIX,
    MalformedKeyError,
    check_key_id,
    check_prefix,
    new_key,
    parse_key,
    secret_hash,
)
from mcpsec.core.key_records import (
    OWNER_KIND,
    ApiKey,
    RateLimit,
    Status,
    check_name,
    check_owner,
    check_reason,
    from_record,
    grant_tokens,
    to_fields,
)
from mcpsec.core.rbac import RoleTable, check_permission
from mcpsec.core.roles import DEFAULT_ROLES
from mcpsec.store import KEY_KIND, KeyOutcome, KeyTouch, Record, Store, UpdateStatus

if TYPE_CHECKING:  # config imports the rate limiter, which imports the audit log
    from mcpsec.core.config import Settings

DEFAULT_TTL: Final = 90 * 86400.0
DEFAULT_GRACE: Final = 86400.0
_ATTEMPTS: Final = 5  # fresh key ids to try before giving up (a collision is ~2^-71)
_ROTATION_GUARDED: Final = (
    "status",
    "rotated_to",
    "expires_at",
    "name",
    "roles",
    "permissions",
    "rate_limit",
)
_UPDATE_GUARDED: Final = ("status", "rotated_to", "permissions", "name", "expires_at")
_CAS_DEADLINE: Final = 5.0
_OWNER_PASSES: Final = 5  # seconds of compare-and-set retries before calling a key too busy


class Default:
    """Marker for "use the configured default" where None already means "never"."""

    def __repr__(self) -> str:
        return "Default()"


DEFAULT: Final = Default()


class Reason(StrEnum):
    MALFORMED = "malformed"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    EXPIRED = "expired"
    INSUFFICIENT_PERMISSION = "insufficient_permission"


@dataclass(frozen=True)
class CreatedKey:
    key_id: str
    api_key: str = field(repr=False, metadata={"essential": True})  # shown once, never stored
    name: str
    owner: str | None
    roles: tuple[str, ...]
    permissions: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True)
class Verdict:
    valid: bool = field(metadata={"essential": True})
    reason: Reason | None
    key_id: str | None
    owner: str | None = None
    roles: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()  # effective: granted directly and through the roles


@dataclass(frozen=True)
class KeyPage:
    keys: tuple[ApiKey, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class Rotation:
    key_id: str
    api_key: str = field(repr=False, metadata={"essential": True})
    name: str
    owner: str | None
    roles: tuple[str, ...]
    permissions: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    rotated_from: str
    old_key_status: Status
    old_key_expires_at: datetime | None


@dataclass(frozen=True)
class OwnerRevocation:
    owner: str
    revoked: int = field(metadata={"essential": True})


def check_format(api_key: str) -> Verdict:
    """Offline: the shape and checksum only. Needs no store and counts no use."""
    try:
        return Verdict(True, None, parse_key(api_key).key_id)
    except MalformedKeyError:
        return Verdict(False, Reason.MALFORMED, None)


class ApiKeys:
    """The API key rules over any Store."""

    @classmethod
    def from_settings(
        cls, settings: Settings, store: Store | Callable[[], Store], *, audit: Audit = NO_AUDIT
    ) -> ApiKeys:
        """The keys as `[keys]` and the roles configure them."""
        return cls(
            store,
            prefix=settings.keys.prefix,
            default_ttl=settings.keys.default_ttl,
            roles=settings.roles,
            audit=audit,
        )

    def __init__(
        self,
        store: Store | Callable[[], Store],
        *,
        prefix: str = DEFAULT_PREFIX,
        default_ttl: float | None = DEFAULT_TTL,
        roles: RoleTable = DEFAULT_ROLES,
        audit: Audit = NO_AUDIT,
    ) -> None:
        """`store` may be a function that opens it: then a malformed key never opens a store
        (unless `audit` records the verdict in it)."""
        self._store = store
        self.audit = audit
        self._opened: Store | None = None
        self._effective_cache: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]] = {}
        self.prefix = check_prefix(prefix)
        self.default_ttl = default_ttl
        self.roles = roles

    @property
    def store(self) -> Store:
        if self._opened is None:
            self._opened = self._store() if callable(self._store) else self._store
        return self._opened

    # -- issue -----------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        owner: str | None = None,
        roles: Iterable[str] = (),
        permissions: Iterable[str] = (),
        ttl: float | Default | None = DEFAULT,
        rate_limit: RateLimit | None = None,
        rotated_from: str | None = None,
    ) -> CreatedKey:
        """A new key; its plaintext is in the result and nowhere else, ever."""
        draft = self._draft(name, owner, roles, permissions, rate_limit, rotated_from)
        lifetime = check_lifetime(self.default_ttl if isinstance(ttl, Default) else ttl)
        for _ in range(_ATTEMPTS):
            now = self.store.now()
            api_key, parts = new_key(self.prefix)
            key = replace(
                draft,
                key_id=parts.key_id,
                created_at=to_datetime(now),
                expires_at=to_datetime(now + lifetime) if lifetime else None,
            )
            if self.store.get(KEY_KIND, key.key_id) is not None:
                continue  # taken: never index someone else's key under this owner
            self.audit.change(  # before anything is written: no key without its event
                "key.created",
                subject=draft.owner,
                key_id=key.key_id,
                details={"name": key.name, "roles": list(key.roles), "rotated_from": rotated_from},
            )
            digest = secret_hash(parts.secret)
            fields = to_fields(key, digest)
            try:
                if draft.owner:  # the owner index first: `revoke --owner` must never miss a key
                    self.store.put(OWNER_KIND, f"{draft.owner}:{key.key_id}", {})
                if self.store.put(KEY_KIND, key.key_id, fields, only_if_absent=True):
                    return _created(key, api_key)
            except StoreError:
                self._abandon(key.key_id, draft.owner, digest)
                raise
        raise MCPSecError("could not find a free key id; try again")

    # -- verify ----------------------------------------------------------------------------

    def verify(self, api_key: str, *, permission: str | None = None) -> Verdict:
        """Valid or not, and why. A malformed key is answered without touching the store."""
        lookup = self._lookup(api_key, permission)
        if isinstance(lookup, Verdict):
            return lookup
        touch = self.store.touch_key(*lookup)
        return self._touched(lookup[0], touch, permission)

    def _lookup(
        self, api_key: str, permission: str | None
    ) -> Verdict | tuple[str, str, tuple[str, ...]]:
        """What to ask the store (key id, secret hash, grants that would do), or the verdict
        on a malformed key, which needs no store."""
        if permission is not None:
            check_permission(permission)
        try:
            parts = parse_key(api_key)
        except MalformedKeyError:
            malformed = Verdict(False, Reason.MALFORMED, None)
            self._audit_verdict(malformed, permission, presented=api_key)
            return malformed
        accepted = self.roles.accepting(permission) if permission else ()
        return parts.key_id, secret_hash(parts.secret), accepted

    def _touched(self, key_id: str, touch: KeyTouch, permission: str | None) -> Verdict:
        verdict = self._verdict(key_id, touch)
        self._audit_verdict(verdict, permission)
        return verdict

    def _audit_verdict(
        self, verdict: Verdict, permission: str | None, presented: str | None = None
    ) -> None:
        self.audit.verdict(
            "key.verified",
            Outcome.ALLOWED if verdict.valid else Outcome.DENIED,
            subject=verdict.owner,
            key_id=verdict.key_id,
            reason=verdict.reason.value if verdict.reason else None,
            credential=self.audit.credential(presented) if presented else None,
            details={"permission": permission} if permission else {},
        )

    # -- inspect ---------------------------------------------------------------------------

    def show(self, key_id: str) -> ApiKey:
        record = self.store.get(KEY_KIND, check_key_id(key_id))
        if record is None:
            raise NotFoundError(f"no API key with id {key_id}")
        return from_record(record, self.store.now())

    def list(
        self,
        *,
        owner: str | None = None,
        where: KeyFilter | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> KeyPage:
        """One page of keys, in key id order (or owner order); cost follows `limit`.

        With a filter, at most ten pages' worth are examined per call: the page may come back
        short, with a cursor to go on from.
        """
        if not 1 <= limit <= 1000:
            raise InvalidInputError("limit must be between 1 and 1000", field="limit")
        now = self.store.now()
        chosen = where or KeyFilter()
        found: list[ApiKey] = []
        position: str | None = None
        for scanned, (position, record) in enumerate(self._scan(owner, cursor, limit), 1):
            key = from_record(record, now)
            if chosen.matches(key, now):
                found.append(key)
            if len(found) == limit or scanned >= limit * 10:
                return KeyPage(tuple(found), position)
        return KeyPage(tuple(found), None)

    # -- change ----------------------------------------------------------------------------

    def revoke(self, key_id: str, *, reason: str | None = None) -> ApiKey:
        """Revoke now; revoking a revoked key changes nothing and is not an error."""
        check_key_id(key_id)
        check_reason(reason)
        with audited(self.audit, "key.revoked", key_id=key_id, reason=reason):
            return self._revoke(key_id, reason)[1]

    def revoke_owner(self, owner: str, *, reason: str | None = None) -> OwnerRevocation:
        """Revoke every active key of `owner`; says how many that was.

        Passes repeat until one finds nothing left to revoke, so a key that appeared behind
        the scan meanwhile (a rotation's successor) is caught too.
        """
        check_owner(owner)
        check_reason(reason)
        with audited(self.audit, "key.revoked", subject=owner, reason=reason):
            return self._revoke_owner(owner, reason)

    def _revoke_owner(self, owner: str, reason: str | None) -> OwnerRevocation:
        revoked = 0
        for _ in range(_OWNER_PASSES):
            now = self.store.now()
            found = 0
            for _, record in self._scan(owner, None, 200):
                if from_record(record, now).status is Status.ACTIVE:  # expired keys stay so
                    found += self._revoke(record.id, reason)[0]
            revoked += found
            if not found:
                break
        return OwnerRevocation(owner, revoked)

    def rotate(self, key_id: str, *, grace: float | None = DEFAULT_GRACE) -> Rotation:
        """A successor with the same name, owner, grants and limits. The old key works until
        the grace ends (never past its own expiry), or stops now when `grace` is None.

        The old key is changed only if nothing about it changed since it was read (grants,
        limits, expiry, status), so the successor can never carry grants just taken away;
        a concurrent change means reading again and starting over.
        """
        if grace is not None:
            check_lifetime(grace, field="grace")
        check_key_id(key_id)
        with audited(self.audit, "key.rotated", key_id=key_id, details={"grace": grace}):
            return self._rotate(key_id, grace)

    def _rotate(self, key_id: str, grace: float | None) -> Rotation:
        for pause in _backoff(_CAS_DEADLINE):
            current = self.store.get(KEY_KIND, key_id)
            if current is None:
                raise NotFoundError(f"no API key with id {key_id}")
            old = from_record(current, self.store.now())
            _must_be_rotatable(old)
            rotation = self._rotate_once(current, old, grace)
            if rotation is not None:
                return rotation
            time.sleep(pause)
        raise StoreError(f"key {key_id} kept changing while being rotated; try again")

    def _rotate_once(self, current: Record, old: ApiKey, grace: float | None) -> Rotation | None:
        lifetime = None
        if old.expires_at:
            lifetime = min(old.expires_at.timestamp() - old.created_at.timestamp(), MAX_SECONDS)
        new = self.create(
            old.name,
            owner=old.owner,
            roles=old.roles,
            permissions=old.permissions,
            ttl=lifetime,
            rate_limit=old.rate_limit,
            rotated_from=old.key_id,
        )
        now = new.created_at.timestamp()
        changes: dict[str, Any] = {"rotated_to": new.key_id}
        if grace is None:
            changes |= {"status": "revoked", "revoked_at": now, "revoked_reason": "rotated"}
        else:
            own = current.fields.get("expires_at")
            changes["expires_at"] = min(now + grace, own) if own is not None else now + grace
        expect = {name: current.fields.get(name) for name in _ROTATION_GUARDED}
        try:
            result = self.store.update(KEY_KIND, old.key_id, set=changes, expect=expect)
        except BaseException:
            self._discard(new.key_id, new.owner)  # never leave a successor nobody holds
            raise
        if result.status is not UpdateStatus.UPDATED or result.record is None:
            self._discard(new.key_id, new.owner)
            return None
        after = from_record(result.record, now)
        return Rotation(
            new.key_id,
            new.api_key,
            new.name,
            new.owner,
            new.roles,
            new.permissions,
            new.created_at,
            new.expires_at,
            old.key_id,
            after.status,
            after.expires_at,
        )

    def update(
        self,
        key_id: str,
        *,
        name: str | None = None,
        add_permissions: Sequence[str] = (),
        remove_permissions: Sequence[str] = (),
        ttl: float | Default | None = DEFAULT,
    ) -> ApiKey:
        """Change name, grants or lifetime (from now); concurrent updates never overwrite each
        other. The lifetime of a revoked, expired or rotated key cannot be changed: that
        would bring it back, or stretch a rotation's grace."""
        check_key_id(key_id)
        new_name = check_name(name) if name is not None else None
        adding = [check_permission(p) for p in add_permissions]
        removing = [check_permission(p) for p in remove_permissions]
        if not isinstance(ttl, Default):
            check_lifetime(ttl)
        changed = {
            "name": new_name,
            "add_permissions": adding,
            "remove_permissions": removing,
            "ttl": None if isinstance(ttl, Default) else ttl,
        }
        with audited(self.audit, "key.updated", key_id=key_id, details=changed):
            return self._update(key_id, new_name, adding, removing, ttl)

    def _update(
        self,
        key_id: str,
        new_name: str | None,
        adding: Sequence[str],
        removing: Sequence[str],
        ttl: float | Default | None,
    ) -> ApiKey:
        for pause in _backoff(_CAS_DEADLINE):
            current = self.store.get(KEY_KIND, key_id)
            if current is None:
                raise NotFoundError(f"no API key with id {key_id}")
            now = self.store.now()
            changes = self._changes(current, now, new_name, adding, removing, ttl)
            expect = {name: current.fields.get(name) for name in _UPDATE_GUARDED}
            result = self.store.update(KEY_KIND, key_id, set=changes, expect=expect)
            if result.status is UpdateStatus.UPDATED and result.record is not None:
                return from_record(result.record, now)
            time.sleep(pause)  # another writer won this round: let it finish, then re-read
        raise StoreError(f"key {key_id} kept changing under concurrent updates; try again")

    def _changes(
        self,
        current: Record,
        now: float,
        name: str | None,
        adding: Sequence[str],
        removing: Sequence[str],
        ttl: float | Default | None,
    ) -> dict[str, Any]:
        fields = current.fields
        permissions = [p for p in fields.get("permissions", []) if p not in removing]
        permissions += [p for p in adding if p not in permissions]
        changes: dict[str, Any] = {
            "permissions": permissions,
            "grant_tokens": grant_tokens(fields.get("roles") or (), permissions),
        }
        if name is not None:
            changes["name"] = name
        if not isinstance(ttl, Default):
            key = from_record(current, now)
            if key.status is not Status.ACTIVE or key.rotated_to:
                state = f"was rotated to {key.rotated_to}" if key.rotated_to else f"is {key.status}"
                raise InvalidInputError(
                    f"key {key.key_id} {state}; its lifetime can no longer be changed"
                )
            changes["expires_at"] = now + ttl if ttl is not None else None
        return changes

    # -- plumbing --------------------------------------------------------------------------

    def _draft(
        self,
        name: str,
        owner: str | None,
        roles: Iterable[str],
        permissions: Iterable[str],
        rate_limit: RateLimit | None,
        rotated_from: str | None,
    ) -> ApiKey:
        """Every rule about a key's contents, checked before anything is written."""
        unset = to_datetime(0)
        return ApiKey(
            key_id="",
            name=check_name(name),
            owner=check_owner(owner) if owner is not None else None,
            status=Status.ACTIVE,
            roles=_unique(self.roles.check_role(r) for r in roles),
            permissions=_unique(check_permission(p) for p in permissions),
            created_at=unset,
            expires_at=None,
            last_used_at=None,
            use_count=0,
            rate_limit=rate_limit,
            rotated_from=rotated_from,
            rotated_to=None,
            revoked_at=None,
            revoked_reason=None,
        )

    def _effective(self, roles: tuple[str, ...], granted: tuple[str, ...]) -> tuple[str, ...]:
        """Effective permissions, sorted; remembered, since a server sees the same few grant
        sets on every request."""
        found = self._effective_cache.get((roles, granted))
        if found is None:
            if len(self._effective_cache) >= 1024:
                self._effective_cache.clear()
            found = tuple(sorted(self.roles.effective(roles, granted)))
            self._effective_cache[(roles, granted)] = found
        return found

    def _verdict(self, key_id: str, touch: KeyTouch) -> Verdict:
        outcome, fields = touch.outcome, touch.grants
        if outcome is KeyOutcome.UNKNOWN:
            return Verdict(False, Reason.UNKNOWN, key_id)
        roles = tuple(fields.get("roles") or ())
        granted = tuple(fields.get("permissions") or ())
        base = Verdict(
            True, None, key_id, fields.get("owner"), roles, self._effective(roles, granted)
        )
        if outcome is not KeyOutcome.OK:
            return replace(base, valid=False, reason=Reason(outcome.value))
        return base

    def _scan(
        self, owner: str | None, cursor: str | None, page: int
    ) -> Iterator[tuple[str, Record]]:
        """(position, record) for every key, or every key of one owner, from a cursor on."""
        if owner is None:
            while True:
                listed = self.store.list(KEY_KIND, cursor=cursor, limit=page)
                yield from ((r.id, r) for r in listed.records)
                if listed.next_cursor is None:
                    return
                cursor = listed.next_cursor
        mark = f"{check_owner(owner)}:"
        cursor = cursor if cursor and cursor.startswith(mark) else mark
        while True:
            listed = self.store.list(OWNER_KIND, cursor=cursor, limit=page)
            ids = [r.id for r in listed.records if r.id.startswith(mark)]
            records = self.store.get_many(KEY_KIND, [i[len(mark) :] for i in ids])
            yield from (
                (i, r)
                for i, r in zip(ids, records, strict=True)
                if r is not None and r.fields.get("owner") == owner  # the key says so too
            )
            if listed.next_cursor is None or len(ids) < len(listed.records):
                return
            cursor = listed.next_cursor

    def _revoke(self, key_id: str, reason: str | None) -> tuple[bool, ApiKey]:
        """(whether this call revoked it, the key as it now is)."""
        check_reason(reason)
        now = self.store.now()
        result = self.store.update(
            KEY_KIND,
            key_id,
            set={"status": Status.REVOKED.value, "revoked_at": now, "revoked_reason": reason},
            expect={"status": Status.ACTIVE.value},
        )
        if result.status is UpdateStatus.MISSING or result.record is None:
            raise NotFoundError(f"no API key with id {key_id}")
        return result.status is UpdateStatus.UPDATED, from_record(result.record, now)

    def _discard(self, key_id: str, owner: str | None) -> None:
        self.store.delete(KEY_KIND, key_id)
        if owner:
            self.store.delete(OWNER_KIND, f"{owner}:{key_id}")

    def _abandon(self, key_id: str, owner: str | None, digest: str) -> None:
        """Undo a create that failed part-way. A record and its index entry are two writes
        (two slots): a store at maxmemory takes the record, then refuses the index entry,
        and a timed-out reply may hide a write. The caller never gets the key, so a record
        left behind would be a live key nobody holds, missing from `keys list`. Best effort
        (deleting works at maxmemory, not with the store gone): the create's error stands.
        A record with another hash is someone else's key under the same id: left alone."""
        with contextlib.suppress(StoreError):
            record = self.store.get(KEY_KIND, key_id)
            if record is None or record.fields.get("hash") == digest:
                self._discard(key_id, owner)


class AsyncApiKeys:
    """The same rules for asyncio servers: `verify`, on every request, awaits the store's
    async check; the rest run the sync code in a worker thread, so there is one
    implementation to trust and the event loop never blocks on the store."""

    def __init__(self, keys: ApiKeys) -> None:
        self.keys = keys
        self.create = in_thread(keys.create)
        self.show = in_thread(keys.show)
        self.list = in_thread(keys.list)
        self.revoke = in_thread(keys.revoke)
        self.revoke_owner = in_thread(keys.revoke_owner)
        self.rotate = in_thread(keys.rotate)
        self.update = in_thread(keys.update)

    async def verify(self, api_key: str, *, permission: str | None = None) -> Verdict:
        """On every request: the store's async check-and-count (no worker thread on Redis),
        the same rules as `ApiKeys.verify`, the verdict queued for the audit log."""
        lookup = self.keys._lookup(api_key, permission)
        if isinstance(lookup, Verdict):
            return lookup
        touch = await self.keys.store.touch_key_async(*lookup)
        return self.keys._touched(lookup[0], touch, permission)

    async def aclose(self) -> None:
        """Close the store's asyncio connections of the running event loop."""
        await self.keys.store.aclose()


def _must_be_rotatable(key: ApiKey) -> None:
    if key.status is not Status.ACTIVE or key.rotated_to:
        detail = f"was rotated to {key.rotated_to}" if key.rotated_to else f"is {key.status}"
        raise InvalidInputError(f"key {key.key_id} {detail}; only an active key can be rotated")


def _backoff(deadline: float) -> Iterator[float]:
    """Pauses for compare-and-set retries: growing, jittered, until `deadline` seconds pass."""
    end = time.monotonic() + deadline
    pause = 0.001
    while time.monotonic() < end:
        yield pause * (0.5 + random.random())  # noqa: S311 - jitter, not a secret
        pause = min(pause * 2, 0.1)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _created(key: ApiKey, api_key: str) -> CreatedKey:
    return CreatedKey(
        key.key_id,
        api_key,
        key.name,
        key.owner,
        key.roles,
        key.permissions,
        key.created_at,
        key.expires_at,
    )
