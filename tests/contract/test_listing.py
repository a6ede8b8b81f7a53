"""Listing: live records of one kind, in id order, one bounded page at a time."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from mcpsec.core.errors import InvalidInputError
from mcpsec.store import codec
from mcpsec.store.interface import Page, Store

if TYPE_CHECKING:
    from .conftest import StoreTarget

KIND = "thing"
BIG_KIND = "big"
BIG_COUNT = 10_000
SHORT_TTL = 0.5


def all_pages(store: Store, kind: str, limit: int) -> Iterator[Page]:
    """Every page until `next_cursor` is None, with a bound so a broken cursor cannot loop."""
    cursor: str | None = None
    for _ in range(BIG_COUNT * 2):
        page = store.list(kind, cursor=cursor, limit=limit)
        assert len(page.records) <= limit
        yield page
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
    pytest.fail(f"paging through {kind!r} did not end")


def listed_ids(store: Store, kind: str, limit: int = 100) -> list[str]:
    return [record.id for page in all_pages(store, kind, limit) for record in page.records]


# --- 10,000 records, written once per backend ------------------------------------------------


@pytest.fixture(scope="module")
def big(module_store_target: StoreTarget) -> tuple[Store, list[str]]:
    store = module_store_target.open()
    ids = [f"r{n:05d}" for n in range(BIG_COUNT)]
    shuffled = ids[:]
    random.Random(7).shuffle(shuffled)
    for id_ in shuffled:
        store.put(BIG_KIND, id_, {"n": int(id_[1:]), "name": f"record {id_}"})
    # Neighbours whose keys share a prefix with BIG_KIND or its ids must stay out of its list.
    for kind in ("bi", "big_x", "bigx"):
        for id_ in ("r00000", "r05000", "r99999", "zzz"):
            store.put(kind, id_, {"kind": kind})
    return store, ids


def test_paging_through_ten_thousand_records(big: tuple[Store, list[str]]) -> None:
    store, ids = big
    seen: list[str] = []
    for page in all_pages(store, BIG_KIND, limit=500):
        for record in page.records:
            assert record.kind == BIG_KIND
            assert dict(record.fields) == {"n": int(record.id[1:]), "name": f"record {record.id}"}
            seen.append(record.id)
    assert len(seen) == len(set(seen)), "an id was listed twice"
    assert seen == ids  # every id exactly once, ascending, no other kind mixed in


def test_one_page_is_one_page(big: tuple[Store, list[str]]) -> None:
    store, ids = big
    first = store.list(BIG_KIND, limit=10)
    assert [r.id for r in first.records] == ids[:10]
    assert first.next_cursor is not None
    second = store.list(BIG_KIND, cursor=first.next_cursor, limit=10)
    assert [r.id for r in second.records] == ids[10:20]
    assert second.next_cursor is not None


def test_the_default_limit_is_one_hundred(big: tuple[Store, list[str]]) -> None:
    store, ids = big
    page = store.list(BIG_KIND)
    assert [r.id for r in page.records] == ids[:100]
    assert page.next_cursor is not None


def test_neighbouring_kinds_are_listed_alone(big: tuple[Store, list[str]]) -> None:
    store, _ = big
    for kind in ("bi", "big_x", "bigx"):
        page = store.list(kind, limit=100)
        assert [r.id for r in page.records] == ["r00000", "r05000", "r99999", "zzz"]
        assert {r.kind for r in page.records} == {kind}
        assert page.next_cursor is None


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count calls of `codec.decode`, wherever a store module imported it from.

    Returns a one-element list holding the count; [0] afterwards means the backend decodes
    some other way and the count says nothing.
    """
    calls = [0]
    original: Callable[[str], Any] = codec.decode

    def counting(text: str) -> Any:
        calls[0] += 1
        return original(text)

    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("mcpsec.store"):
            continue
        for attr, value in list(vars(module).items()):
            if value is original:
                monkeypatch.setattr(module, attr, counting)
    return calls


@pytest.mark.parametrize("where", ["first", "middle"])
def test_a_page_does_not_decode_the_whole_kind(
    big: tuple[Store, list[str]], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    store, ids = big
    cursor = None
    if where == "middle":
        cursor = store.list(BIG_KIND, limit=5000).next_cursor
        assert cursor is not None
    calls = _count_decodes(monkeypatch)
    page = store.list(BIG_KIND, cursor=cursor, limit=10)
    assert len(page.records) == 10
    if calls[0] == 0:
        pytest.skip("this backend does not decode through mcpsec.store.codec.decode")
    # Two fields per record: a page of 10 decodes about 20 values (or 10 documents).
    assert calls[0] <= 100, f"a page of 10 decoded {calls[0]} values of {len(ids)} records"


# --- small listings ---------------------------------------------------------------------------


def test_an_empty_kind_lists_nothing(store: Store) -> None:
    page = store.list(KIND)
    assert page.records == ()
    assert page.next_cursor is None


def test_ids_are_listed_in_ascending_order(store: Store) -> None:
    ids = ["b", "B", "a", "Z", "a-1", "a1", "a:1", "é", "ü", "~", "0", "10", "9", "日本", "_"]
    for n, id_ in enumerate(random.Random(3).sample(ids, len(ids))):
        store.put(KIND, id_, {"n": n})
    assert listed_ids(store, KIND, limit=4) == sorted(ids)
    assert listed_ids(store, KIND, limit=1) == sorted(ids)
    assert listed_ids(store, KIND, limit=100) == sorted(ids)


def test_an_exact_multiple_of_the_limit_ends(store: Store) -> None:
    for n in range(6):
        store.put(KIND, f"r{n}", {})
    pages = list(all_pages(store, KIND, limit=3))
    assert [r.id for p in pages for r in p.records] == [f"r{n}" for n in range(6)]
    assert pages[-1].next_cursor is None
    assert len(pages) <= 3


def test_other_kinds_are_not_mixed_in(store: Store) -> None:
    for kind in ("thing", "thing_x", "thin", "thingx", "other"):
        for id_ in ("a", "m", f"only-{kind}"):
            store.put(kind, id_, {"kind": kind})
    page = store.list("thing")
    assert [r.id for r in page.records] == ["a", "m", "only-thing"]
    assert {r.kind for r in page.records} == {"thing"}
    assert {r.fields["kind"] for r in page.records} == {"thing"}


def assert_listed(store: Store, kind: str, expected: set[str], *, limit: int = 100) -> None:
    listed = listed_ids(store, kind, limit=limit)
    missing, extra = sorted(expected - set(listed)), sorted(set(listed) - expected)
    assert not missing, f"live records not listed: {missing}"
    assert not extra, f"records listed that are not live: {extra}"
    assert listed == sorted(expected)


def test_deleted_and_expired_records_are_not_listed(store: Store) -> None:
    """Whatever writes came before, a live record is listed and a dead one is not."""
    ids = [f"r{n:02d}" for n in range(30)]
    for n, id_ in enumerate(ids):
        store.put(KIND, id_, {"n": n}, ttl=SHORT_TTL if n % 3 == 0 else None)
    deleted = {id_ for n, id_ in enumerate(ids) if n % 3 == 1 and n < 15}
    for id_ in deleted:
        assert store.delete(KIND, id_) is True
    expired = {id_ for n, id_ in enumerate(ids) if n % 3 == 0}
    # Writes that leave a record alive whatever expiry they mention on the way.
    store.put(KIND, "kept", {"v": 1})
    assert store.put(KIND, "kept", {"v": 2}, ttl=SHORT_TTL, only_if_absent=True) is False
    store.put(KIND, "persisted", {}, ttl=SHORT_TTL)
    store.update(KIND, "persisted", ttl=None)
    store.put(KIND, "extended", {}, ttl=SHORT_TTL)
    store.update(KIND, "extended", ttl=60)
    store.put(KIND, "replaced", {}, ttl=SHORT_TTL)
    store.put(KIND, "replaced", {})
    store.put(KIND, "conflicted", {}, ttl=SHORT_TTL)
    assert store.update(KIND, "conflicted", expect={"x": 1}, ttl=None).status.value == "conflict"
    expired.add("conflicted")
    survivors = {"kept", "persisted", "extended", "replaced"}
    before = (set(ids) - deleted) | survivors | {"conflicted"}
    assert_listed(store, KIND, before, limit=4)

    time.sleep(SHORT_TTL + 1.1)
    writes = {f"w{n:02d}" for n in range(25)}  # later writes to the kind, which may tidy up
    for id_ in sorted(writes):
        store.put(KIND, id_, {})

    for id_ in sorted(before):
        assert (store.get(KIND, id_) is not None) == (id_ not in expired), id_
    after = (before - expired) | writes
    assert_listed(store, KIND, after, limit=4)
    assert_listed(store, KIND, after, limit=100)


def test_records_that_live_through_paging_are_seen_once(store: Store) -> None:
    ids = [f"r{n:02d}" for n in range(40)]
    for id_ in ids:
        store.put(KIND, id_, {})
    removed: set[str] = set()
    added: set[str] = set()
    seen: list[str] = []
    cursor: str | None = None
    for step in range(100):
        page = store.list(KIND, cursor=cursor, limit=5)
        seen.extend(r.id for r in page.records)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        # Change the kind between pages: drop the record the cursor stands on, one seen
        # and one not yet seen, and add one before and one after the cursor.
        for victim in (seen[-1], seen[0], f"r{min(39, len(seen) + 3):02d}"):
            if store.delete(KIND, victim):
                removed.add(victim)
        for new in (f"a{step:02d}", f"r{len(seen):02d}x"):
            store.put(KIND, new, {})
            added.add(new)
    else:
        pytest.fail("paging did not end")
    assert len(seen) == len(set(seen)), "a record was listed twice"
    survivors = set(ids) - removed
    assert survivors <= set(seen), f"records never listed: {sorted(survivors - set(seen))}"
    assert set(seen) <= set(ids) | added


@pytest.mark.parametrize("bad_limit", [0, -1, 10_001])
def test_limits_out_of_range_are_refused(store: Store, bad_limit: int) -> None:
    with pytest.raises(InvalidInputError):
        store.list(KIND, limit=bad_limit)


def test_a_cursor_continues_after_its_record_is_deleted(store: Store) -> None:
    for id_ in "abcdef":
        store.put(KIND, id_, {})
    page = store.list(KIND, limit=3)
    assert [r.id for r in page.records] == ["a", "b", "c"]
    store.delete(KIND, "c")
    rest = store.list(KIND, cursor=page.next_cursor, limit=3)
    assert [r.id for r in rest.records] == ["d", "e", "f"]
