"""RateLimiter on every backend: which limit applies, what a decision says, overrides, per-tool
buckets, reset and listing, failing open or closed; then the bucket arithmetic as properties."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcpsec.core.clock import ManualClock
from mcpsec.core.errors import (
    ConfigError,
    InvalidInputError,
    NotFoundError,
    StoreUnavailableError,
)
from mcpsec.core.ratelimit import (
    AsyncRateLimiter,
    Decision,
    Limit,
    Override,
    RateLimiter,
    RatePolicy,
)
from mcpsec.store import BucketRequest, Store, open_store


@pytest.fixture
def limiter(store: Store) -> RateLimiter:
    return RateLimiter(store)


def answer(decision: Decision) -> tuple[Any, ...]:
    """What a server acts on, without the raw bucket levels."""
    return (
        decision.allowed,
        decision.limit,
        decision.remaining,
        decision.retry_after,
        decision.policy,
        decision.store_unavailable,
    )


def tokens(limiter: RateLimiter, identity: str, bucket: str, capacity: float) -> float:
    """A bucket's level now, read from the store without charging it."""
    reply = limiter.store.take_buckets(
        identity, [BucketRequest(bucket, capacity, 0.0)], consume=False
    )
    return reply.levels[0].tokens


# --- which limit applies -----------------------------------------------------------------------


@pytest.mark.parametrize("roles", [["guest", "user"], ["user", "guest"], ["user", "nobody"]])
def test_the_most_generous_role_wins(limiter: RateLimiter, roles: list[str]) -> None:
    decision = limiter.check("alice", roles=roles)
    assert decision.allowed
    assert (decision.limit, decision.remaining, decision.policy) == (200, 199, "role:user")
    assert decision.buckets[0].refill == 5.0


def test_admin_beats_premium_beats_user(limiter: RateLimiter) -> None:
    assert limiter.check("a", roles=["user", "admin", "premium"]).limit == 5000
    assert limiter.check("b", roles=["user", "premium"]).policy == "role:premium"


@pytest.mark.parametrize("roles", [[], ["nobody"], ["nobody", "else"]])
def test_unknown_or_no_roles_fall_back_to_the_default_role(
    limiter: RateLimiter, roles: list[str]
) -> None:
    decision = limiter.check("mallory", roles=roles)
    assert (decision.limit, decision.remaining, decision.policy) == (50, 49, "role:guest")
    assert decision.buckets[0].refill == 1.0


def test_a_policy_with_another_default_role(store: Store) -> None:
    policy = RatePolicy({"free": Limit.of(5, 0), "paid": Limit.of(100, 0)}, default_role="free")
    limiter = RateLimiter(store, policy)
    assert answer(limiter.check("x", roles=["guest"]))[1:3] == (5, 4)
    assert limiter.check("y", roles=["paid", "free"]).policy == "role:paid"
    with pytest.raises(ConfigError, match="nobody"):
        RatePolicy({"free": Limit.of(5, 0)}, default_role="nobody")


def test_an_explicit_limit_ignores_roles_and_overrides(limiter: RateLimiter) -> None:
    limiter.set_override("bob", Limit.of(3, 0))
    decision = limiter.check("bob", roles=["admin"], limit=Limit.of(7, 0))
    assert answer(decision) == (True, 7, 6, 0.0, "explicit", False)
    assert decision.buckets[0].capacity == 7.0


def test_an_override_beats_the_roles(limiter: RateLimiter) -> None:
    limiter.set_override("carol", Limit.of(3, 0))
    decisions = [limiter.check("carol", roles=["admin"]) for _ in range(4)]
    assert [answer(d) for d in decisions] == [
        (True, 3, 2, 0.0, "override", False),
        (True, 3, 1, 0.0, "override", False),
        (True, 3, 0, 0.0, "override", False),
        (False, 3, 0, None, "override", False),
    ]
    assert limiter.check("dave", roles=["admin"]).policy == "role:admin"  # only carol's


# --- overrides ---------------------------------------------------------------------------------


def test_an_override_is_set_read_and_unset(limiter: RateLimiter) -> None:
    assert limiter.get_override("erin") is None
    made = limiter.set_override("erin", Limit.of(5, 0.5))
    assert made == Override("erin", 5.0, 0.5, None)
    assert limiter.get_override("erin") == made
    view = limiter.show("erin", roles=["user"])
    assert (view.capacity, view.refill_per_second, view.policy, view.override) == (
        5.0,
        0.5,
        "override",
        made,
    )
    assert limiter.unset_override("erin") == made
    assert limiter.get_override("erin") is None
    assert limiter.show("erin", roles=["user"]).policy == "role:user"
    assert limiter.check("erin", roles=["user"]).limit == 200
    with pytest.raises(NotFoundError):
        limiter.unset_override("erin")


def test_unsetting_an_override_that_never_was_is_not_found(limiter: RateLimiter) -> None:
    with pytest.raises(NotFoundError, match="nobody"):
        limiter.unset_override("nobody")


def test_setting_an_override_again_replaces_it(limiter: RateLimiter) -> None:
    limiter.set_override("frank", Limit.of(5, 0))
    limiter.set_override("frank", Limit.of(9, 1))
    assert limiter.check("frank").limit == 9


def test_an_override_equal_to_the_role_limit_is_still_reported_as_the_override(
    limiter: RateLimiter,
) -> None:
    limiter.set_override("fay", Limit.of(200, 5))  # what role user gives anyway
    assert limiter.show("fay", roles=["user"]).policy == "override"
    assert limiter.check("fay", roles=["user"]).policy == "override"


def test_an_override_with_a_ttl_carries_its_expiry(limiter: RateLimiter) -> None:
    made = limiter.set_override("gina", Limit.of(5, 0), ttl=3600)
    assert isinstance(made.expires_at, datetime)
    assert made.expires_at.tzinfo is not None
    assert abs(made.expires_at.timestamp() - (limiter.store.now() + 3600)) < 5


def test_an_override_with_a_ttl_expires(limiter: RateLimiter) -> None:
    limiter.set_override("hank", Limit.of(2, 0), ttl=0.4)
    assert limiter.check("hank").policy == "override"
    time.sleep(0.6)
    assert limiter.get_override("hank") is None
    decision = limiter.check("hank")
    assert (decision.limit, decision.policy) == (50, "role:guest")
    # the limits changed, the level did not jump: it holds what it held, refilled since
    assert decision.remaining <= 2


@pytest.mark.parametrize("ttl", [0, -1, math.nan])
def test_an_override_ttl_must_be_positive(limiter: RateLimiter, ttl: float) -> None:
    with pytest.raises(InvalidInputError):
        limiter.set_override("ivan", Limit.of(5, 0), ttl=ttl)
    assert limiter.get_override("ivan") is None


# --- show -----------------------------------------------------------------------------------


def test_show_reports_a_full_bucket_for_an_identity_never_seen(limiter: RateLimiter) -> None:
    view = limiter.show("stranger")
    assert (view.identity, view.tokens, view.capacity, view.refill_per_second) == (
        "stranger",
        50.0,
        50.0,
        1.0,
    )
    assert (view.seconds_until_full, view.policy, view.override) == (0.0, "role:guest", None)
    assert limiter.show("stranger", roles=["user"]).capacity == 200.0
    assert limiter.store.list_buckets().buckets == ()  # showing made no bucket


def test_show_does_not_consume(limiter: RateLimiter) -> None:
    quota = Limit.of(10, 0)
    limiter.check("judy", limit=quota, cost=3)
    views = [limiter.show("judy", limit=quota) for _ in range(5)]
    assert {v.tokens for v in views} == {7.0}
    assert views[0].policy == "explicit"
    assert views[0].seconds_until_full is None  # refill 0: never full again
    assert limiter.check("judy", limit=quota).remaining == 6


def test_show_of_a_refilling_bucket_says_when_it_is_full(limiter: RateLimiter) -> None:
    limit = Limit.of(10, 2)
    limiter.check("kim", limit=limit, cost=10)
    view = limiter.show("kim", limit=limit)
    assert view.tokens < 1
    assert view.seconds_until_full == pytest.approx((10 - view.tokens) / 2)


# --- decisions ---------------------------------------------------------------------------------


def test_a_decision_counts_down_then_refuses(limiter: RateLimiter) -> None:
    quota = Limit.of(3, 0)
    decisions = [limiter.check("leo", limit=quota) for _ in range(4)]
    assert [(d.allowed, d.remaining, d.retry_after) for d in decisions] == [
        (True, 2, 0.0),
        (True, 1, 0.0),
        (True, 0, 0.0),
        (False, 0, None),  # no refill: a retry never passes
    ]
    assert {d.limit for d in decisions} == {3}
    assert [d.reset_after for d in decisions] == [None] * 4  # never full again


def test_retry_after_is_the_real_refill_time(limiter: RateLimiter) -> None:
    limit = Limit.of(2, 0.5)
    first = limiter.check("mia", limit=limit)
    assert first.allowed
    assert first.reset_after == pytest.approx(2.0, abs=0.01)  # one token at 0.5/s
    assert limiter.check("mia", limit=limit).allowed
    refused = limiter.check("mia", limit=limit)
    assert not refused.allowed
    assert refused.remaining == 0
    held = refused.buckets[0].tokens
    assert 0 <= held < 0.5  # what refilled in the moments between the calls
    assert refused.retry_after == pytest.approx((1 - held) / 0.5)
    assert refused.retry_after is not None
    assert 1.0 < refused.retry_after <= 2.0  # not a constant 60
    assert refused.reset_after == pytest.approx((2 - held) / 0.5)


def test_remaining_is_whole_tokens(limiter: RateLimiter) -> None:
    limit = Limit.of(10, 0)
    assert limiter.check("ned", limit=limit, cost=2.5).remaining == 7  # 7.5 left
    assert limiter.check("ned", limit=limit, cost=0.5).remaining == 7  # 7.0 left


def test_a_cost_above_one_is_charged_whole_or_not_at_all(limiter: RateLimiter) -> None:
    quota = Limit.of(10, 0)
    assert answer(limiter.check("olga", limit=quota, cost=4))[:4] == (True, 10, 6, 0.0)
    refused = limiter.check("olga", limit=quota, cost=7)
    assert answer(refused)[:4] == (False, 10, 6, None)
    assert answer(limiter.check("olga", limit=quota, cost=6))[:3] == (True, 10, 0)


def test_a_refused_cost_waits_for_the_whole_cost(limiter: RateLimiter) -> None:
    limit = Limit.of(10, 2)
    limiter.check("pat", limit=limit, cost=10)
    refused = limiter.check("pat", limit=limit, cost=4)
    held = refused.buckets[0].tokens
    assert not refused.allowed
    assert refused.retry_after == pytest.approx((4 - held) / 2)
    assert refused.retry_after is not None
    assert 1.5 < refused.retry_after <= 2.0


@pytest.mark.parametrize("cost", [0, -1, math.nan, math.inf, 11])
def test_an_impossible_cost_is_refused_before_any_charge(limiter: RateLimiter, cost: float) -> None:
    with pytest.raises(InvalidInputError):
        limiter.check("quinn", limit=Limit.of(10, 0), cost=cost)
    assert limiter.show("quinn", limit=Limit.of(10, 0)).tokens == 10.0
    assert limiter.store.list_buckets().buckets == ()


def test_a_cost_above_a_tool_capacity_is_refused(limiter: RateLimiter) -> None:
    with pytest.raises(InvalidInputError, match="tool:small"):
        limiter.check("rose", limit=Limit.of(100, 0), cost=5, tools=[("small", Limit.of(4, 0))])
    assert limiter.store.list_buckets().buckets == ()


@pytest.mark.parametrize("identity", ["", "with space", "{tag}", "a\nb"])
def test_a_bad_identity_is_refused(limiter: RateLimiter, identity: str) -> None:
    with pytest.raises(InvalidInputError):
        limiter.check(identity)
    with pytest.raises(InvalidInputError):
        limiter.show(identity)


@pytest.mark.parametrize(
    ("capacity", "refill"),
    [(0, 1), (0.5, 1), (-1, 1), (2e12, 1), (5, -1), (5, math.inf), (math.nan, 1)],
)
def test_a_limit_out_of_range_is_refused(capacity: float, refill: float) -> None:
    with pytest.raises(InvalidInputError):
        Limit.of(capacity, refill)


# --- per-tool buckets -----------------------------------------------------------------------


def test_a_tool_bucket_binds_when_it_has_fewer_tokens(limiter: RateLimiter) -> None:
    decision = limiter.check("sam", limit=Limit.of(10, 0), tools=[("write", Limit.of(3, 0))])
    assert answer(decision) == (True, 3, 2, 0.0, "explicit", False)
    assert [(lv.name, lv.tokens) for lv in decision.buckets] == [
        ("identity", 9.0),
        ("tool:write", 2.0),
    ]


def test_a_tool_refusal_charges_neither_the_tool_nor_the_identity(limiter: RateLimiter) -> None:
    identity, tool = Limit.of(10, 0), [("write", Limit.of(3, 0))]
    assert limiter.check("tess", limit=identity, cost=2, tools=tool).allowed  # 8 and 1
    refused = limiter.check("tess", limit=identity, cost=2, tools=tool)
    assert not refused.allowed
    assert (refused.limit, refused.remaining) == (3, 1)
    assert tokens(limiter, "tess", "identity", 10) == 8.0
    assert tokens(limiter, "tess", "tool:write", 3) == 1.0
    # a call without the tool is still served from the identity's bucket
    assert limiter.check("tess", limit=identity, cost=2).remaining == 6


def test_an_identity_refusal_charges_no_tool(limiter: RateLimiter) -> None:
    identity = Limit.of(3, 0)
    limiter.check("uma", limit=identity, cost=3)
    refused = limiter.check("uma", limit=identity, tools=[("read", Limit.of(5, 0))])
    assert not refused.allowed
    assert (refused.limit, refused.remaining) == (3, 0)
    assert tokens(limiter, "uma", "tool:read", 5) == 5.0
    assert ("uma", "tool:read") not in {
        (row.identity, row.bucket) for row in limiter.list().buckets
    }


def test_tools_of_one_identity_are_separate_buckets(limiter: RateLimiter) -> None:
    identity = Limit.of(100, 0)
    for _ in range(2):
        limiter.check("vic", limit=identity, tools=[("a", Limit.of(2, 0))])
    assert not limiter.check("vic", limit=identity, tools=[("a", Limit.of(2, 0))]).allowed
    assert limiter.check("vic", limit=identity, tools=[("b", Limit.of(2, 0))]).allowed


def test_an_override_does_not_change_tool_limits(limiter: RateLimiter) -> None:
    limiter.set_override("walt", Limit.of(1000, 0))
    decision = limiter.check("walt", tools=[("write", Limit.of(2, 0))])
    assert decision.policy == "override"
    assert [(lv.name, lv.capacity) for lv in decision.buckets] == [
        ("identity", 1000.0),
        ("tool:write", 2.0),
    ]


# --- reset and listing -----------------------------------------------------------------------


def test_reset_makes_an_identity_full_again(limiter: RateLimiter) -> None:
    quota = Limit.of(5, 0)
    limiter.check("xena", limit=quota, cost=5, tools=[("t", Limit.of(5, 0))])
    assert not limiter.check("xena", limit=quota).allowed
    assert limiter.reset("xena").reset == 2  # the identity's bucket and its tool bucket
    assert limiter.show("xena", limit=quota).tokens == 5.0
    assert limiter.check("xena", limit=quota).remaining == 4
    assert limiter.reset("never-seen").reset == 0


def test_reset_matching_resets_the_identities_the_glob_names(limiter: RateLimiter) -> None:
    quota = Limit.of(5, 0)
    for identity in ("bot-1", "bot-2", "bot-10", "human", "robot-1"):
        limiter.check(identity, limit=quota, cost=2)
    assert limiter.reset_matching("bot-*").reset == 3
    assert [row.identity for row in limiter.list().buckets] == ["human", "robot-1"]
    assert limiter.reset_matching("bot-*").reset == 0
    assert limiter.reset_matching("?uman").reset == 1
    with pytest.raises(InvalidInputError):
        limiter.reset_matching("")


def test_list_shows_buckets_that_are_not_full(limiter: RateLimiter) -> None:
    quota = Limit.of(5, 0)
    limiter.check("yara", limit=quota, cost=2, tools=[("write", Limit.of(4, 0))])
    limiter.check("zed", limit=quota)
    limiter.show("ann", limit=quota)  # looking makes no bucket
    rows = limiter.list().buckets
    assert [(r.identity, r.bucket, r.tokens, r.capacity) for r in rows] == [
        ("yara", "identity", 3.0, 5.0),
        ("yara", "tool:write", 2.0, 4.0),
        ("zed", "identity", 4.0, 5.0),
    ]
    assert {r.seconds_until_full for r in rows} == {None}


def test_list_with_a_glob_pages_through_the_matches(limiter: RateLimiter) -> None:
    quota = Limit.of(5, 0)
    for n in range(12):
        limiter.check(f"bot-{n:02d}", limit=quota)
        limiter.check(f"user-{n:02d}", limit=quota)
    found: list[str] = []
    cursor: str | None = None
    while True:
        page = limiter.list(match="user-*", limit=5, cursor=cursor)
        assert len(page.buckets) <= 5
        found += [row.identity for row in page.buckets]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert found == [f"user-{n:02d}" for n in range(12)]
    assert [r.identity for r in limiter.list(match="bot-0[12]").buckets] == ["bot-01", "bot-02"]
    with pytest.raises(InvalidInputError):
        limiter.list(limit=0)


def test_policies_are_listed_by_generosity(limiter: RateLimiter) -> None:
    rows = limiter.policies()
    assert [(r.role, r.capacity, r.refill_per_second, r.default) for r in rows] == [
        ("guest", 50, 1, True),
        ("user", 200, 5, False),
        ("premium", 1000, 20, False),
        ("admin", 5000, 100, False),
    ]


# --- when the store cannot answer -------------------------------------------------------------


def store_down(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("the store went away")

    async def down_async(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("the store went away")

    monkeypatch.setattr(store, "take_buckets", down)
    monkeypatch.setattr(store, "take_buckets_async", down_async)


def test_a_store_that_cannot_answer_fails_open_by_default(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = RateLimiter(store)
    store_down(store, monkeypatch)
    decision = limiter.check("amy", roles=["user"])
    assert answer(decision) == (True, 200, 0, 0.0, "role:user", True)


def test_a_store_that_cannot_answer_fails_closed_when_told(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = RateLimiter(store, RatePolicy(fail_open=False))
    store_down(store, monkeypatch)
    decision = limiter.check("amy", roles=["user"])
    assert (decision.allowed, decision.store_unavailable) == (False, True)
    assert decision.remaining == 0
    with pytest.raises(StoreUnavailableError):
        limiter.show("amy")  # an operator's question is answered, not guessed


def test_fail_open_and_closed_through_the_async_check(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_down(store, monkeypatch)

    async def run(policy: RatePolicy) -> Decision:
        limiter = AsyncRateLimiter(RateLimiter(store, policy))
        try:
            return await limiter.check("amy", limit=Limit.of(10, 1))
        finally:
            await limiter.aclose()

    opened, closed = asyncio.run(run(RatePolicy())), asyncio.run(run(RatePolicy(fail_open=False)))
    assert answer(opened) == (True, 10, 0, 0.0, "explicit", True)
    assert (closed.allowed, closed.store_unavailable) == (False, True)


# --- async -----------------------------------------------------------------------------------


def test_the_async_check_gives_the_same_answers(limiter: RateLimiter) -> None:
    quota, tool = Limit.of(3, 0), [("t", Limit.of(1, 0))]
    # the only refilling limit comes first, so no answer depends on how long a call takes
    calls: list[dict[str, Any]] = [
        {"roles": ["premium"]},
        {"limit": quota, "cost": 2},
        {"limit": quota, "cost": 2},
        {"limit": quota, "tools": tool},
        {"limit": quota, "tools": tool},
        {"limit": quota},
    ]
    for identity in ("sync-o", "async-o"):
        limiter.set_override(identity, Limit.of(2, 0))
    sync = [answer(limiter.check(i, **kw)) for i in ("sync", "sync-o") for kw in calls]

    async def run() -> list[tuple[Any, ...]]:
        checker = AsyncRateLimiter(limiter)
        try:
            found = [
                answer(await checker.check(i, **kw)) for i in ("async", "async-o") for kw in calls
            ]
            assert (await checker.show("async", limit=quota)).tokens == 0.0
            assert (await checker.reset("async")).reset == 2  # the identity and tool t
            return found
        finally:
            await checker.aclose()

    assert asyncio.run(run()) == sync
    assert sync[:6] == [
        (True, 1000, 999, 0.0, "role:premium", False),
        (True, 3, 1, 0.0, "explicit", False),
        (False, 3, 1, None, "explicit", False),
        (True, 3, 0, 0.0, "explicit", False),  # both empty: the identity's bucket binds
        (False, 3, 0, None, "explicit", False),
        (False, 3, 0, None, "explicit", False),
    ]
    assert sync[6] == (True, 2, 1, 0.0, "override", False)
    assert limiter.show("async", limit=quota).tokens == 3.0


# --- properties (SQLite, with a clock that moves only when told) ------------------------------

_store_files = itertools.count()
START = 1_700_000_000.0

capacities = st.integers(min_value=1, max_value=50)
refills = st.one_of(st.just(0.0), st.floats(min_value=0.01, max_value=5.0), st.just(5.0))
steps = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=3.0), st.integers(min_value=1, max_value=3)),
    min_size=1,
    max_size=25,
)


def fresh_limiter(tmp_path_factory: pytest.TempPathFactory, clock: ManualClock) -> RateLimiter:
    folder = tmp_path_factory.mktemp(f"bucket{next(_store_files)}", numbered=True)
    return RateLimiter(open_store(f"sqlite:///{folder}/x.db", clock=clock))


@settings(max_examples=50, deadline=None)
@given(capacity=capacities, refill=refills, requests=steps)
def test_never_more_than_capacity_plus_refill_is_admitted(
    tmp_path_factory: pytest.TempPathFactory,
    capacity: int,
    refill: float,
    requests: list[tuple[float, int]],
) -> None:
    clock = ManualClock(START)
    limiter = fresh_limiter(tmp_path_factory, clock)
    limit = Limit.of(capacity, refill)
    admitted = 0.0
    held, since = float(capacity), START  # the bucket as the rules say it should be
    try:
        for wait, wanted in requests:
            clock.advance(wait)
            now = clock.now()
            model = min(capacity, held + (now - since) * refill)
            cost = min(wanted, capacity)
            decision = limiter.check("prop", limit=limit, cost=cost)
            if decision.allowed:
                assert model >= cost - 1e-6, "admitted without the tokens for it"
                admitted += cost
                held, since = model - cost, now
                assert decision.buckets[0].tokens == pytest.approx(held, abs=1e-6)
            else:
                assert model < cost + 1e-6, "refused while the tokens were there"
                if refill == 0:
                    assert decision.retry_after is None
                else:
                    assert decision.retry_after == pytest.approx((cost - model) / refill, abs=1e-6)
            assert admitted <= capacity + refill * (now - START) + 1e-6
    finally:
        limiter.store.close()


@settings(max_examples=50, deadline=None)
@given(
    capacity=capacities,
    # rates whose period 1/refill is exact in binary, so "exactly the rate" is exact
    refill=st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0, 8.0]),
    count=st.integers(min_value=1, max_value=40),
)
def test_a_stream_at_exactly_the_refill_rate_is_never_refused(
    tmp_path_factory: pytest.TempPathFactory, capacity: int, refill: float, count: int
) -> None:
    clock = ManualClock(START)
    limiter = fresh_limiter(tmp_path_factory, clock)
    limit = Limit.of(capacity, refill)
    try:
        for n in range(count):
            decision = limiter.check("steady", limit=limit)
            assert decision.allowed, f"request {n} refused at exactly the refill rate"
            assert decision.remaining == capacity - 1
            clock.advance(1 / refill)
    finally:
        limiter.store.close()


@settings(max_examples=25, deadline=None)
@given(
    capacity=st.integers(min_value=2, max_value=50),
    refill=st.floats(min_value=0.1, max_value=5.0),
    count=st.integers(min_value=1, max_value=40),
)
def test_a_stream_at_any_rate_with_room_for_a_burst_is_never_refused(
    tmp_path_factory: pytest.TempPathFactory, capacity: int, refill: float, count: int
) -> None:
    clock = ManualClock(START)
    limiter = fresh_limiter(tmp_path_factory, clock)
    limit = Limit.of(capacity, refill)
    try:
        for n in range(count):
            assert limiter.check("steady", limit=limit).allowed, f"request {n} refused"
            clock.advance(1 / refill)
    finally:
        limiter.store.close()
