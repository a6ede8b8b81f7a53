"""The append-only log: ordered entries per stream, trimming, following, concurrent appends."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from mcpsec.core.errors import InvalidInputError
from mcpsec.store.interface import LogEntry, Store

STREAM = "audit"
TIME_SLACK = 2.0


def read_all(store: Store, stream: str, *, after: str | None = None) -> list[LogEntry]:
    """Every entry after `after`, page by page."""
    entries: list[LogEntry] = []
    for _ in range(10_000):
        page = store.log_read(stream, after=after, limit=500)
        assert len(page) <= 500
        if not page:
            return entries
        entries.extend(page)
        after = page[-1].id
    pytest.fail("reading the log did not end")


def assert_follows(store: Store, stream: str, entries: list[LogEntry], at: range) -> None:
    """Entry i+1 is what `log_read(after=entry i)` returns first: ids increase in read order."""
    for i in at:
        following = store.log_read(stream, after=entries[i].id, limit=1)
        assert [e.id for e in following] == [entries[i + 1].id], i


def test_entries_are_read_oldest_first(store: Store) -> None:
    appended = [store.log_append(STREAM, {"n": n, "type": "key.created"}) for n in range(3)]
    now = store.now()
    for n, entry in enumerate(appended):
        assert isinstance(entry, LogEntry)
        assert dict(entry.fields) == {"n": n, "type": "key.created"}
        assert entry.time == pytest.approx(now, abs=TIME_SLACK)

    entries = store.log_read(STREAM)
    assert [e.id for e in entries] == [e.id for e in appended]
    assert [dict(e.fields) for e in entries] == [dict(e.fields) for e in appended]
    for entry, original in zip(entries, appended, strict=True):
        assert entry.time == pytest.approx(original.time, abs=0.01)
        assert entry.time == pytest.approx(now, abs=TIME_SLACK)
    assert entries[0].time <= entries[1].time <= entries[2].time
    assert len({e.id for e in entries}) == 3

    first, second, third = entries
    assert [e.id for e in store.log_read(STREAM, after=first.id)] == [second.id, third.id]
    assert [e.id for e in store.log_read(STREAM, after=second.id)] == [third.id]
    assert store.log_read(STREAM, after=third.id) == []


def test_read_respects_the_limit(store: Store) -> None:
    ids = [store.log_append(STREAM, {"n": n}).id for n in range(7)]
    assert [e.id for e in store.log_read(STREAM, limit=3)] == ids[:3]
    assert [e.id for e in store.log_read(STREAM, after=ids[2], limit=3)] == ids[3:6]
    assert [e.id for e in store.log_read(STREAM, after=ids[5], limit=3)] == ids[6:]


def test_tail_returns_the_newest_oldest_first(store: Store) -> None:
    ids = [store.log_append(STREAM, {"n": n}).id for n in range(3)]
    tail = store.log_tail(STREAM, 2)
    assert [e.id for e in tail] == ids[1:]
    assert [e.fields["n"] for e in tail] == [1, 2]
    assert [e.id for e in store.log_tail(STREAM, 1)] == ids[2:]
    assert [e.id for e in store.log_tail(STREAM, 10)] == ids


def test_an_empty_stream_reads_as_empty(store: Store) -> None:
    assert store.log_read("nothing_here") == []
    assert store.log_tail("nothing_here", 5) == []


def test_entries_carry_any_json(store: Store) -> None:
    fields: dict[str, Any] = {
        "text": "héllo ✓ 🔐",
        "null_text": "null",
        "int": -3,
        "float": 2.5,
        "bool": False,
        "none": None,
        "list": [1, "a", None],
        "dict": {"nested": {"deep": [True]}},
    }
    store.log_append(STREAM, fields)
    (entry,) = store.log_read(STREAM)
    assert dict(entry.fields) == fields
    for name, value in fields.items():
        assert type(entry.fields[name]) is type(value), name


@pytest.mark.parametrize(
    "bad_value", [object(), float("nan"), {1, 2}], ids=["object", "nan", "set"]
)
def test_entries_that_are_not_json_are_refused(store: Store, bad_value: Any) -> None:
    with pytest.raises(InvalidInputError):
        store.log_append(STREAM, {"ok": 1, "bad": bad_value})
    assert store.log_read(STREAM) == []


@pytest.mark.parametrize("bad_stream", ["a b", "{x}", ""])
def test_invalid_stream_names_are_refused(store: Store, bad_stream: str) -> None:
    with pytest.raises(InvalidInputError):
        store.log_append(bad_stream, {"v": 1})
    with pytest.raises(InvalidInputError):
        store.log_read(bad_stream)
    with pytest.raises(InvalidInputError):
        store.log_tail(bad_stream, 1)


def test_maxlen_trims_the_oldest(store: Store) -> None:
    for n in range(1000):
        store.log_append(STREAM, {"n": n}, maxlen=100)
    entries = read_all(store, STREAM)
    # Redis trims approximately (`MAXLEN ~`): never below maxlen, a node's worth above.
    assert 100 <= len(entries) <= 100 + 100, len(entries)
    numbers = [e.fields["n"] for e in entries]
    assert numbers == list(range(1000 - len(entries), 1000)), "the newest entries must survive"
    assert [e.fields["n"] for e in store.log_tail(STREAM, 3)] == [997, 998, 999]


def test_streams_are_independent(store: Store) -> None:
    store.log_append("alpha", {"s": "a", "n": 0})
    store.log_append("beta", {"s": "b", "n": 0})
    store.log_append("alpha", {"s": "a", "n": 1})
    for _ in range(150):
        store.log_append("gamma", {"s": "g"}, maxlen=10)
    assert [dict(e.fields) for e in store.log_read("alpha")] == [
        {"s": "a", "n": 0},
        {"s": "a", "n": 1},
    ]
    assert [dict(e.fields) for e in store.log_read("beta")] == [{"s": "b", "n": 0}]
    assert [e.fields["n"] for e in store.log_tail("alpha", 5)] == [0, 1]


# --- following ------------------------------------------------------------------------------


class Follower:
    """`log_read(block=...)` on a thread of its own, as `audit tail -f` would call it."""

    def __init__(self, store: Store, *, after: str | None, block: float) -> None:
        self.block = block
        self.result: list[LogEntry] | None = None
        self.error: BaseException | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(store, after, block), daemon=True)
        self._thread.start()
        self._started.wait(timeout=5)

    def _run(self, store: Store, after: str | None, block: float) -> None:
        self._started.set()
        try:
            self.result = store.log_read(STREAM, after=after, block=block)
        except BaseException as e:  # handed to the test's thread in join()
            self.error = e

    def join(self) -> list[LogEntry]:
        self._thread.join(timeout=self.block + 10)
        assert not self._thread.is_alive(), "log_read(block=...) did not return"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def test_a_blocked_read_returns_a_new_entry(store: Store) -> None:
    last = store.log_append(STREAM, {"n": 0})
    follower = Follower(store, after=last.id, block=3)
    time.sleep(0.3)
    appended = store.log_append(STREAM, {"n": 1})
    result = follower.join()
    assert [e.id for e in result] == [appended.id]
    assert [dict(e.fields) for e in result] == [{"n": 1}]


def test_a_blocked_read_of_an_empty_stream_returns_its_first_entry(store: Store) -> None:
    follower = Follower(store, after=None, block=3)
    time.sleep(0.3)
    appended = store.log_append(STREAM, {"n": 0})
    assert [e.id for e in follower.join()] == [appended.id]


def test_a_blocked_read_with_nothing_new_returns_empty(store: Store) -> None:
    last = store.log_append(STREAM, {"n": 0})
    assert store.log_read(STREAM, after=last.id, block=0.3) == []
    assert store.log_read("silent", block=0.3) == []


def test_a_blocked_read_with_entries_waiting_returns_at_once(store: Store) -> None:
    first = store.log_append(STREAM, {"n": 0})
    second = store.log_append(STREAM, {"n": 1})
    assert [e.id for e in store.log_read(STREAM, after=first.id, block=30)] == [second.id]


# --- concurrent appends ---------------------------------------------------------------------


def test_concurrent_appends_are_all_kept_in_order(store: Store) -> None:
    threads, per_thread = 8, 100
    barrier = threading.Barrier(threads)

    def work(t: int) -> list[str]:
        barrier.wait(timeout=30)
        return [store.log_append(STREAM, {"t": t, "n": n}).id for n in range(per_thread)]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        returned = [f.result(timeout=120) for f in [pool.submit(work, t) for t in range(threads)]]

    entries = read_all(store, STREAM)
    assert len(entries) == threads * per_thread
    ids = [e.id for e in entries]
    assert len(set(ids)) == len(ids), "two entries share an id"
    assert set(ids) == {id_ for batch in returned for id_ in batch}
    for t in range(threads):
        mine = [e for e in entries if e.fields["t"] == t]
        assert [e.fields["n"] for e in mine] == list(range(per_thread)), f"thread {t} reordered"
        assert [e.id for e in mine] == returned[t]
    # Strictly increasing in read order: each id is what follows its predecessor.
    assert_follows(store, STREAM, entries, range(0, len(entries) - 1, 7))
    assert store.log_read(STREAM, after=ids[-1]) == []
