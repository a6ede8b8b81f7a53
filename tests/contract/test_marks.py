"""Marks: numbers with an expiry that only go up, read several at a time (token revocations)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest
from mcpsec.core.errors import InvalidInputError
from mcpsec.store.interface import Store

if TYPE_CHECKING:
    from .conftest import StoreTarget

GROUP = "0123456789abcdef"


def test_an_absent_mark_reads_as_none(store: Store) -> None:
    assert store.get_marks(GROUP, ["j:one", "s"]) == [None, None]


def test_a_set_mark_reads_back_in_the_order_asked(store: Store) -> None:
    assert store.set_mark(GROUP, "s", 1_700_000_000.5, ttl=60) == 1_700_000_000.5
    store.set_mark(GROUP, "j:abc", 42, ttl=60)
    assert store.get_marks(GROUP, ["j:abc", "j:none", "s"]) == [42.0, None, 1_700_000_000.5]


def test_a_mark_never_goes_down(store: Store) -> None:
    store.set_mark(GROUP, "s", 200, ttl=60)
    assert store.set_mark(GROUP, "s", 100, ttl=60) == 200.0
    assert store.get_marks(GROUP, ["s"]) == [200.0]
    assert store.set_mark(GROUP, "s", 300, ttl=60) == 300.0
    assert store.get_marks(GROUP, ["s"]) == [300.0]


def test_marks_of_other_groups_are_apart(store: Store) -> None:
    store.set_mark(GROUP, "s", 5, ttl=60)
    assert store.get_marks("fedcba9876543210", ["s"]) == [None]


def test_a_mark_expires(store: Store) -> None:
    store.set_mark(GROUP, "j:short", 1, ttl=0.2)
    assert store.get_marks(GROUP, ["j:short"]) == [1.0]
    time.sleep(0.5)
    assert store.get_marks(GROUP, ["j:short"]) == [None]


def test_a_shorter_ttl_does_not_cut_a_mark_short(store: Store) -> None:
    store.set_mark(GROUP, "j:long", 1, ttl=60)
    store.set_mark(GROUP, "j:long", 2, ttl=0.2)
    time.sleep(0.5)
    assert store.get_marks(GROUP, ["j:long"]) == [2.0]


def test_an_expired_mark_does_not_hold_a_new_value_down(store: Store) -> None:
    store.set_mark(GROUP, "s", 500, ttl=0.2)
    time.sleep(0.5)
    assert store.set_mark(GROUP, "s", 100, ttl=60) == 100.0
    assert store.get_marks(GROUP, ["s"]) == [100.0]


def test_another_client_sees_a_mark_at_once(store_target: StoreTarget) -> None:
    if not store_target.reopenable:
        pytest.skip("fakeredis data lives in one client")
    writer, reader = store_target.open(), store_target.open()
    writer.set_mark(GROUP, "j:x", 7, ttl=60)
    assert reader.get_marks(GROUP, ["j:x"]) == [7.0]


def test_concurrent_raises_keep_the_largest(store_target: StoreTarget) -> None:
    stores = [store_target.open() for _ in range(8)]
    errors: list[BaseException] = []

    def raise_mark(store: Store, base: int) -> None:
        try:
            for i in range(25):
                store.set_mark(GROUP, "s", base * 100 + i, ttl=60)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=raise_mark, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert stores[0].get_marks(GROUP, ["s"]) == [724.0]


@pytest.mark.parametrize(
    ("group", "names", "value", "ttl"),
    [
        ("with space", ["s"], 1, 60),
        ("{tag}", ["s"], 1, 60),
        (GROUP, ["bad name"], 1, 60),
        (GROUP, ["s"], float("nan"), 60),
        (GROUP, ["s"], float("inf"), 60),
        (GROUP, ["s"], 1, 0),
        (GROUP, ["s"], 1, float("nan")),
    ],
)
def test_bad_marks_are_refused(
    store: Store, group: str, names: list[str], value: float, ttl: float
) -> None:
    with pytest.raises(InvalidInputError):
        store.set_mark(group, names[0], value, ttl=ttl)


def test_reading_no_names_is_refused(store: Store) -> None:
    with pytest.raises(InvalidInputError):
        store.get_marks(GROUP, [])
