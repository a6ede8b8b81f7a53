"""The Store protocol: the few general operations every backend makes atomic.

    store.put("key", "k1", {"name": "ci", "uses": 0}, ttl=3600)
    store.update("key", "k1", increment={"uses": 1}, expect={"status": "active"})
    store.list("key", cursor=None, limit=100)      # Page(records, next_cursor)

Records are flat mappings of field name to JSON value, grouped by `kind` and named by `id`.
Capabilities build their domain operations (verify-and-touch a key, take from a bucket) on
these seams; a backend may add a single-round-trip version of one, never a second rulebook.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol, runtime_checkable

from mcpsec.core.durations import check_lifetime
from mcpsec.core.errors import InvalidInputError

JSONValue = Any
"""Anything `json.dumps` accepts: str, int, float, bool, None, lists and dicts of those."""

# Ids and kinds end up inside Redis keys and hash tags: braces would move the hash tag,
# whitespace and control characters would make keys unreadable in redis-cli.
_NAME = re.compile(r"[^\s{}\x00-\x1f\x7f]{1,200}")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
_PREFIX = re.compile(r"[^\s{}\x00-\x1f\x7f]{0,64}")
RESERVED_PREFIX: Final = "__"
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1


class UpdateStatus(StrEnum):
    UPDATED = "updated"
    CONFLICT = "conflict"  # a condition in `expect` did not hold; nothing was changed
    MISSING = "missing"  # no live record with that id


class _Keep:
    """Marker for `update(ttl=KEEP_TTL)`: leave the record's expiry as it is."""

    def __repr__(self) -> str:
        return "KEEP_TTL"


KEEP_TTL: Final = _Keep()


@dataclass(frozen=True)
class Record:
    kind: str
    id: str
    fields: Mapping[str, JSONValue]
    expires_at: float | None = None  # epoch seconds by the store's clock; None = never


@dataclass(frozen=True)
class Page:
    records: tuple[Record, ...]
    next_cursor: str | None  # pass back to `list` for the next page; None when done


@dataclass(frozen=True)
class UpdateResult:
    status: UpdateStatus
    record: Record | None  # after the update; the unchanged record on CONFLICT; None if MISSING


class KeyOutcome(StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"  # no such key, or the secret does not match
    REVOKED = "revoked"
    EXPIRED = "expired"
    INSUFFICIENT_PERMISSION = "insufficient_permission"


@dataclass(frozen=True)
class KeyTouch:
    outcome: KeyOutcome
    # What a verdict needs, `owner`, `roles` and `permissions`; empty when UNKNOWN, so a
    # wrong secret learns nothing about the key.
    grants: Mapping[str, JSONValue] = field(default_factory=dict)


KEY_GRANT_FIELDS: Final = ("owner", "roles", "permissions")


KEY_KIND: Final = "key"


@dataclass(frozen=True)
class BucketRequest:
    """One token bucket of a decision: its limits (this call's policy) and what it costs."""

    name: str
    capacity: float
    refill: float  # tokens per second; 0: the bucket never refills (a quota)
    cost: float = 1.0
    overridable: bool = False  # an override record of the group replaces these limits


@dataclass(frozen=True)
class BucketLevel:
    name: str
    capacity: float  # the limits that applied (an override's, if one did)
    refill: float
    tokens: float  # after this call's charge if it was allowed, else as it stands
    retry_after: float | None  # seconds until `cost` tokens are there; 0 now; None never
    reset_after: float | None  # seconds until the bucket is full again; None never
    existed: bool  # False: the bucket was full (absent) before this call
    overridden: bool = False  # the group's override record supplied the limits


@dataclass(frozen=True)
class BucketReply:
    allowed: bool  # every bucket had enough; then (when consuming) every one was charged
    levels: tuple[BucketLevel, ...]


@dataclass(frozen=True)
class BucketEntry:
    group: str
    level: BucketLevel


@dataclass(frozen=True)
class BucketPage:
    buckets: tuple[BucketEntry, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class LogEntry:
    id: str  # opaque, increasing within a stream; pass as `after` to read what follows
    time: float  # epoch seconds by the store's clock
    fields: Mapping[str, JSONValue]


@dataclass(frozen=True)
class ChainedAppend:
    appended: tuple[LogEntry, ...]  # in order; empty: another entry came after `after` first
    last: LogEntry | None  # then the stream's last entry now (None: the stream is empty)

    @property
    def ok(self) -> bool:
        return bool(self.appended)


@dataclass(frozen=True)
class StoreInfo:
    backend: str  # "sqlite", "redis", "redis-sentinel", "redis-cluster"
    url: str  # redacted: never carries a password
    version: str
    details: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Store(Protocol):
    """Every method is atomic on its own; every failure is an `mcpsec.core.errors.StoreError`."""

    def put(
        self,
        kind: str,
        id: str,
        fields: Mapping[str, JSONValue],
        *,
        ttl: float | None = None,
        only_if_absent: bool = False,
    ) -> bool:
        """Write a whole record (replacing any); False when `only_if_absent` and one exists."""
        ...

    def get(self, kind: str, id: str) -> Record | None: ...

    def get_many(self, kind: str, ids: Sequence[str]) -> builtins.list[Record | None]:
        """Several records in one round trip, in the order asked; None for each one missing."""
        ...

    def delete(self, kind: str, id: str) -> bool:
        """True if a live record was deleted."""
        ...

    def list(self, kind: str, *, cursor: str | None = None, limit: int = 100) -> Page:
        """Live records in id order, a page at a time; cost follows `limit`, not the total."""
        ...

    def update(
        self,
        kind: str,
        id: str,
        *,
        set: Mapping[str, JSONValue] | None = None,
        increment: Mapping[str, int] | None = None,
        expect: Mapping[str, JSONValue] | None = None,
        ttl: float | _Keep | None = KEEP_TTL,
    ) -> UpdateResult:
        """Compare-and-update in one atomic step.

        Every field in `expect` must equal its value (None matches an absent field) or nothing
        changes and the status is CONFLICT. Then `set` is written, `increment` is added
        (absent counts as 0), and the expiry is kept, removed (None) or reset (seconds).
        """
        ...

    def log_append(
        self, stream: str, fields: Mapping[str, JSONValue], *, maxlen: int | None = None
    ) -> LogEntry:
        """Append one entry; with `maxlen`, older entries beyond it may be trimmed."""
        ...

    def log_append_after(
        self,
        stream: str,
        entries: Sequence[Mapping[str, JSONValue]],
        *,
        after: str | None,
        maxlen: int | None = None,
        max_age: float | None = None,
    ) -> ChainedAppend:
        """Append `entries`, in order, only if the stream's last entry is `after` (None: only
        to an empty stream).

        One atomic step: the way a hash chain stays whole with many writers, and several
        events go in with one round trip (group commit). Otherwise nothing is written and
        the stream's last entry is returned to chain to. `maxlen` and `max_age` (seconds)
        let older entries be trimmed, approximately.
        """
        ...

    def log_read(
        self, stream: str, *, after: str | None = None, limit: int = 100, block: float = 0
    ) -> builtins.list[LogEntry]:
        """Entries after `after` (from the start when None), oldest first.

        With `block` > 0, waits up to that many seconds for at least one entry; this is how
        `audit tail -f` follows the log.
        """
        ...

    def log_tail(self, stream: str, count: int) -> builtins.list[LogEntry]:
        """The newest `count` entries, oldest first."""
        ...

    def touch_key(self, key_id: str, secret_hash: str, accepted: Sequence[str] = ()) -> KeyTouch:
        """Verify-and-touch an API key record (kind `key`) in one atomic step.

        Compares `secret_hash` with the record's `hash` field over every byte, then checks
        `status` ("active") and `expires_at` by the store's clock, then, when `accepted` is
        given, that one of those grant tokens is in the record's `grant_tokens` field (a
        space-padded string like " files:read @user "); only when all pass are
        `use_count` incremented and `last_used_at` set. Returns the outcome and, unless it
        is UNKNOWN, the key's `KEY_GRANT_FIELDS`. One round trip on Redis.
        """
        ...

    def set_mark(self, group: str, name: str, value: float, *, ttl: float) -> float:
        """Raise mark `name` of `group` to at least `value`, alive at least `ttl` seconds more.

        A mark never goes down and never lives shorter than it was told to, so setting one
        twice (or two processes at once) keeps the larger value and the later expiry.
        Returns the value the mark now holds. Marks are how token revocations are kept.
        """
        ...

    def get_marks(self, group: str, names: Sequence[str]) -> builtins.list[float | None]:
        """The live values of several marks of one group, in the order asked (None: absent).

        One round trip, and on a cluster one slot: a group is one hash tag.
        """
        ...

    async def get_marks_async(
        self, group: str, names: Sequence[str]
    ) -> builtins.list[float | None]:
        """`get_marks` for asyncio servers, without a worker thread where the backend can."""
        ...

    async def touch_key_async(
        self, key_id: str, secret_hash: str, accepted: Sequence[str] = ()
    ) -> KeyTouch:
        """`touch_key` for asyncio servers, without a worker thread where the backend can."""
        ...

    def take_buckets(
        self,
        group: str,
        requests: Sequence[BucketRequest],
        *,
        consume: bool = True,
        override_kind: str | None = None,
    ) -> BucketReply:
        """Token buckets of one group, all or nothing, in one atomic step by the store's clock.

        Each bucket refills at `refill` per second up to `capacity` (an absent bucket is
        full). If every bucket holds its `cost`, each is charged (unless `consume` is False);
        if one does not, none is. With `override_kind`, a live record of that kind whose id
        is the group supplies `capacity` and `refill` for the overridable requests. One
        round trip and one cluster slot on Redis, never retried by the client.
        """
        ...

    async def take_buckets_async(
        self,
        group: str,
        requests: Sequence[BucketRequest],
        *,
        consume: bool = True,
        override_kind: str | None = None,
    ) -> BucketReply:
        """`take_buckets` for asyncio servers, without a worker thread where the backend can."""
        ...

    def reset_buckets(self, group: str, names: Sequence[str] | None = None) -> int:
        """Make buckets full again (forget them): the named ones, or all of the group.
        Returns how many were not full."""
        ...

    def list_buckets(self, *, cursor: str | None = None, limit: int = 100) -> BucketPage:
        """Buckets that are not full, by group then name, a page at a time."""
        ...

    def now(self) -> float:
        """The store's clock in epoch seconds: the time every expiry is measured against."""
        ...

    def info(self) -> StoreInfo: ...

    def close(self) -> None: ...

    async def aclose(self) -> None:
        """Close what the async calls opened in the running event loop."""
        ...


def check_prefix(prefix: str) -> str:
    """A key prefix must not carry a hash tag (that would put every key in one cluster slot)."""
    if not _PREFIX.fullmatch(prefix):
        raise InvalidInputError(
            f"store prefix {prefix!r} must be at most 64 characters without spaces, braces "
            "or control characters",
            field="prefix",
        )
    return prefix


def check_kind(kind: str) -> str:
    if not _KIND.fullmatch(kind):
        raise InvalidInputError(
            f"record kind {kind!r} must be lowercase letters, digits and _ (at most 32)",
            field="kind",
        )
    return kind


def check_id(id: str, what: str = "id") -> str:
    """Refuse ids that would break a Redis hash tag or a terminal: braces, spaces, controls."""
    if not _NAME.fullmatch(id):
        raise InvalidInputError(
            f"{what} {id!r} must be 1-200 characters without spaces, braces or control characters",
            field=what,
        )
    return id


def check_fields(fields: Mapping[str, JSONValue]) -> Mapping[str, JSONValue]:
    for name in fields:
        if not name or name.startswith(RESERVED_PREFIX) or not _NAME.fullmatch(name):
            raise InvalidInputError(f"field name {name!r} is not allowed", field="fields")
    return fields


def check_update(
    set: Mapping[str, JSONValue] | None,
    increment: Mapping[str, int] | None,
    expect: Mapping[str, JSONValue] | None,
) -> None:
    """Names are allowed, increments are integers, and no field is both set and incremented."""
    check_fields({**(set or {}), **(increment or {}), **(expect or {})})
    both = sorted(builtins.set(set or {}) & builtins.set(increment or {}))
    if both:
        raise InvalidInputError(f"field {both[0]} cannot be both set and incremented")
    for name, amount in (increment or {}).items():
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise InvalidInputError(f"increment of {name} must be an integer", field=name)
        if not INT64_MIN <= amount <= INT64_MAX:
            raise InvalidInputError(f"increment of {name} is out of range", field=name)


def is_counter(value: JSONValue) -> bool:
    """What `increment` may add to: nothing yet, or a 64-bit integer (a bool is not one)."""
    if value is None:
        return True
    return (
        isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX
    )


def check_mark(group: str, names: Sequence[str], value: float = 0.0) -> None:
    """Groups and names follow the id rules; a value must be a finite number."""
    check_id(group, "mark group")
    if not names:
        raise InvalidInputError("at least one mark name is needed", field="names")
    for name in names:
        check_id(name, "mark name")
    if isinstance(value, bool) or not isinstance(value, int | float) or not abs(value) < 2**53:
        raise InvalidInputError(f"mark value {value!r} is not a finite number", field="value")


def check_buckets(group: str, requests: Sequence[BucketRequest]) -> None:
    """Names follow the id rules; limits are finite, capacity > 0, refill and cost >= 0."""
    check_id(group, "bucket group")
    if not requests:
        raise InvalidInputError("at least one bucket is needed", field="buckets")
    names = [r.name for r in requests]
    if len(set(names)) != len(names):
        raise InvalidInputError("a bucket is named twice in one decision", field="buckets")
    for r in requests:
        check_id(r.name, "bucket name")
        for what, value, least in (("capacity", r.capacity, 0.0), ("refill", r.refill, 0.0)):
            if not _finite(value) or value < least or (what == "capacity" and value == 0):
                raise InvalidInputError(f"bucket {what} {value!r} is out of range", field=what)
        if not _finite(r.cost) or r.cost < 0:
            raise InvalidInputError(f"cost {r.cost!r} must be a number >= 0", field="cost")


EPSILON: Final = 1e-9  # float dust: a bucket refilled to 0.9999999999 of a token holds one


def refilled(tokens: float, since: float, capacity: float, refill: float, now: float) -> float:
    """A bucket's tokens now: what it held at `since`, plus the refill, up to capacity.
    The same rule as bucket_take.lua; backends without Lua use this."""
    return min(capacity, tokens + max(0.0, now - since) * refill)


def bucket_level(
    name: str,
    capacity: float,
    refill: float,
    tokens: float,
    cost: float,
    *,
    existed: bool,
    overridden: bool = False,
) -> BucketLevel:
    """What a decision reports of one bucket holding `tokens` (after any charge)."""
    retry = 0.0 if has(tokens, cost) else ((cost - tokens) / refill if refill > 0 else None)
    reset = 0.0 if has(tokens, capacity) else ((capacity - tokens) / refill if refill > 0 else None)
    return BucketLevel(name, capacity, refill, tokens, retry, reset, existed, overridden)


def has(tokens: float, cost: float) -> bool:
    """Enough tokens, forgiving float dust (the same test as bucket_take.lua)."""
    return tokens + EPSILON >= cost


def _finite(value: float) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and abs(value) < 2**53


def check_retention(maxlen: int | None, max_age: float | None = None) -> None:
    """What a log may keep: at least one entry, for more than no time at all."""
    if maxlen is not None and (isinstance(maxlen, bool) or maxlen < 1):
        raise InvalidInputError("maxlen must be at least 1", field="maxlen")
    check_lifetime(max_age, field="max_age")


MAX_BATCH: Final = 1000


def check_batch(entries: Sequence[object]) -> None:
    """A chained append writes at least one entry and a bounded number at once."""
    if not 1 <= len(entries) <= MAX_BATCH:
        raise InvalidInputError(
            f"a chained append takes 1 to {MAX_BATCH} entries, got {len(entries)}",
            field="entries",
        )


def check_limit(limit: int) -> int:
    if not 1 <= limit <= 10_000:
        raise InvalidInputError(f"limit must be between 1 and 10000, got {limit}", field="limit")
    return limit
