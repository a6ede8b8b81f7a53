"""The audit chain on every backend: `log_append_after`, and `AuditLog.verify` catching an
edited, deleted, reordered, inserted or replayed event, while trimming is only reported."""

from __future__ import annotations

import itertools
import secrets
import sqlite3
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any, cast

import pytest
from mcpsec.core.audit import STREAM, AuditLog, Outcome, Verification
from mcpsec.core.clock import ManualClock
from mcpsec.core.errors import InvalidInputError, SecretError, StoreError
from mcpsec.store import codec, open_store
from mcpsec.store.interface import MAX_BATCH, JSONValue, LogEntry, Store
from mcpsec.store.redis_store import LOG_FIELD, RedisStore

from tests.contract.conftest import StoreTarget

KEY_BYTES = 48
EVENTS = 6


@pytest.fixture
def key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


@pytest.fixture
def log(store: Store, key: bytes) -> AuditLog:
    return AuditLog(store, key, actor="tester")


def read_all(store: Store, stream: str = STREAM) -> list[LogEntry]:
    entries: list[LogEntry] = []
    after: str | None = None
    while page := store.log_read(stream, after=after, limit=500):
        entries.extend(page)
        after = page[-1].id
    return entries


def record_some(log: AuditLog, count: int = EVENTS) -> list[LogEntry]:
    for n in range(count):
        log.record("key.verified", Outcome.DENIED, subject=f"user{n}", reason="revoked")
    entries = read_all(log.store)
    assert len(entries) == count
    return entries


def assert_broken(result: Verification, event_id: str, *words: str) -> None:
    """`verify` names the first bad event, with a problem that makes `audit verify` exit 1."""
    assert not result.intact
    assert result.problem is not None and result.problem.strip()
    assert result.event_id == event_id, result
    for word in words:
        assert word in result.problem, result.problem
    assert result.valid < result.total


# -- raw access to the stream, as someone with write access to the store would have -------


def sqlite_path(target: StoreTarget) -> Path:
    return Path(target.url.removeprefix("sqlite://"))


def redis_client(store: Store) -> Any:
    assert isinstance(store, RedisStore)
    return store.client


def stream_key(target: StoreTarget) -> str:
    return target.prefix + "_log:{" + STREAM + "}"


def rewrite(target: StoreTarget, store: Store, bodies: list[Mapping[str, Any]]) -> list[LogEntry]:
    """Replace the whole stream with `bodies`, in that order, under fresh increasing ids."""
    if target.backend == "sqlite":
        with closing(sqlite3.connect(sqlite_path(target), isolation_level=None)) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM log WHERE stream = ?", (STREAM,))
            for n, body in enumerate(bodies, 1):
                db.execute(
                    "INSERT INTO log (seq, stream, time, data) VALUES (?, ?, ?, ?)",
                    (n, STREAM, float(body.get("time") or 0), codec.encode_document(body)),
                )
            db.execute("COMMIT")
    else:
        client = redis_client(store)
        client.delete(stream_key(target))
        for n, body in enumerate(bodies, 1):
            client.xadd(stream_key(target), {LOG_FIELD: codec.encode_document(body)}, id=f"{n}-1")
    entries = read_all(store)
    assert [dict(e.fields) for e in entries] == [dict(b) for b in bodies]
    return entries


def edit(target: StoreTarget, store: Store, index: int, **changes: Any) -> list[LogEntry]:
    """Change fields of the index-th event in place (SQLite), or by rewriting (Redis: a
    stream entry cannot be edited)."""
    entries = read_all(store)
    bodies: list[Mapping[str, Any]] = [dict(e.fields) for e in entries]
    bodies[index] = {**bodies[index], **changes}
    if target.backend != "sqlite":
        return rewrite(target, store, bodies)
    with closing(sqlite3.connect(sqlite_path(target), isolation_level=None)) as db:
        changed = db.execute(
            "UPDATE log SET data = ? WHERE stream = ? AND seq = ?",
            (codec.encode_document(bodies[index]), STREAM, int(entries[index].id)),
        ).rowcount
    assert changed == 1
    return read_all(store)


def delete(target: StoreTarget, store: Store, entry_id: str) -> None:
    if target.backend == "sqlite":
        with closing(sqlite3.connect(sqlite_path(target), isolation_level=None)) as db:
            deleted = db.execute(
                "DELETE FROM log WHERE stream = ? AND seq = ?", (STREAM, int(entry_id))
            ).rowcount
    else:
        deleted = redis_client(store).xdel(stream_key(target), entry_id)
    assert deleted == 1


# -- log_append_after ----------------------------------------------------------------------


def append_one(store: Store, fields: dict[str, JSONValue], after: str | None) -> LogEntry:
    result = store.log_append_after("chain", [fields], after=after)
    assert result.ok and len(result.appended) == 1
    return result.appended[0]


def test_append_after_none_goes_into_an_empty_stream(store: Store) -> None:
    result = store.log_append_after("chain", [{"n": 0}], after=None)
    assert result.last is None
    assert [dict(e.fields) for e in result.appended] == [{"n": 0}]
    assert [e.id for e in read_all(store, "chain")] == [result.appended[0].id]


def test_append_after_the_last_entry_goes_in(store: Store) -> None:
    first = append_one(store, {"n": 0}, None)
    second = append_one(store, {"n": 1}, first.id)
    assert [dict(e.fields) for e in read_all(store, "chain")] == [{"n": 0}, {"n": 1}]
    assert [e.id for e in read_all(store, "chain")] == [first.id, second.id]


def test_a_batch_goes_in_whole_and_in_order(store: Store) -> None:
    first = append_one(store, {"n": 0}, None)
    batch = store.log_append_after("chain", [{"n": n} for n in range(1, 6)], after=first.id)
    assert [e.fields["n"] for e in batch.appended] == [1, 2, 3, 4, 5]
    stored = read_all(store, "chain")
    assert [e.id for e in stored] == [first.id, *(e.id for e in batch.appended)]
    assert [e.fields["n"] for e in stored] == [0, 1, 2, 3, 4, 5]
    # The next one chains to the batch's last entry, and only to it.
    assert not store.log_append_after("chain", [{"n": 9}], after=batch.appended[-2].id).ok
    append_one(store, {"n": 6}, batch.appended[-1].id)


def test_a_conflicting_batch_writes_nothing(store: Store) -> None:
    first = append_one(store, {"n": 0}, None)
    append_one(store, {"n": 1}, first.id)
    stale = store.log_append_after("chain", [{"n": "a"}, {"n": "b"}], after=first.id)
    assert stale.appended == ()
    assert [e.fields["n"] for e in read_all(store, "chain")] == [0, 1]


@pytest.mark.parametrize("count", [0, MAX_BATCH + 1])
def test_an_empty_or_oversized_batch_is_refused(store: Store, count: int) -> None:
    with pytest.raises(InvalidInputError):
        store.log_append_after("chain", [{"n": n} for n in range(count)], after=None)
    assert read_all(store, "chain") == []


def test_a_conflict_writes_nothing_and_returns_the_last_entry(store: Store) -> None:
    first = append_one(store, {"n": 0}, None)
    second = append_one(store, {"n": 1}, first.id)

    # Another writer came first: after=None on a stream that is no longer empty ...
    lost = store.log_append_after("chain", [{"n": "lost"}], after=None)
    assert not lost.ok
    assert lost.last is not None
    assert (lost.last.id, dict(lost.last.fields)) == (second.id, {"n": 1})
    # ... or after an entry that is no longer the last one.
    stale = store.log_append_after("chain", [{"n": "stale"}], after=first.id)
    assert not stale.ok
    assert stale.last is not None
    assert (stale.last.id, dict(stale.last.fields)) == (second.id, {"n": 1})

    assert [dict(e.fields) for e in read_all(store, "chain")] == [{"n": 0}, {"n": 1}]
    # Chaining to what the conflict returned works.
    append_one(store, {"n": 2}, stale.last.id)
    assert [e.fields["n"] for e in read_all(store, "chain")] == [0, 1, 2]


@pytest.mark.parametrize("after", ["garbage", "1-x", "-"])
def test_a_position_the_store_never_wrote_is_refused(store: Store, after: str) -> None:
    with pytest.raises(InvalidInputError):
        store.log_append_after("chain", [{"n": 0}], after=after)
    assert read_all(store, "chain") == []


def test_maxlen_trims_the_oldest_and_never_the_newest(
    store: Store, store_target: StoreTarget
) -> None:
    after: str | None = None
    appended: list[str] = []
    for n in range(300):
        result = store.log_append_after("chain", [{"n": n}], after=after, maxlen=10)
        assert result.ok, n
        after = result.appended[0].id
        appended.append(after)
    entries = read_all(store, "chain")
    numbers = [e.fields["n"] for e in entries]
    # Whatever is kept is the newest, in order, and always includes the last one.
    assert numbers == list(range(300 - len(entries), 300))
    assert [e.id for e in entries] == appended[300 - len(entries) :]
    assert len(entries) >= 10
    if store_target.backend == "sqlite":
        assert len(entries) <= 10
    else:  # `MAXLEN ~`: whole nodes (100 entries) at a time
        assert len(entries) <= 10 + 200


# -- the chain holds ------------------------------------------------------------------------


def test_recorded_events_verify_intact(log: AuditLog, store: Store) -> None:
    record_some(log)
    log.change("key.revoked", key_id="4fJq8Lw2Xc9a", reason="leaked")
    log.verdict("token.verified", Outcome.ALLOWED, subject="alice", jti="j1")
    result = log.verify()
    assert result.intact and result.problem is None and result.event_id is None
    assert (result.total, result.valid, result.trimmed) == (EVENTS + 2, EVENTS + 2, 0)

    events = list(log.events())
    assert [e.seq for e in events] == list(range(1, EVENTS + 3))
    assert events[-2].type == "key.revoked" and events[-2].key_id == "4fJq8Lw2Xc9a"
    assert events[-1].outcome == "allowed" and events[-1].jti == "j1"
    assert {e.actor for e in events} == {"tester"}
    # The chain fields are in the stored bodies: each names its predecessor's MAC.
    bodies = [e.fields for e in read_all(store)]
    assert bodies[0]["prev"] == ""
    for before, body in itertools.pairwise(bodies):
        assert body["prev"] == before["mac"]


def test_an_empty_log_verifies_as_nothing_to_check(log: AuditLog) -> None:
    result = log.verify()
    assert result.intact and (result.total, result.valid, result.trimmed) == (0, 0, 0)


def test_a_second_log_object_continues_the_chain(store: Store, key: bytes) -> None:
    first = AuditLog(store, key)
    record_some(first, 3)
    second = AuditLog(store, key)  # another process, say: it learns the tail from the store
    assert second.record("rate.reset", Outcome.ALLOWED, subject="bob").seq == 4
    first.record("rate.reset", Outcome.ALLOWED, subject="carol")  # its cached tail is stale
    result = first.verify()
    assert result.intact and (result.total, result.valid) == (5, 5)
    assert [e.seq for e in first.events()] == [1, 2, 3, 4, 5]


def test_the_wrong_key_verifies_nothing(log: AuditLog, store: Store) -> None:
    entries = record_some(log)
    result = AuditLog(store, secrets.token_bytes(KEY_BYTES)).verify()
    assert_broken(result, entries[0].id, "MAC")
    assert result.valid == 0


def test_a_short_key_is_refused(store: Store) -> None:
    with pytest.raises(SecretError):
        AuditLog(store, b"k" * 31)


def test_unknown_event_fields_are_refused(log: AuditLog) -> None:
    with pytest.raises(InvalidInputError):
        log.record("key.created", Outcome.ALLOWED, api_key="mcp_...")
    assert read_all(log.store) == []


# -- tampering -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [{"subject": "mallory"}, {"outcome": "allowed"}, {"reason": None}, {"time": 1.0}],
    ids=["subject", "outcome", "reason", "time"],
)
def test_an_edited_event_is_caught(
    log: AuditLog, store: Store, store_target: StoreTarget, changes: dict[str, Any]
) -> None:
    record_some(log)
    entries = edit(store_target, store, 2, **changes)
    result = log.verify()
    assert_broken(result, entries[2].id, "MAC")
    assert (result.total, result.valid) == (3, 2)


def test_an_event_edited_with_its_seq_and_prev_kept_but_mac_recomputed_badly_is_caught(
    log: AuditLog, store: Store, store_target: StoreTarget
) -> None:
    record_some(log)
    entries = edit(store_target, store, 4, mac="0" * 64)
    assert_broken(log.verify(), entries[4].id, "MAC")


def test_an_event_deleted_in_the_middle_is_caught(
    log: AuditLog, store: Store, store_target: StoreTarget
) -> None:
    entries = record_some(log)
    delete(store_target, store, entries[2].id)
    result = log.verify()
    assert_broken(result, entries[3].id, "missing")
    assert result.valid == 2


def test_two_swapped_events_are_caught(
    log: AuditLog, store: Store, store_target: StoreTarget
) -> None:
    bodies: list[Mapping[str, Any]] = [e.fields for e in record_some(log)]
    bodies[2], bodies[3] = bodies[3], bodies[2]
    entries = rewrite(store_target, store, bodies)
    result = log.verify()
    assert_broken(result, entries[2].id, "moved (reordered)")
    assert result.valid == 2


def test_a_forged_event_inserted_in_the_middle_is_caught(
    log: AuditLog, store: Store, store_target: StoreTarget
) -> None:
    bodies: list[Mapping[str, Any]] = [e.fields for e in record_some(log)]
    # A plausible event that claims to follow the second one, with a made-up MAC.
    forged = {**bodies[1], "seq": 3, "prev": bodies[1]["mac"], "subject": "mallory"}
    forged["mac"] = secrets.token_hex(32)
    entries = rewrite(store_target, store, [*bodies[:2], forged, *bodies[2:]])
    assert_broken(log.verify(), entries[2].id, "MAC")


def test_a_forged_event_appended_at_the_end_is_caught(log: AuditLog, store: Store) -> None:
    bodies = [e.fields for e in record_some(log)]
    forged = {**bodies[-1], "seq": EVENTS + 1, "prev": bodies[-1]["mac"], "outcome": "allowed"}
    forged["mac"] = secrets.token_hex(32)
    appended = store.log_append(STREAM, forged)
    result = log.verify()
    assert_broken(result, appended.id, "MAC")
    assert (result.total, result.valid) == (EVENTS + 1, EVENTS)


def test_a_replayed_genuine_event_is_caught(log: AuditLog, store: Store) -> None:
    """A copy of a real event has a valid MAC: only the chain shows it does not belong."""
    bodies = [e.fields for e in record_some(log)]
    replayed = store.log_append(STREAM, bodies[1])
    assert_broken(log.verify(), replayed.id, "reordered or inserted")


def test_an_event_without_chain_fields_is_caught(log: AuditLog, store: Store) -> None:
    record_some(log, 2)
    stray = store.log_append(STREAM, {"type": "key.created", "outcome": "allowed"})
    assert_broken(log.verify(), stray.id, "chain")


def test_a_log_written_after_a_forged_event_still_verifies_only_up_to_it(
    log: AuditLog, store: Store
) -> None:
    """A forgery stays visible however many genuine events follow it."""
    record_some(log, 2)
    stray = store.log_append(STREAM, {"seq": 3, "mac": "f" * 64, "type": "x", "prev": ""})
    for _ in range(3):
        log.record("rate.reset", Outcome.ALLOWED, subject="bob")
    result = log.verify()
    assert_broken(result, stray.id, "MAC")
    assert (result.total, result.valid) == (3, 2)


# -- retention --------------------------------------------------------------------------------


def test_trimming_by_max_events_is_reported_not_a_problem(
    store: Store, store_target: StoreTarget, key: bytes
) -> None:
    log = AuditLog(store, key, max_events=10)
    total = 300
    for n in range(total):
        log.record("rate.limited", Outcome.DENIED, subject=f"s{n}")
    kept = read_all(store)
    result = log.verify()
    assert result.intact, result
    assert (result.total, result.valid) == (len(kept), len(kept))
    assert result.trimmed == total - len(kept) > 0
    assert kept[-1].fields["seq"] == total  # the newest is never lost
    if store_target.backend == "sqlite":
        assert len(kept) <= 10
    # After trimming, the chain goes on and still verifies.
    log.record("rate.reset", Outcome.ALLOWED, subject="s0")
    again = log.verify()
    assert again.intact and again.valid == again.total and again.total >= len(kept)


def test_tampering_after_trimming_is_still_caught(
    store: Store, store_target: StoreTarget, key: bytes
) -> None:
    log = AuditLog(store, key, max_events=10)
    for n in range(300):
        log.record("rate.limited", Outcome.DENIED, subject=f"s{n}")
    kept = read_all(store)
    delete(store_target, store, kept[len(kept) // 2].id)
    assert_broken(log.verify(), kept[len(kept) // 2 + 1].id, "missing")


# -- verify(since=...) ------------------------------------------------------------------------


def test_verify_since_counts_only_events_since(store: Store, key: bytes) -> None:
    clock = ManualClock(1_700_000_000.0)
    log = AuditLog(store, key, clock=clock)
    for _ in range(5):
        log.record("key.verified", Outcome.ALLOWED, key_id="4fJq8Lw2Xc9a")
        clock.advance(60)
    # events at +0, +60, +120, +180, +240
    since = 1_700_000_000.0 + 120
    result = log.verify(since=since)
    assert result.intact and (result.total, result.valid) == (3, 3)
    assert (log.verify(since=since + 1).total, log.verify().total) == (2, 5)
    assert log.verify(since=1_700_000_000.0 + 10_000).total == 0


def test_verify_since_still_checks_the_chain_before_it(
    store: Store, store_target: StoreTarget, key: bytes
) -> None:
    """A window does not hide tampering just before it: the links into it are checked."""
    clock = ManualClock(1_700_000_000.0)
    log = AuditLog(store, key, clock=clock)
    for _ in range(5):
        log.record("key.verified", Outcome.ALLOWED, key_id="4fJq8Lw2Xc9a")
        clock.advance(60)
    entries = read_all(store)
    delete(store_target, store, entries[1].id)
    result = log.verify(since=1_700_000_000.0 + 180)
    assert not result.intact and result.event_id == entries[2].id
    assert result.total == 0  # nothing of the window examined yet when the break was found


# -- concurrency ------------------------------------------------------------------------------


class CountingStore:
    """The store, with every chained append's batch size noted; the first append waits
    until `hold` more events are queued, so that they must go in together."""

    def __init__(self, store: Store, hold: int) -> None:
        self.store, self.hold, self.batches = store, hold, list[int]()
        self.log: AuditLog | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def log_append_after(self, stream: str, entries: Any, **options: Any) -> Any:
        if not self.batches and self.log is not None:
            deadline = time.monotonic() + 30
            while len(self.log._queue) < self.hold and time.monotonic() < deadline:
                time.sleep(0.001)
        self.batches.append(len(entries))
        return self.store.log_append_after(stream, entries, **options)


def test_threads_sharing_one_log_append_together(store: Store, key: bytes) -> None:
    """Group commit: events queued while one thread appends go in with its next round
    trip, chained in the order they were queued, and every thread gets its own event."""
    threads, per_thread = 8, 50
    counting = CountingStore(store, hold=threads - 1)
    log = AuditLog(cast(Store, counting), key)
    counting.log = log
    barrier = threading.Barrier(threads)

    def work(t: int) -> list[int]:
        barrier.wait(timeout=30)
        return [
            log.record("key.verified", Outcome.ALLOWED, details={"t": t, "n": n}).seq
            for n in range(per_thread)
        ]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        seqs = [f.result(timeout=120) for f in [pool.submit(work, t) for t in range(threads)]]

    result = AuditLog(store, key).verify()
    assert result.intact, result
    assert (result.total, result.valid) == (400, 400)
    assert sum(counting.batches) == 400
    # The first append held the others back: all of them (and perhaps the first thread's
    # next event) went in with the second round trip.
    assert counting.batches[0] == 1 and counting.batches[1] >= threads - 1
    assert len(counting.batches) < 400
    events = {e.seq: e for e in AuditLog(store, key).events()}
    for t, mine in enumerate(seqs):  # each thread got back its own events, in its order
        assert mine == sorted(mine)
        assert [events[s].details for s in mine] == [{"t": t, "n": n} for n in range(per_thread)]


def test_a_failed_batch_fails_every_waiter_and_the_next_batch_goes_in(
    store: Store, key: bytes
) -> None:
    class Failing(CountingStore):
        def log_append_after(self, stream: str, entries: Any, **options: Any) -> Any:
            if len(self.batches) == 1:  # the second append: the held-back batch
                self.batches.append(len(entries))
                raise StoreError("the store is unavailable")
            return super().log_append_after(stream, entries, **options)

    failing = Failing(store, hold=3)
    log = AuditLog(cast(Store, failing), key)
    failing.log = log
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(log.record, "rate.reset", Outcome.ALLOWED, subject=f"s{n}")
            for n in range(4)
        ]
        outcomes = [f.exception(timeout=60) for f in futures]
    assert sum(isinstance(o, StoreError) for o in outcomes) == 3
    assert failing.batches[:2] == [1, 3]
    log.record("rate.reset", Outcome.ALLOWED, subject="after")
    result = AuditLog(store, key).verify()
    assert result.intact and result.total == 2


def test_concurrent_writers_keep_one_chain(store: Store, key: bytes) -> None:
    threads, per_thread = 8, 50
    barrier = threading.Barrier(threads)

    def work(t: int) -> None:
        own = AuditLog(store, key, actor=f"thread{t}")  # one object per thread
        barrier.wait(timeout=30)
        for n in range(per_thread):
            own.record("key.verified", Outcome.ALLOWED, details={"t": t, "n": n})

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(work, t) for t in range(threads)]:
            future.result(timeout=120)

    log = AuditLog(store, key)
    result = log.verify()
    assert result.intact, result
    assert (result.total, result.valid, result.trimmed) == (400, 400, 0)
    events = list(log.events())
    assert [e.seq for e in events] == list(range(1, 401))
    seen = sorted((int(e.details["t"]), int(e.details["n"])) for e in events)
    assert seen == [(t, n) for t in range(threads) for n in range(per_thread)]
    for t in range(threads):  # each writer's events in its own order
        mine = [e.details["n"] for e in events if e.actor == f"thread{t}"]
        assert mine == list(range(per_thread))


def test_verdicts_go_in_meanwhile_in_order_and_reads_wait_for_them(
    store: Store, key: bytes
) -> None:
    """`verdict` does not wait for the store; the background appender keeps their order,
    and anything that reads the log (or its failures) first waits for the queue."""
    log = AuditLog(store, key)
    log.change("rate.reset", Outcome.ALLOWED, subject="first")
    for n in range(50):
        log.verdict("key.verified", Outcome.ALLOWED, details={"n": n})
    log.change("rate.reset", Outcome.ALLOWED, subject="last")
    events = list(log.events())
    assert [e.subject for e in (events[0], events[-1])] == ["first", "last"]
    assert [e.details["n"] for e in events[1:-1]] == list(range(50))
    assert log.failures == []
    assert log.verify().intact and log.verify().total == 52


def test_a_verdict_that_cannot_be_stored_is_reported_not_raised(key: bytes) -> None:
    dead = open_store("redis://127.0.0.1:9/0", timeout=0.2)
    try:
        log = AuditLog(dead, key)
        log.verdict("key.verified", Outcome.DENIED, reason="revoked")  # returns at once
        assert log.flush(timeout=30)
        assert len(log.failures) == 1 and log.failures[0].startswith("key.verified: ")
        with pytest.raises(StoreError):
            log.change("key.revoked", Outcome.ALLOWED, key_id="4fJq8Lw2Xc9a")
    finally:
        dead.close()
