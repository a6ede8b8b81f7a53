"""Atomic updates under real threads: counters, compare-and-set, create-if-absent.

Each race runs twice: 16 threads sharing one store object, and 16 threads each with a store
of its own opened on the same URL and prefix (as 16 processes would be). fakeredis has no
URL to reopen, so it runs the shared variant only.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import pytest
from mcpsec.store.interface import Store, UpdateStatus

if TYPE_CHECKING:
    from .conftest import StoreTarget

KIND = "thing"
THREADS = 16
INCREMENTS = 200
T = TypeVar("T")


@dataclass(frozen=True)
class Contenders:
    """`main` sets up and checks; each racing thread calls `open()` once, on its own thread."""

    main: Store
    open: Callable[[], Store]


@pytest.fixture(params=["shared", "own"])
def stores(request: pytest.FixtureRequest, store_target: StoreTarget) -> Contenders:
    """The same store object for every thread, or a store of its own opened by each thread."""
    main = store_target.open()
    if request.param == "shared":
        return Contenders(main, lambda: main)
    if not store_target.reopenable:
        pytest.skip("fakeredis runs the shared-object variant only")
    return Contenders(main, store_target.open)


def race(stores: Contenders, work: Callable[[int, Store], T]) -> list[T]:
    """Run `work(i, store)` on 16 threads, all released at once; re-raise any error."""
    barrier = threading.Barrier(THREADS)

    def run(i: int) -> T:
        store = stores.open()
        barrier.wait(timeout=30)
        return work(i, store)

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(run, i) for i in range(THREADS)]
        return [future.result(timeout=120) for future in futures]


def test_increments_are_never_lost(stores: Contenders) -> None:
    stores.main.put(KIND, "counter", {"uses": 0, "name": "ci"})

    def work(_: int, store: Store) -> list[UpdateStatus]:
        return [
            store.update(KIND, "counter", increment={"uses": 1}).status for _ in range(INCREMENTS)
        ]

    statuses = [s for batch in race(stores, work) for s in batch]
    assert set(statuses) == {UpdateStatus.UPDATED}
    record = stores.main.get(KIND, "counter")
    assert record is not None
    assert dict(record.fields) == {"uses": THREADS * INCREMENTS, "name": "ci"}


def test_increments_of_several_fields_are_atomic_together(stores: Contenders) -> None:
    stores.main.put(KIND, "pair", {})

    def work(i: int, store: Store) -> None:
        for _ in range(50):
            result = store.update(KIND, "pair", increment={"a": 1, "b": 2}, set={"last": i})
            assert result.record is not None
            assert result.record.fields["b"] == 2 * result.record.fields["a"]

    race(stores, work)
    record = stores.main.get(KIND, "pair")
    assert record is not None
    assert record.fields["a"] == THREADS * 50
    assert record.fields["b"] == THREADS * 100
    assert record.fields["last"] in range(THREADS)


def test_compare_and_set_has_exactly_one_winner(stores: Contenders) -> None:
    stores.main.put(KIND, "lock", {"name": "job"})

    def work(i: int, store: Store) -> tuple[int, UpdateStatus, str | None]:
        result = store.update(KIND, "lock", set={"owner": f"t{i}"}, expect={"owner": None})
        assert result.record is not None
        return i, result.status, result.record.fields.get("owner")

    results = race(stores, work)
    winners = [(i, owner) for i, status, owner in results if status is UpdateStatus.UPDATED]
    losers = [owner for _, status, owner in results if status is UpdateStatus.CONFLICT]
    assert len(winners) == 1, results
    assert len(losers) == THREADS - 1, results
    ((winner, winner_owner),) = winners
    assert winner_owner == f"t{winner}"
    # A CONFLICT carries the record as it is: owned by the winner, not by the loser.
    assert set(losers) == {f"t{winner}"}
    record = stores.main.get(KIND, "lock")
    assert record is not None
    assert dict(record.fields) == {"name": "job", "owner": f"t{winner}"}


def test_compare_and_set_chains_serialise(stores: Contenders) -> None:
    """Optimistic increments through `expect`: every success moves the version by one."""
    stores.main.put(KIND, "versioned", {"version": 0})

    def work(_: int, store: Store) -> int:
        wins = 0
        for _ in range(20):
            while True:
                current = store.get(KIND, "versioned")
                assert current is not None
                version = current.fields["version"]
                result = store.update(
                    KIND, "versioned", set={"version": version + 1}, expect={"version": version}
                )
                if result.status is UpdateStatus.UPDATED:
                    wins += 1
                    break
                assert result.status is UpdateStatus.CONFLICT
        return wins

    assert sum(race(stores, work)) == THREADS * 20
    record = stores.main.get(KIND, "versioned")
    assert record is not None
    assert record.fields["version"] == THREADS * 20


def test_put_only_if_absent_has_exactly_one_winner(stores: Contenders) -> None:
    def work(i: int, store: Store) -> bool:
        return store.put(KIND, "claim", {"by": i}, only_if_absent=True)

    results = race(stores, work)
    assert results.count(True) == 1, results
    record = stores.main.get(KIND, "claim")
    assert record is not None
    assert dict(record.fields) == {"by": results.index(True)}


def test_update_of_a_missing_record_under_contention(stores: Contenders) -> None:
    def work(_: int, store: Store) -> tuple[UpdateStatus, object]:
        result = store.update(KIND, "ghost", increment={"uses": 1})
        return result.status, result.record

    assert set(race(stores, work)) == {(UpdateStatus.MISSING, None)}
    assert stores.main.get(KIND, "ghost") is None


def test_delete_has_exactly_one_winner(stores: Contenders) -> None:
    stores.main.put(KIND, "doomed", {"v": 1})
    results = race(stores, lambda _, store: store.delete(KIND, "doomed"))
    assert results.count(True) == 1, results
    assert stores.main.get(KIND, "doomed") is None


def test_listing_agrees_with_get_after_concurrent_writes(stores: Contenders) -> None:
    """Racing puts, deletes and updates (with and without expiry) on a few ids.

    After every round, `list` shows exactly the records `get` finds; and again once the
    short expiries have passed and later writes had a chance to tidy up.
    """
    ids = [f"r{n}" for n in range(4)]
    rounds, ops, ttl = 6, 25, 0.2
    barrier = threading.Barrier(THREADS)

    def check(when: str) -> None:
        # No writer runs now, but short expiries still pass: judge only records that are
        # dead, or live and not about to expire, when `get` sees them before `list` runs.
        now = stores.main.now()
        found = {id_: stores.main.get(KIND, id_) for id_ in ids}
        dead = {id_ for id_, record in found.items() if record is None}
        stable = {
            id_
            for id_, record in found.items()
            if record is not None and (record.expires_at is None or record.expires_at > now + 5)
        }
        listed = {r.id for r in stores.main.list(KIND, limit=1000).records}
        assert not stable - listed, f"{when}: live records not listed: {sorted(stable - listed)}"
        assert not dead & listed, f"{when}: dead records listed: {sorted(dead & listed)}"

    def work(i: int, store: Store) -> None:
        rng = random.Random(i)
        for round_ in range(rounds):
            for _ in range(ops):
                id_, op = rng.choice(ids), rng.randrange(6)
                if op == 0:
                    store.put(KIND, id_, {"by": i})
                elif op == 1:
                    store.put(KIND, id_, {"by": i}, ttl=ttl)
                elif op == 2:
                    store.put(KIND, id_, {"by": i}, ttl=ttl, only_if_absent=True)
                elif op == 3:
                    store.delete(KIND, id_)
                elif op == 4:
                    store.update(KIND, id_, set={"by": i}, ttl=None)
                else:
                    store.update(KIND, id_, set={"by": i}, ttl=ttl)
            barrier.wait(timeout=60)
            if i == 0:
                try:
                    check(f"after round {round_ + 1}")
                except BaseException:
                    barrier.abort()
                    raise
            barrier.wait(timeout=60)

    race(stores, work)
    time.sleep(ttl + 1.2)
    for n in range(25):  # later writes to the kind, which may tidy up
        stores.main.put(KIND, f"w{n:02d}", {})
    check("after the expiries")
