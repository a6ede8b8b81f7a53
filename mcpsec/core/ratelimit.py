"""Rate limits: token buckets per identity (and per tool), by role, exact under concurrency.

    limiter = RateLimiter(store, RatePolicy())
    decision = limiter.check("alice", roles=["user"], tools=[("write_file", Limit.of(10, 0.5))])
    decision.allowed, decision.remaining, decision.retry_after   # for 429, Retry-After, RateLimit

A bucket holds up to `capacity` tokens (the burst) and refills at `refill_per_second` (the
sustained rate). An identity's limit is its override (set by an operator, kept in the store)
or else the most generous limit among its roles. Every decision is one atomic store step
(`Store.take_buckets`): the identity's bucket and any per-tool buckets are charged together
or not at all. When the store cannot answer, the decision follows `RatePolicy.fail_open`
and says so (`store_unavailable`).
"""

from __future__ import annotations

import builtins
import fnmatch
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from mcpsec.core.async_bridge import in_thread
from mcpsec.core.audit import NO_AUDIT, Audit, Outcome, audited
from mcpsec.core.clock import to_datetime
from mcpsec.core.durations import check_lifetime
from mcpsec.core.errors import ConfigError, InvalidInputError, NotFoundError, StoreError
from mcpsec.store import BucketLevel, BucketReply, BucketRequest, Store
from mcpsec.store.interface import check_id

OVERRIDE_KIND: Final = "rate_override"
IDENTITY_BUCKET: Final = "identity"
TOOL_PREFIX: Final = "tool:"
MAX_CAPACITY: Final = 1e12
MAX_BUILT: Final = 4096  # decisions' bucket lists kept built; all dropped when full


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, order=True)
class Limit:
    """Ordered by generosity: the sustained rate first, then the burst."""

    refill_per_second: float
    capacity: float

    def __post_init__(self) -> None:
        if not (_number(self.capacity) and 1 <= self.capacity <= MAX_CAPACITY):
            # Below 1, a bucket could never hold one request: a mistake, never a limit.
            raise InvalidInputError(
                f"capacity must be at least 1 (and at most 1e12), got {self.capacity!r}",
                field="capacity",
            )
        if not (_number(self.refill_per_second) and 0 <= self.refill_per_second <= MAX_CAPACITY):
            raise InvalidInputError(
                f"refill must be 0 or more tokens a second, got {self.refill_per_second!r}",
                field="refill",
            )

    @classmethod
    def of(cls, capacity: float, refill_per_second: float) -> Limit:
        return cls(refill_per_second, capacity)


DEFAULT_LIMITS: Final[Mapping[str, Limit]] = {
    "guest": Limit.of(50, 1),
    "user": Limit.of(200, 5),
    "premium": Limit.of(1000, 20),
    "admin": Limit.of(5000, 100),
}


@dataclass(frozen=True)
class RatePolicy:
    roles: Mapping[str, Limit] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    default_role: str = "guest"  # whose limit applies when none of a principal's roles has one
    fail_open: bool = True  # the answer when the store cannot be reached

    def __post_init__(self) -> None:
        if self.default_role not in self.roles:
            raise ConfigError(
                f"rate.default_role {self.default_role!r} has no [rate.roles.{self.default_role}]"
            )

    def limit_for(self, roles: Iterable[str]) -> tuple[Limit, str]:
        """The most generous limit among the roles, and whose it is."""
        found = [(self.roles[r], r) for r in roles if r in self.roles]
        if not found:
            return self.roles[self.default_role], self.default_role
        return max(found)


@dataclass(frozen=True)
class Decision:
    allowed: bool = field(metadata={"essential": True})
    limit: int  # the capacity of the bucket that binds (RateLimit-Limit)
    remaining: int  # whole tokens left in it (RateLimit-Remaining)
    retry_after: float | None  # seconds until a retry could pass; 0 when allowed; None: never
    reset_after: float | None  # seconds until the binding bucket is full; None: never
    policy: str  # where the identity's limit came from: "role:user", "override", "explicit"
    store_unavailable: bool = False  # the store did not answer: this follows fail_open
    buckets: tuple[BucketLevel, ...] = ()


@dataclass(frozen=True)
class BucketView:
    """What `rate show` prints: the level now, without consuming."""

    identity: str = field(metadata={"essential": True})
    tokens: float
    capacity: float
    refill_per_second: float
    seconds_until_full: float | None  # None: never (refill 0)
    policy: str
    override: Override | None


@dataclass(frozen=True)
class Override:
    identity: str = field(metadata={"essential": True})
    capacity: float
    refill_per_second: float
    expires_at: datetime | None


@dataclass(frozen=True)
class BucketRow:
    identity: str = field(metadata={"essential": True})
    bucket: str  # "identity", or "tool:<name>"
    tokens: float
    capacity: float
    refill_per_second: float
    seconds_until_full: float | None


@dataclass(frozen=True)
class BucketListing:
    buckets: tuple[BucketRow, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class ResetResult:
    reset: int = field(metadata={"essential": True})  # buckets that were not full


@dataclass(frozen=True)
class PolicyRow:
    role: str = field(metadata={"essential": True})
    capacity: float
    refill_per_second: float
    default: bool


def check_identity(identity: str) -> str:
    return check_id(identity, "identity")


def parse_cost(cost: float) -> float:
    if not _number(cost) or cost <= 0:
        raise InvalidInputError(f"cost must be more than 0, got {cost!r}", field="cost")
    return cost


class RateLimiter:
    """The rate-limit rules over any Store."""

    def __init__(
        self,
        store: Store | Callable[[], Store],
        policy: RatePolicy | None = None,
        audit: Audit = NO_AUDIT,
    ) -> None:
        self.audit = audit
        self._store = store
        self._opened: Store | None = None
        self.policy = policy or RatePolicy()
        self._built: dict[tuple[Any, ...], tuple[tuple[BucketRequest, ...], str]] = {}

    @property
    def store(self) -> Store:
        if self._opened is None:
            self._opened = self._store() if callable(self._store) else self._store
        return self._opened

    # -- decide ----------------------------------------------------------------------------

    def check(
        self,
        identity: str,
        *,
        roles: Iterable[str] = (),
        limit: Limit | None = None,
        cost: float = 1.0,
        tools: Sequence[tuple[str, Limit]] = (),
    ) -> Decision:
        """Charge `cost` to the identity's bucket (and each tool bucket), all or nothing.

        `limit` replaces the role policy (and any override) for this call; otherwise the
        identity's override applies if it has one, else its most generous role's limit.
        """
        requests, source = self._requests(identity, roles, limit, cost, tools)
        try:
            reply = self.store.take_buckets(
                identity, requests, override_kind=OVERRIDE_KIND if limit is None else None
            )
        except StoreError:
            return self._unavailable(requests, source)
        decision = _decision(reply, requests, source)
        if not decision.allowed:  # an allowed request is the server's own event to record
            self._audit_limited(identity, decision, cost)
        return decision

    def _audit_limited(self, identity: str, decision: Decision, cost: float) -> None:
        self.audit.verdict(
            "rate.limited",
            Outcome.DENIED,
            subject=identity,
            reason="no tokens left" if decision.retry_after is not None else "quota spent",
            details={"limit": decision.limit, "cost": cost, "retry_after": decision.retry_after},
        )

    def _requests(
        self,
        identity: str,
        roles: Iterable[str],
        limit: Limit | None,
        cost: float,
        tools: Sequence[tuple[str, Limit]],
    ) -> tuple[tuple[BucketRequest, ...], str]:
        """The buckets a decision charges, and where the identity's limit came from; built
        once per distinct call and kept, since a server asks the same question all day."""
        memo = (identity, tuple(roles), limit, cost, tuple(tools))
        found = self._built.get(memo)
        if found is None:
            found = self._build(identity, memo[1], limit, cost, memo[4])
            if len(self._built) >= MAX_BUILT:
                self._built.clear()
            self._built[memo] = found
        return found

    def _build(
        self,
        identity: str,
        roles: Iterable[str],
        limit: Limit | None,
        cost: float,
        tools: Sequence[tuple[str, Limit]],
    ) -> tuple[tuple[BucketRequest, ...], str]:
        check_identity(identity)
        parse_cost(cost)
        if limit is None:
            chosen, role = self.policy.limit_for(roles)
            source = f"role:{role}"
        else:
            chosen, source = limit, "explicit"
        requests = [_request(IDENTITY_BUCKET, chosen, cost, overridable=limit is None)]
        for tool, tool_limit in tools:
            requests.append(_request(TOOL_PREFIX + check_id(tool, "tool"), tool_limit, cost))
        for r in requests:
            if cost > r.capacity:
                raise InvalidInputError(
                    f"cost {_num(cost)} is more than the capacity {_num(r.capacity)} of "
                    f"bucket {r.name}: it could never be allowed",
                    field="cost",
                )
        return tuple(requests), source

    def _unavailable(self, requests: Sequence[BucketRequest], source: str) -> Decision:
        first = requests[0]
        allowed = self.policy.fail_open
        return Decision(
            allowed,
            int(first.capacity),
            0,
            0.0 if allowed else None,
            None,
            source,
            store_unavailable=True,
        )

    # -- inspect ---------------------------------------------------------------------------

    def show(
        self, identity: str, *, roles: Iterable[str] = (), limit: Limit | None = None
    ) -> BucketView:
        """The identity's bucket now; consumes nothing. An identity never seen is full."""
        requests, source = self._requests(identity, roles, limit, 1.0, ())
        override = self.get_override(identity) if limit is None else None
        reply = self.store.take_buckets(
            identity,
            requests,
            consume=False,
            override_kind=OVERRIDE_KIND if limit is None else None,
        )
        level = reply.levels[0]
        return BucketView(
            identity,
            level.tokens,
            level.capacity,
            level.refill,
            level.reset_after,
            "override" if override else source,
            override,
        )

    def list(
        self, *, match: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> BucketListing:
        """Buckets that are not full, by identity; at most ten pages' worth are examined per
        call when filtering, so a page may come back short with a cursor to go on."""
        if not 1 <= limit <= 1000:
            raise InvalidInputError("limit must be between 1 and 1000", field="limit")
        rows: builtins.list[BucketRow] = []
        position = cursor
        for _ in range(10):
            page = self.store.list_buckets(cursor=position, limit=limit)
            for entry in page.buckets:
                position = f"{entry.group} {entry.level.name}"
                if match is None or fnmatch.fnmatchcase(entry.group, match):
                    rows.append(_row(entry.group, entry.level))
                    if len(rows) == limit:
                        return BucketListing(tuple(rows), position)
            if page.next_cursor is None:
                return BucketListing(tuple(rows), None)
            position = page.next_cursor
        return BucketListing(tuple(rows), position)

    def policies(self) -> builtins.list[PolicyRow]:
        return [
            PolicyRow(role, lim.capacity, lim.refill_per_second, role == self.policy.default_role)
            for role, lim in sorted(self.policy.roles.items(), key=lambda kv: kv[1])
        ]

    # -- change ----------------------------------------------------------------------------

    def reset(self, identity: str) -> ResetResult:
        """Full again: every bucket of the identity is forgotten."""
        check_identity(identity)
        with audited(self.audit, "rate.reset", subject=identity):
            return ResetResult(self.store.reset_buckets(identity))

    def reset_matching(self, match: str) -> ResetResult:
        """Reset every identity whose name matches the glob."""
        if not match:
            raise InvalidInputError("--match needs a pattern, like 'bot-*'", field="match")
        with audited(self.audit, "rate.reset", details={"match": match}):
            return self._reset_matching(match)

    def _reset_matching(self, match: str) -> ResetResult:
        identities: set[str] = set()
        cursor: str | None = None
        while True:
            page = self.store.list_buckets(cursor=cursor, limit=1000)
            identities |= {e.group for e in page.buckets if fnmatch.fnmatchcase(e.group, match)}
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return ResetResult(sum(self.store.reset_buckets(i) for i in sorted(identities)))

    def set_override(self, identity: str, limit: Limit, *, ttl: float | None = None) -> Override:
        check_identity(identity)
        check_lifetime(ttl)
        details = {"capacity": limit.capacity, "refill": limit.refill_per_second, "ttl": ttl}
        with audited(self.audit, "rate.override_set", subject=identity, details=details):
            return self._set_override(identity, limit, ttl)

    def _set_override(self, identity: str, limit: Limit, ttl: float | None) -> Override:
        self.store.put(
            OVERRIDE_KIND,
            identity,
            {"capacity": limit.capacity, "refill": limit.refill_per_second},
            ttl=ttl,
        )
        found = self.get_override(identity)
        if found is None:  # expired at once: only a tiny ttl does that
            raise InvalidInputError("the override expired as it was set; give a longer --ttl")
        return found

    def unset_override(self, identity: str) -> Override:
        found = self.get_override(identity)
        if found is None:
            raise NotFoundError(f"no rate override for {identity}")
        with audited(self.audit, "rate.override_unset", subject=identity):
            if not self.store.delete(OVERRIDE_KIND, identity):
                raise NotFoundError(f"no rate override for {identity}")
        return found

    def get_override(self, identity: str) -> Override | None:
        record = self.store.get(OVERRIDE_KIND, check_identity(identity))
        if record is None:
            return None
        fields = record.fields
        expires = to_datetime(record.expires_at) if record.expires_at else None
        return Override(identity, float(fields["capacity"]), float(fields["refill"]), expires)


def busiest(
    limiter: RateLimiter, *, match: str | None = None, top: int = 20, scan: int = 10_000
) -> builtins.list[BucketRow]:
    """The `top` emptiest buckets (fewest tokens for their capacity) among the first `scan`
    that are not full: what `rate watch` shows. Bounded, so a refresh costs what it shows."""
    rows: builtins.list[BucketRow] = []
    cursor: str | None = None
    while len(rows) < scan:
        page = limiter.list(match=match, limit=1000, cursor=cursor)
        rows += page.buckets
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return sorted(rows, key=lambda r: (r.tokens / r.capacity, r.identity, r.bucket))[:top]


class AsyncRateLimiter:
    """The same rules for asyncio servers. `check`, on every request, awaits the store's
    async take (no worker thread on Redis); the rest run the sync code in a thread."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.show = in_thread(limiter.show)
        self.reset = in_thread(limiter.reset)

    async def check(
        self,
        identity: str,
        *,
        roles: Iterable[str] = (),
        limit: Limit | None = None,
        cost: float = 1.0,
        tools: Sequence[tuple[str, Limit]] = (),
    ) -> Decision:
        limiter = self.limiter
        requests, source = limiter._requests(identity, roles, limit, cost, tools)
        try:
            reply = await limiter.store.take_buckets_async(
                identity, requests, override_kind=OVERRIDE_KIND if limit is None else None
            )
        except StoreError:
            return limiter._unavailable(requests, source)
        decision = _decision(reply, requests, source)
        if not decision.allowed:
            limiter._audit_limited(identity, decision, cost)  # queued, never waited for
        return decision

    async def aclose(self) -> None:
        await self.limiter.store.aclose()


def _request(name: str, limit: Limit, cost: float, *, overridable: bool = False) -> BucketRequest:
    return BucketRequest(name, limit.capacity, limit.refill_per_second, cost, overridable)


def _decision(reply: BucketReply, requests: Sequence[BucketRequest], source: str) -> Decision:
    """One answer from several buckets: the one with the fewest whole tokens left binds."""
    levels = reply.levels
    binding = min(levels, key=lambda lv: (math.floor(lv.tokens + 1e-9), lv.tokens))
    if reply.allowed:
        retry: float | None = 0.0
    else:
        waits = [lv.retry_after for lv in levels]
        retry = None if any(w is None for w in waits) else max(w or 0.0 for w in waits)
    return Decision(
        reply.allowed,
        int(binding.capacity),
        max(0, math.floor(binding.tokens + 1e-9)),
        retry,
        binding.reset_after,
        "override" if levels[0].overridden else source,
        buckets=levels,
    )


def _row(identity: str, level: BucketLevel) -> BucketRow:
    return BucketRow(
        identity, level.name, level.tokens, level.capacity, level.refill, level.reset_after
    )


def _num(value: float) -> str:
    return f"{value:g}"
