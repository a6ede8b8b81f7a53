"""Token buckets in the store: all or nothing, by the store's clock, the same on every backend.

`take_buckets` charges every bucket of a decision or none; an absent bucket is full; limits
come from each call (or from an override record), so a changed policy applies at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING

import pytest
from mcpsec.core.errors import InvalidInputError, StoreError
from mcpsec.store import BucketLevel, BucketReply, BucketRequest, Store

if TYPE_CHECKING:
    from .conftest import StoreTarget

GROUP = "alice@example.com"
OVERRIDE = "rate_override"


def req(
    name: str, capacity: float, refill: float, cost: float = 1.0, *, overridable: bool = False
) -> BucketRequest:
    return BucketRequest(name, capacity, refill, cost, overridable)


def peek(store: Store, group: str, *requests: BucketRequest) -> BucketReply:
    return store.take_buckets(group, requests, consume=False)


def tokens_of(store: Store, group: str, name: str, capacity: float, refill: float = 0.0) -> float:
    """The level of one bucket now, without charging it."""
    return peek(store, group, req(name, capacity, refill)).levels[0].tokens


def listed(store: Store, limit: int = 100) -> list[tuple[str, str]]:
    """Every bucket the store lists, page by page, as (group, name)."""
    found: list[tuple[str, str]] = []
    cursor: str | None = None
    while True:
        page = store.list_buckets(cursor=cursor, limit=limit)
        found += [(entry.group, entry.level.name) for entry in page.buckets]
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


# --- taking ----------------------------------------------------------------------------------


def test_an_absent_bucket_is_full(store: Store) -> None:
    reply = peek(store, GROUP, req("identity", 10, 2, 3))
    assert reply.allowed
    assert reply.levels == (BucketLevel("identity", 10.0, 2.0, 10.0, 0.0, 0.0, False),)


def test_a_take_charges_its_cost(store: Store) -> None:
    first = store.take_buckets(GROUP, [req("identity", 10, 0, 3)])
    assert first.allowed
    assert first.levels[0].tokens == 7.0
    assert first.levels[0].existed is False
    second = store.take_buckets(GROUP, [req("identity", 10, 0, 4)])
    assert second.allowed
    assert (second.levels[0].tokens, second.levels[0].existed) == (3.0, True)
    assert tokens_of(store, GROUP, "identity", 10) == 3.0


def test_a_take_that_does_not_fit_is_refused_and_charges_nothing(store: Store) -> None:
    store.take_buckets(GROUP, [req("identity", 10, 0, 8)])
    reply = store.take_buckets(GROUP, [req("identity", 10, 0, 3)])
    assert not reply.allowed
    assert reply.levels[0].tokens == 2.0  # as it stands, not after a charge
    assert reply.levels[0].retry_after is None  # no refill: never
    assert tokens_of(store, GROUP, "identity", 10) == 2.0


def test_several_buckets_are_charged_all_or_nothing(store: Store) -> None:
    both = [req("identity", 10, 0, 2), req("tool:write", 3, 0, 2)]
    assert store.take_buckets(GROUP, both).allowed  # identity 8, tool 1
    reply = store.take_buckets(GROUP, both)  # the first bucket has enough, the second not
    assert not reply.allowed
    assert [lv.tokens for lv in reply.levels] == [8.0, 1.0]
    assert [lv.retry_after for lv in reply.levels] == [0.0, None]
    # the bucket that had enough kept every token
    assert tokens_of(store, GROUP, "identity", 10) == 8.0
    assert tokens_of(store, GROUP, "tool:write", 3) == 1.0
    # and a bucket absent before a refused take is still absent (full) after it
    reply = store.take_buckets(GROUP, [req("tool:read", 5, 0, 1), req("identity", 10, 0, 9)])
    assert not reply.allowed
    assert reply.levels[0].existed is False
    assert (GROUP, "tool:read") not in listed(store)


def test_a_refused_take_reports_when_it_could_pass(store: Store) -> None:
    store.take_buckets(GROUP, [req("identity", 10, 0.5, 10)])
    reply = store.take_buckets(GROUP, [req("identity", 10, 0.5, 4)])
    assert not reply.allowed
    (level,) = reply.levels
    assert level.tokens < 0.5  # a few milliseconds of refill at most
    assert level.retry_after == pytest.approx((4 - level.tokens) / 0.5)
    assert level.reset_after == pytest.approx((10 - level.tokens) / 0.5)
    assert level.retry_after is not None
    assert 7.0 < level.retry_after <= 8.0


def test_peeking_never_charges(store: Store) -> None:
    store.take_buckets(GROUP, [req("identity", 10, 0, 1)])
    for _ in range(5):
        reply = peek(store, GROUP, req("identity", 10, 0, 9), req("tool:x", 4, 0, 4))
        assert reply.allowed
        assert [lv.tokens for lv in reply.levels] == [9.0, 4.0]
    assert tokens_of(store, GROUP, "identity", 10) == 9.0
    assert listed(store) == [(GROUP, "identity")]  # the peeked tool bucket was never made


def test_buckets_refill_over_time_up_to_capacity(store: Store) -> None:
    start = time.monotonic()
    taken = store.take_buckets(
        GROUP,
        [
            req("fast", 10, 10, 10),  # empty now, 10 a second
            req("quota", 5, 0, 5),  # empty now, never refills
            req("burst", 2, 100, 1),  # full again within 10 ms
        ],
    )
    assert taken.allowed
    assert [lv.tokens for lv in taken.levels] == [0.0, 0.0, 1.0]
    time.sleep(0.3)
    reply = peek(store, GROUP, req("fast", 10, 10), req("quota", 5, 0), req("burst", 2, 100))
    elapsed = time.monotonic() - start
    fast, quota, burst = reply.levels
    assert 2.5 <= fast.tokens <= min(10.0, 10 * elapsed + 0.5)
    assert fast.reset_after == pytest.approx((10 - fast.tokens) / 10)
    assert quota.tokens == 0.0
    assert (quota.retry_after, quota.reset_after) == (None, None)
    assert not reply.allowed  # the quota bucket cannot pay even 1
    assert burst.tokens == 2.0  # never above capacity
    assert (burst.retry_after, burst.reset_after) == (0.0, 0.0)


def test_a_lowered_capacity_applies_at_once(store: Store) -> None:
    assert store.take_buckets(GROUP, [req("identity", 100, 0, 1)]).levels[0].tokens == 99.0
    lowered = peek(store, GROUP, req("identity", 10, 0))
    assert (lowered.levels[0].capacity, lowered.levels[0].tokens) == (10.0, 10.0)
    assert store.take_buckets(GROUP, [req("identity", 10, 0, 1)]).levels[0].tokens == 9.0
    # raising it again does not fill the bucket: it holds what it held
    raised = peek(store, GROUP, req("identity", 100, 0))
    assert (raised.levels[0].capacity, raised.levels[0].tokens) == (100.0, 9.0)


def test_an_override_replaces_the_limits_of_overridable_buckets_only(store: Store) -> None:
    store.put(OVERRIDE, GROUP, {"capacity": 3, "refill": 0})
    both = [req("identity", 10, 1, overridable=True), req("tool:x", 10, 1)]
    reply = store.take_buckets(GROUP, both, override_kind=OVERRIDE)
    assert reply.allowed
    identity, tool = reply.levels
    assert (identity.capacity, identity.refill, identity.tokens) == (3.0, 0.0, 2.0)
    assert (tool.capacity, tool.refill, tool.tokens) == (10.0, 1.0, 9.0)
    assert identity.reset_after is None  # the override's refill (0) applies

    # without override_kind the record is not read: the request's limits apply
    plain = peek(store, GROUP, req("identity", 10, 0, overridable=True))
    assert (plain.levels[0].capacity, plain.levels[0].tokens) == (10.0, 2.0)
    # another kind of record of that id is not an override
    other = store.take_buckets(
        GROUP, [req("spare", 10, 0, overridable=True)], consume=False, override_kind="other"
    )
    assert other.levels[0].capacity == 10.0

    store.take_buckets(GROUP, [req("identity", 10, 0, overridable=True)], override_kind=OVERRIDE)
    store.take_buckets(GROUP, [req("identity", 10, 0, overridable=True)], override_kind=OVERRIDE)
    refused = store.take_buckets(
        GROUP, [req("identity", 10, 0, overridable=True)], override_kind=OVERRIDE
    )
    assert not refused.allowed  # 3 from the override, not 10 from the request
    assert refused.levels[0].capacity == 3.0


def test_an_override_of_another_group_does_not_apply(store: Store) -> None:
    store.put(OVERRIDE, "bob", {"capacity": 1, "refill": 0})
    reply = store.take_buckets(
        GROUP, [req("identity", 10, 0, overridable=True)], override_kind=OVERRIDE
    )
    assert (reply.levels[0].capacity, reply.levels[0].tokens) == (10.0, 9.0)


def test_a_removed_override_stops_applying(store: Store) -> None:
    store.put(OVERRIDE, GROUP, {"capacity": 500, "refill": 0})
    wide = peek(store, GROUP, req("identity", 10, 0, overridable=True))
    assert wide.levels[0].capacity == 10.0  # peek without override_kind
    over = store.take_buckets(
        GROUP, [req("identity", 10, 0, overridable=True)], override_kind=OVERRIDE
    )
    assert over.levels[0].capacity == 500.0
    assert store.delete(OVERRIDE, GROUP)
    after = store.take_buckets(
        GROUP, [req("identity", 10, 0, overridable=True)], override_kind=OVERRIDE
    )
    assert (after.levels[0].capacity, after.levels[0].tokens) == (10.0, 9.0)


@pytest.mark.parametrize(
    "fields", [{"capacity": "lots", "refill": 1}, {"capacity": 5, "refill": [1]}]
)
def test_a_malformed_override_record_fails_as_a_store_error_or_is_ignored(
    store: Store,
    store_target: StoreTarget,
    request: pytest.FixtureRequest,
    fields: dict[str, object],
) -> None:
    store.put(OVERRIDE, GROUP, fields)  # written by hand, not through RateLimiter.set_override
    try:
        reply = store.take_buckets(
            GROUP, [req("identity", 10, 0, overridable=True)], override_kind=OVERRIDE
        )
    except StoreError:
        return
    assert reply.levels[0].capacity == 10.0


# --- reset and listing -----------------------------------------------------------------------


def test_reset_makes_named_buckets_or_a_whole_group_full(store: Store) -> None:
    for name in ("identity", "tool:a", "tool:b"):
        store.take_buckets(GROUP, [req(name, 10, 0, 4)])
    store.take_buckets("bob", [req("identity", 10, 0, 4)])

    assert store.reset_buckets(GROUP, ["tool:a", "tool:never-taken"]) == 1
    level = peek(store, GROUP, req("tool:a", 10, 0)).levels[0]
    assert (level.tokens, level.existed) == (10.0, False)
    assert tokens_of(store, GROUP, "tool:b", 10) == 6.0

    assert store.reset_buckets(GROUP) == 2
    assert [tokens_of(store, GROUP, n, 10) for n in ("identity", "tool:b")] == [10.0, 10.0]
    assert store.reset_buckets(GROUP) == 0
    assert tokens_of(store, "bob", "identity", 10) == 6.0  # another group is untouched
    assert listed(store) == [("bob", "identity")]


def test_a_group_reset_does_not_touch_a_group_whose_name_extends_it(store: Store) -> None:
    for group in ("team", "team-b", "team.c", "teamz"):
        store.take_buckets(group, [req("identity", 10, 0, 1)])
    assert store.reset_buckets("team") == 1
    assert listed(store) == [("team-b", "identity"), ("team.c", "identity"), ("teamz", "identity")]


def test_a_group_reset_forgets_buckets_with_any_name(
    store: Store, store_target: StoreTarget, request: pytest.FixtureRequest
) -> None:
    names = ["identity", "tool:é", "tool:ā", "ā-bucket", "日本"]
    for name in names:
        store.take_buckets(GROUP, [req(name, 10, 0, 1)])
    assert store.reset_buckets(GROUP) == len(names)
    assert listed(store) == []


def test_listing_pages_through_every_bucket_once_in_order(store: Store) -> None:
    created = [(f"group-{g}", f"tool:{n:02d}") for g in range(5) for n in range(5)]
    for group, name in reversed(created):  # written out of order on purpose
        store.take_buckets(group, [req(name, 10, 0, 3)])
    peek(store, "group-9", req("identity", 10, 0))  # a peek makes no bucket

    pages = []
    cursor: str | None = None
    while True:
        page = store.list_buckets(cursor=cursor, limit=10)
        pages.append(page)
        assert len(page.buckets) <= 10
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(pages) in (3, 4)  # 10, 10, 5 (and maybe an empty last page)
    seen = [(e.group, e.level.name) for page in pages for e in page.buckets]
    assert seen == sorted(created)
    for page in pages:
        for entry in page.buckets:
            assert (entry.level.tokens, entry.level.capacity, entry.level.refill) == (7.0, 10, 0)

    assert store.reset_buckets("group-2", ["tool:03"]) == 1
    assert store.reset_buckets("group-4") == 5
    remaining = listed(store, limit=7)
    gone = {("group-2", "tool:03")} | {("group-4", f"tool:{n:02d}") for n in range(5)}
    assert remaining == [b for b in sorted(created) if b not in gone]
    assert len(remaining) == 19


def test_listing_reports_the_level_now(store: Store) -> None:
    store.take_buckets(GROUP, [req("slow", 10, 0.01, 6)])
    (entry,) = store.list_buckets().buckets
    assert entry.group == GROUP
    assert entry.level.name == "slow"
    assert 4.0 <= entry.level.tokens < 4.1
    assert entry.level.reset_after == pytest.approx((10 - entry.level.tokens) / 0.01)


def test_a_very_slow_refill_is_accepted(
    store: Store, store_target: StoreTarget, request: pytest.FixtureRequest
) -> None:
    # one token given back every ten million years: in practice a hard quota (refill > 0
    # because an operator wrote a tiny rate, not 0); Limit and check_buckets accept it
    years = 1e7 * 365 * 86400
    reply = store.take_buckets(GROUP, [req("quota", 1000, 1 / years, 1)])
    assert reply.allowed
    assert reply.levels[0].tokens == pytest.approx(999.0)
    assert reply.levels[0].reset_after == pytest.approx(years)


# --- async -----------------------------------------------------------------------------------


def test_the_async_take_gives_the_same_answers(store: Store) -> None:
    steps: list[tuple[list[BucketRequest], bool]] = [
        ([req("identity", 5, 0, 2, overridable=True), req("tool:x", 3, 0, 2)], True),
        ([req("identity", 5, 0, 2, overridable=True), req("tool:x", 3, 0, 2)], True),
        ([req("identity", 5, 0, 2, overridable=True)], False),
        ([req("identity", 5, 0, 1, overridable=True), req("tool:y", 3, 0, 1)], True),
        ([req("identity", 5, 0, 2, overridable=True)], True),
        ([req("identity", 5, 0, 3, overridable=True)], True),
    ]
    store.put(OVERRIDE, "sync-group", {"capacity": 6, "refill": 0})
    store.put(OVERRIDE, "async-group", {"capacity": 6, "refill": 0})

    def shape(reply: BucketReply) -> tuple[object, ...]:
        levels = [
            (lv.name, lv.capacity, lv.tokens, lv.retry_after, lv.existed) for lv in reply.levels
        ]
        return (reply.allowed, *levels)

    sync = [
        shape(store.take_buckets("sync-group", r, consume=c, override_kind=OVERRIDE))
        for r, c in steps
    ]

    async def run() -> list[tuple[object, ...]]:
        try:
            return [
                shape(
                    await store.take_buckets_async(
                        "async-group", r, consume=c, override_kind=OVERRIDE
                    )
                )
                for r, c in steps
            ]
        finally:
            await store.aclose()

    assert [answer[0] for answer in sync] == [True, False, True, True, True, False]
    assert asyncio.run(run()) == sync
    # and what the async takes charged is what a sync peek sees
    for name, capacity in (("tool:x", 3), ("tool:y", 3)):
        assert tokens_of(store, "async-group", name, capacity) == 1.0 + (name == "tool:y")
    assert tokens_of(store, "async-group", "identity", 10) == 1.0
    assert {g for g, _ in listed(store)} == {"async-group", "sync-group"}
    assert sorted(n for g, n in listed(store) if g == "async-group") == [
        "identity",
        "tool:x",
        "tool:y",
    ]


def test_the_async_take_is_all_or_nothing(store: Store) -> None:
    async def run() -> BucketReply:
        try:
            await store.take_buckets_async(GROUP, [req("identity", 10, 0, 1)])
            return await store.take_buckets_async(
                GROUP, [req("identity", 10, 0, 5), req("tool:x", 4, 0, 5)]
            )
        finally:
            await store.aclose()

    reply = asyncio.run(run())
    assert not reply.allowed
    assert tokens_of(store, GROUP, "identity", 10) == 9.0
    assert tokens_of(store, GROUP, "tool:x", 4) == 4.0


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "requests"),
    [
        pytest.param(GROUP, [], id="no-buckets"),
        pytest.param(GROUP, [req("a", 5, 1), req("a", 5, 1)], id="duplicate-name"),
        pytest.param(GROUP, [req("a", 0, 1)], id="capacity-0"),
        pytest.param(GROUP, [req("a", -5, 1)], id="capacity-negative"),
        pytest.param(GROUP, [req("a", 5, -1)], id="refill-negative"),
        pytest.param(GROUP, [req("a", math.nan, 1)], id="capacity-nan"),
        pytest.param(GROUP, [req("a", 5, math.nan)], id="refill-nan"),
        pytest.param(GROUP, [req("a", 5, math.inf)], id="refill-inf"),
        pytest.param(GROUP, [req("a", 5, 1, math.nan)], id="cost-nan"),
        pytest.param(GROUP, [req("a", 5, 1, -1)], id="cost-negative"),
        pytest.param(GROUP, [req("a b", 5, 1)], id="name-with-space"),
        pytest.param(GROUP, [req("", 5, 1)], id="name-empty"),
        pytest.param("with space", [req("a", 5, 1)], id="group-with-space"),
        pytest.param("{tag}", [req("a", 5, 1)], id="group-with-braces"),
        pytest.param("", [req("a", 5, 1)], id="group-empty"),
    ],
)
def test_bad_bucket_requests_are_refused(
    store: Store, group: str, requests: list[BucketRequest]
) -> None:
    with pytest.raises(InvalidInputError):
        store.take_buckets(group, requests)
    with pytest.raises(InvalidInputError):
        store.take_buckets(group, requests, consume=False)

    async def run() -> None:
        try:
            await store.take_buckets_async(group, requests)
        finally:
            await store.aclose()

    with pytest.raises(InvalidInputError):
        asyncio.run(run())
    assert listed(store) == []


@pytest.mark.parametrize(
    ("group", "names"),
    [("with space", None), ("{tag}", None), (GROUP, ["bad name"]), (GROUP, ["{x}"])],
)
def test_bad_resets_are_refused(store: Store, group: str, names: list[str] | None) -> None:
    with pytest.raises(InvalidInputError):
        store.reset_buckets(group, names)


@pytest.mark.parametrize("limit", [0, -1, 10_001])
def test_a_listing_page_size_out_of_range_is_refused(store: Store, limit: int) -> None:
    with pytest.raises(InvalidInputError):
        store.list_buckets(limit=limit)
