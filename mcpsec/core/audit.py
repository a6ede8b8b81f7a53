"""The audit log: one event per decision and change, chained with a keyed MAC.

    log = AuditLog(store, key, actor="alice")
    log.change("key.revoked", key_id="4fJq8Lw2Xc9a", reason="leaked")
    log.verify()                    # Verification(total=…, valid=…, problem=None)

Each event is stored with its sequence number, the MAC of the event before it (`prev`) and
its own MAC (`mac`): HMAC-SHA256 under the audit key over the canonical JSON of everything
else. Changing a field breaks its MAC; deleting, reordering or inserting one breaks the
sequence or the `prev` link; forging one needs the key. An event goes in only right after
the one it names (`Store.log_append_after`), so many writers at once keep one chain.

Events never carry a secret: an API key or token that cannot be named by its key id or
`jti` (a malformed one) is recorded as a keyed HMAC (`credential`), which `mcpsec audit hash`
computes for an operator searching for it, and which cannot be matched offline.
"""

from __future__ import annotations

import atexit
import getpass
import hashlib
import hmac
import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Protocol

from mcpsec.core.clock import Clock, SystemClock, to_datetime
from mcpsec.core.errors import InvalidInputError, MCPSecError, SecretError, StoreError
from mcpsec.core.secret_files import (
    MIN_SECRET_BYTES,
    Secret,
    check_strength,
    new_secret_value,
    read_secret_file,
    write_private_file,
)
from mcpsec.store import LogEntry, Store

if TYPE_CHECKING:  # config imports the rate limiter, which imports this module
    from mcpsec.core.config import Settings

STREAM: Final = "audit"
VERSION: Final = 1
CHAIN_FIELDS: Final = ("v", "seq", "time", "prev", "mac")
EVENT_FIELDS: Final = (
    "type",
    "outcome",
    "actor",
    "subject",
    "key_id",
    "jti",
    "reason",
    "client",
    "tool",
    "request_id",
    "credential",
    "details",
)
_APPEND_DEADLINE: Final = 10.0  # seconds of chain contention before an append gives up
_PAGE: Final = 1000
_BATCH: Final = 64  # events appended in one round trip, at most
_FLUSHER_IDLE: Final = 5.0  # seconds a background appender waits for work before it ends
_MAX_QUEUED: Final = 100_000  # verdicts waiting for the store; beyond it they are dropped
_MAX_FAILURES: Final = 1000  # failure messages kept; beyond it they are counted
_LOGS: weakref.WeakSet[AuditLog] = weakref.WeakSet()  # reset in a forked child


class Outcome(StrEnum):
    ALLOWED = "allowed"  # a verdict that let something through, or a change that was made
    DENIED = "denied"  # a negative verdict: invalid, revoked, denied, rate limited
    ERROR = "error"  # a change that was attempted and failed


class Audit(Protocol):
    """What the core services need from the audit log.

    `change` records a change about to be made and raises StoreError if it cannot (when the
    log is required), so that no change goes unrecorded; `verdict` records a decision and
    never raises (a failure is kept in `failures`, for the caller to report).
    """

    def change(self, type: str, outcome: Outcome = ..., **fields: Any) -> None: ...

    def verdict(self, type: str, outcome: Outcome, **fields: Any) -> None: ...

    def credential(self, value: str) -> str: ...


class NoAudit:
    """For library users who keep no audit log: every event is dropped."""

    def change(self, type: str, outcome: Outcome = Outcome.ALLOWED, **fields: Any) -> None:
        return None

    def verdict(self, type: str, outcome: Outcome, **fields: Any) -> None:
        return None

    def credential(self, value: str) -> str:
        return ""


@contextmanager
def audited(audit: Audit, type: str, **fields: Any) -> Iterator[None]:
    """Record a change before making it; if making it then fails, record that too.

    An event that cannot be recorded stops the change (StoreError): the log never misses
    a change that happened. A change that fails after its event gets an `error` event.
    """
    audit.change(type, Outcome.ALLOWED, **fields)
    try:
        yield
    except MCPSecError as e:
        audit.verdict(type, Outcome.ERROR, **{**fields, "reason": e.message[:300]})
        raise


NO_AUDIT: Final = NoAudit()

# What a server knows about the request being served (client, tool, request id, actor):
# added to every event recorded while serving it, including the core's own verdicts.
_REQUEST: ContextVar[Mapping[str, Any]] = ContextVar(
    "mcpsec_audit_request", default=MappingProxyType({})
)
REQUEST_FIELDS: Final = frozenset({"actor", "client", "tool", "request_id", "key_id", "jti"})


@contextmanager
def request_context(**fields: Any) -> Iterator[None]:
    """Events recorded inside carry these request fields (unless the event names its own)."""
    unknown = sorted(set(fields) - REQUEST_FIELDS)
    if unknown:
        raise InvalidInputError(f"request context has no field {unknown[0]!r}")
    given = {k: v for k, v in fields.items() if v is not None}
    token = _REQUEST.set({**_REQUEST.get(), **given})
    try:
        yield
    finally:
        _REQUEST.reset(token)


@dataclass(frozen=True)
class AuditEvent:
    """One event as stored and shown: the chain fields and what happened."""

    id: str
    seq: int
    time: datetime
    type: str = field(metadata={"essential": True})
    outcome: str
    actor: str | None = None
    subject: str | None = None
    key_id: str | None = None
    jti: str | None = None
    reason: str | None = None
    client: str | None = None
    tool: str | None = None
    request_id: str | None = None
    credential: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, entry: LogEntry) -> AuditEvent:
        f = entry.fields

        def text(name: str) -> str | None:
            value = f.get(name)
            return str(value) if value is not None else None

        details = f.get("details")
        return cls(
            entry.id,
            f["seq"] if isinstance(f.get("seq"), int) else 0,
            to_datetime(float(f.get("time") or entry.time)),
            str(f.get("type") or "?"),
            str(f.get("outcome") or "?"),
            text("actor"),
            text("subject"),
            text("key_id"),
            text("jti"),
            text("reason"),
            text("client"),
            text("tool"),
            text("request_id"),
            text("credential"),
            dict(details) if isinstance(details, dict) else {},
        )


@dataclass
class _Waiting:
    """One event queued for the thread appending for everyone (group commit)."""

    event: dict[str, Any]  # what happened, with its time; the chain fields come later
    wake: threading.Event | None = None  # only for a caller that waits on another thread
    waited_for: bool = True  # a thread waits for it (False: a verdict, appended meanwhile)
    lead: bool = False  # this event's thread appends the queue now
    stored: LogEntry | None = None
    error: MCPSecError | None = None

    @property
    def finished(self) -> bool:
        return self.stored is not None or self.error is not None

    def finish(self, *, stored: LogEntry | None = None, error: MCPSecError | None = None) -> None:
        self.stored, self.error = stored, error
        if self.wake is not None:
            self.wake.set()


@dataclass(frozen=True)
class EventFilter:
    types: tuple[str, ...] = ()
    subject: str | None = None
    outcome: Outcome | None = None
    since: float | None = None
    until: float | None = None

    def matches(self, event: AuditEvent) -> bool:
        at = event.time.timestamp()
        return (
            (not self.types or event.type in self.types)
            and (self.subject is None or event.subject == self.subject)
            and (self.outcome is None or event.outcome == self.outcome.value)
            and (self.since is None or at >= self.since)
            and (self.until is None or at <= self.until)
        )


@dataclass(frozen=True)
class Verification:
    total: int  # events examined
    valid: int = field(metadata={"essential": True})
    trimmed: int  # events before the first one kept, removed by retention (not tampering)
    problem: str | None  # the first break in the chain, in words
    event_id: str | None  # where it is

    @property
    def intact(self) -> bool:
        return self.problem is None


class AuditLog:
    """The audit log on a Store, chained with `key`; safe to share between threads."""

    def __init__(
        self,
        store: Store | Callable[[], Store],
        key: Secret | bytes,
        *,
        actor: str | None = None,
        stream: str = STREAM,
        max_events: int | None = None,
        max_age: float | None = None,
        sink: Path | None = None,
        required: bool = True,
        clock: Clock | None = None,
    ) -> None:
        secret = key if isinstance(key, Secret) else Secret(key, "the audit key")
        check_strength(secret)
        self._store = store
        self._opened: Store | None = None
        self._key = secret.reveal()
        self.actor = actor or os_user()
        self.stream = stream
        self.max_events = max_events
        self.max_age = max_age
        self.sink = sink
        self.required = required
        self.clock = clock or SystemClock()
        self._failures: list[str] = []  # events that could not be recorded, to report
        self._dropped_failures = 0  # failures beyond _MAX_FAILURES, counted only
        self._dropped = 0  # verdicts not even queued: the queue was full
        self.log_failures = False  # also log each failure (a server; the CLI prints them)
        self._in_flight: list[_Waiting] = []  # the batch being appended
        self._last: tuple[str | None, int, str] | None = None  # (id, seq, mac) of our tail
        self._lock = threading.Lock()
        self._turn = threading.Condition(self._lock)  # the flusher's turn; the log idle
        self._queue: list[_Waiting] = []  # events waiting to be appended, oldest first
        self._appending = False  # whether a thread is appending the queue (see `record`)
        self._flusher: threading.Thread | None = None  # appends verdicts in the background
        self._flusher_due = False
        atexit.register(_flush_at_exit, weakref.ref(self))
        _LOGS.add(self)

    @classmethod
    def from_settings(
        cls, settings: Settings, store: Store | Callable[[], Store], *, actor: str | None = None
    ) -> AuditLog:
        """The log as `[audit]` configures it (its key file made on first use)."""
        audit = settings.audit
        return cls(
            store,
            load_audit_key(audit.key, audit.key_file),
            actor=actor,
            max_events=audit.max_events,
            max_age=audit.max_age,
            sink=audit.sink,
            required=audit.required,
        )

    @property
    def failures(self) -> list[str]:
        """Events that could not be recorded (verdicts, changes while not `required`, sink
        copies), once everything queued has been tried: for the caller to report."""
        flushed = self.flush()
        found = list(self._failures)
        if not flushed:
            with self._lock:
                waiting = len(self._queue) + len(self._in_flight)
            found.append(f"{waiting} event(s): still not stored after waiting; they may be lost")
        if self._dropped:
            found.append(f"{self._dropped} verdict(s): dropped, the store did not keep up")
        if self._dropped_failures:
            found.append(f"{self._dropped_failures} more event(s): not listed")
        return found

    @property
    def store(self) -> Store:
        if self._opened is None:
            self._opened = self._store() if callable(self._store) else self._store
        return self._opened

    # -- write -----------------------------------------------------------------------------

    def change(self, type: str, outcome: Outcome = Outcome.ALLOWED, **fields: Any) -> None:
        """Record a change. If it cannot be stored: raise StoreError when the log is
        required (the caller must then not make the change), else remember the failure."""
        try:
            self.record(type, outcome, **fields)
        except MCPSecError as e:
            if self.required:
                # Keep the store's family and hint: every change writes its event first, so
                # this is how most write failures reach the caller, who must still tell an
                # unreachable store from a read-only one, and the user still learn what to do.
                family = e.__class__ if isinstance(e, StoreError) else StoreError
                message = f"the audit log could not record {type}: {e.message}"
                raise family(message, hint=e.hint) from e
            self._fail(f"{type}: {e.message}")

    def verdict(self, type: str, outcome: Outcome, **fields: Any) -> None:
        """Record a decision without waiting for it: a background thread appends it with
        whatever else is queued (a server's request is not held up by its audit write).
        Never raises: a failure is kept in `failures`, which waits for the queue first."""
        try:
            waiting = self._enqueue(type, outcome, fields, wait=False)
            if waiting is not None and waiting.lead:  # no background thread to be had
                self._lead(waiting)
        except MCPSecError as e:
            self._fail(f"{type}: {e.message}")

    def flush(self, timeout: float = _APPEND_DEADLINE * 2) -> bool:
        """Wait until every queued event has been appended (or has failed); False if that
        takes longer than `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._turn:
            while self._appending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._turn.wait(remaining)
        return True

    def record(self, type: str, outcome: Outcome, **fields: Any) -> AuditEvent:
        """Append one event and return it as stored; raises StoreError if it cannot be.

        Group commit: the calling thread that finds nobody appending appends every queued
        event, up to a batch per round trip, until its own is in, then leaves the rest to
        a background thread; the others wait. Concurrent requests of one server thus share
        round trips instead of racing each other for the chain's tail.
        """
        waiting = self._enqueue(type, outcome, fields, wait=True)
        assert waiting is not None
        if waiting.lead:
            self._lead(waiting)
        elif waiting.wake is not None and not waiting.wake.wait(_APPEND_DEADLINE * 3):
            raise StoreError("the audit log did not record the event in time; try again")
        if waiting.error is not None:
            raise waiting.error
        assert waiting.stored is not None
        return AuditEvent.of(waiting.stored)

    def _enqueue(
        self, type: str, outcome: Outcome, fields: Mapping[str, Any], *, wait: bool
    ) -> _Waiting | None:
        """Queue one event; None when a verdict is dropped because the queue is full (the
        store has not kept up for a while: memory must not grow without bound)."""
        event = _event_fields(type, outcome, {"actor": self.actor, **_REQUEST.get(), **fields})
        _check_serializable(event)  # a bad value fails its own caller, not a whole batch
        with self._lock:
            if not wait and len(self._queue) >= _MAX_QUEUED:
                self._dropped += 1
                return None
            waiting = _Waiting({"time": self.clock.now(), **event}, waited_for=wait)
            self._queue.append(waiting)
            if not self._appending:
                self._appending = True
                waiting.lead = wait or not self._start_flusher()
            elif wait:
                waiting.wake = threading.Event()  # set under this lock's protection: no race
        return waiting

    def _lead(self, own: _Waiting | None = None) -> None:
        """Append queued events, oldest first, a batch per round trip. The background
        thread (`own` None) goes on until the queue is empty; a caller, until its own event
        is in, then hands the rest to the background thread (or, if none can be started,
        goes on itself)."""
        try:
            while True:
                with self._lock:
                    if not self._queue:
                        self._idle()
                        return
                    if own is not None and own.finished and self._start_flusher():
                        return
                    batch = self._queue[:_BATCH]
                    del self._queue[:_BATCH]
                    self._in_flight = batch
                self._append_batch(batch)
        except BaseException:
            with self._lock:
                self._abandon()
            raise

    def _idle(self) -> None:
        """With the lock held: nothing queued, nobody appending; flush() may return."""
        self._appending = False
        self._in_flight = []
        self._turn.notify_all()

    def _abandon(self) -> None:
        """With the lock held, when an appending thread is interrupted (KeyboardInterrupt,
        SystemExit): whatever it held or was queued fails, so that no caller waits for
        ever, and the log is free for the next event."""
        failure = StoreError("the audit log was interrupted before the event was recorded")
        for waiting in [*self._in_flight, *self._queue]:
            if not waiting.finished:
                self._finish(waiting, error=failure)
        self._queue = []
        if threading.current_thread() is self._flusher:
            self._flusher = None  # this thread ends: the next event starts another
        self._idle()

    def _start_flusher(self) -> bool:
        """With the lock held: make the background thread append the queue; False if no
        thread can be started (the interpreter is shutting down)."""
        self._flusher_due = True
        if self._flusher is None:
            thread = threading.Thread(
                target=_run_flusher, args=(weakref.ref(self),), name="mcpsec-audit", daemon=True
            )
            try:
                thread.start()
            except RuntimeError:
                self._flusher_due = False
                return False
            self._flusher = thread
        self._turn.notify_all()
        return True

    def _append_batch(self, batch: list[_Waiting]) -> None:
        """Chain `batch` to the log's tail and append it in one step, chaining again to
        whatever another writer appended first; every waiter is told how it went."""
        try:
            deadline = time.monotonic() + _APPEND_DEADLINE
            while True:
                after, seq, prev = self._tail()
                bodies = []
                for n, waiting in enumerate(batch, 1):
                    body = {"v": VERSION, "seq": seq + n, **waiting.event, "prev": prev}
                    body["mac"] = prev = self._mac(body)
                    bodies.append(body)
                result = self.store.log_append_after(
                    self.stream, bodies, after=after, maxlen=self.max_events, max_age=self.max_age
                )
                if result.ok:
                    break
                self._last = _link(result.last)
                if time.monotonic() > deadline:
                    raise StoreError("the audit log is too busy to append to; try again")
        except Exception as e:
            failure = e if isinstance(e, MCPSecError) else StoreError(f"audit append failed: {e}")
            self._last = None  # unknown now: read the tail again next time
            for waiting in batch:
                self._finish(waiting, error=failure)
            return  # told to every waiter; the next batch may fare better
        last = result.appended[-1]
        self._last = (last.id, int(bodies[-1]["seq"]), str(bodies[-1]["mac"]))
        try:
            self._to_sink(result.appended)
        except StoreError as e:  # the events are stored: only the copies are missing
            types = ", ".join(dict.fromkeys(str(w.event["type"]) for w in batch))
            self._fail(f"{types} (copy to the sink): {e.message}")
        for waiting, entry in zip(batch, result.appended, strict=True):
            self._finish(waiting, stored=entry)

    def _finish(
        self, waiting: _Waiting, *, stored: LogEntry | None = None, error: MCPSecError | None = None
    ) -> None:
        waiting.finish(stored=stored, error=error)
        if error is not None and not waiting.waited_for:  # nobody to raise it to
            self._fail(f"{waiting.event['type']}: {error.message}")

    def _fail(self, message: str) -> None:
        """Keep a failure to report (bounded), and log it where a server's logs go."""
        if len(self._failures) < _MAX_FAILURES:
            self._failures.append(message)
        else:
            self._dropped_failures += 1
        if self.log_failures:  # imported here: the CLI never logs, and starts faster without
            import logging

            logging.getLogger("mcpsec.audit").warning("the audit log could not record %s", message)

    def credential(self, value: str) -> str:
        """The keyed HMAC that names a credential in events without revealing it."""
        digest = hmac.new(self._key, b"credential\x00" + value.encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    # -- read ------------------------------------------------------------------------------

    def events(
        self, where: EventFilter | None = None, *, after: str | None = None
    ) -> Iterator[AuditEvent]:
        """Every event (matching `where`), oldest first, a page at a time."""
        self.flush()
        chosen = where or EventFilter()
        position = after
        while True:
            page = self.store.log_read(self.stream, after=position, limit=_PAGE)
            for entry in page:
                event = AuditEvent.of(entry)
                if chosen.matches(event):
                    yield event
            if len(page) < _PAGE:
                return
            position = page[-1].id

    def newest_id(self) -> str:
        """The id of the newest event, or "" for an empty log: where to follow from."""
        self.flush()
        tail = self.store.log_tail(self.stream, 1)
        return tail[-1].id if tail else ""

    def last(self, count: int, where: EventFilter | None = None) -> list[AuditEvent]:
        """The newest `count` matching events, oldest first. Without a filter, one read;
        with one, the log is walked (an audit log is read far less than it is written)."""
        if where is None or where == EventFilter():
            self.flush()
            return [AuditEvent.of(e) for e in self.store.log_tail(self.stream, count)]
        found: list[AuditEvent] = []
        for event in self.events(where):
            found.append(event)
            if len(found) > count:
                found.pop(0)
        return found

    def follow(
        self, where: EventFilter | None = None, *, after: str | None = None, poll: float = 0.25
    ) -> Iterator[AuditEvent]:
        """New events after `after` (None: after the newest now; "": from the start), as they
        are appended, for ever (the caller stops iterating)."""
        chosen = where or EventFilter()
        position: str | None = after or None  # "": from the very start
        if after is None:
            position = self.newest_id() or None
        while True:
            page = self.store.log_read(self.stream, after=position, limit=_PAGE, block=poll)
            for entry in page:
                position = entry.id
                event = AuditEvent.of(entry)
                if chosen.matches(event):
                    yield event

    # -- check -----------------------------------------------------------------------------

    def verify(self, since: float | None = None) -> Verification:
        """Walk the chain: every MAC, every `prev` link, every sequence number in order."""
        self.flush()
        total = valid = trimmed = 0
        previous: tuple[int, str] | None = None
        position: str | None = None
        while True:
            page = self.store.log_read(self.stream, after=position, limit=_PAGE)
            for entry in page:
                body = entry.fields
                problem = self._check(body, previous)
                counted = since is None or float(body.get("time") or 0) >= since
                if previous is None and problem is None:
                    trimmed = int(body["seq"]) - 1
                if counted:
                    total += 1
                if problem is not None:
                    return Verification(total, valid, trimmed, problem, entry.id)
                if counted:
                    valid += 1
                previous = (int(body["seq"]), str(body["mac"]))
            if len(page) < _PAGE:
                return Verification(total, valid, trimmed, None, None)
            position = page[-1].id

    def _check(self, body: Mapping[str, Any], previous: tuple[int, str] | None) -> str | None:
        if not isinstance(body.get("mac"), str) or not isinstance(body.get("seq"), int):
            return "an event without the chain's fields: inserted or damaged"
        if not hmac.compare_digest(body["mac"], self._mac(body)):
            return "its MAC does not match: the event was edited, or forged without the key"
        if previous is None:
            return None  # the oldest kept: earlier ones, if any, were trimmed by retention
        seq, mac = previous
        if body["seq"] == seq + 1 and body.get("prev") == mac:
            return None
        if body["seq"] > seq + 1:
            gap = body["seq"] - seq - 1
            return f"{gap} event(s) before it are missing: deleted, or moved (reordered)"
        return "it does not follow the event before it: reordered or inserted"

    # -- plumbing --------------------------------------------------------------------------

    def _tail(self) -> tuple[str | None, int, str]:
        if self._last is None:
            tail = self.store.log_tail(self.stream, 1)
            self._last = _link(tail[-1] if tail else None)
        return self._last

    def _mac(self, body: Mapping[str, Any]) -> str:
        signed = {k: v for k, v in body.items() if k != "mac"}
        return hmac.new(self._key, canonical(signed), hashlib.sha256).hexdigest()

    def _to_sink(self, entries: Sequence[LogEntry]) -> None:
        """Also one JSON line per event in the sink file (0600), for shipping to a SIEM."""
        if self.sink is None:
            return
        lines = "".join(
            json.dumps({"id": e.id, **e.fields}, separators=(",", ":")) + "\n" for e in entries
        )
        try:
            fd = os.open(self.sink, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, lines.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise StoreError(f"cannot append to the audit sink {self.sink}: {e.strerror}") from e


def _run_flusher(ref: weakref.ReferenceType[AuditLog]) -> None:
    """The background thread of one AuditLog: appends what is queued whenever it is due;
    ends when idle for a while (a new one starts when needed) or when the log is gone."""
    idle_since = time.monotonic()
    while True:
        log = ref()
        if log is None:
            return
        with log._turn:
            if not log._flusher_due:
                log._turn.wait(timeout=0.5)
            if not log._flusher_due:
                if time.monotonic() - idle_since > _FLUSHER_IDLE:
                    log._flusher = None
                    return
                del log
                continue
            log._flusher_due = False
        log._lead()
        idle_since = time.monotonic()
        del log


def _forget_parent_state() -> None:
    """In a forked child: the parent's background thread does not exist here and its lock
    may have been held; the parent's queued events are the parent's to append."""
    for log in list(_LOGS):
        log._lock = threading.Lock()
        log._turn = threading.Condition(log._lock)
        log._queue, log._in_flight = [], []
        log._appending = log._flusher_due = False
        log._flusher = None


os.register_at_fork(after_in_child=_forget_parent_state)


def _check_serializable(event: Mapping[str, Any]) -> None:
    """Every value JSON can carry; text and whole numbers (nearly all of them) need no test."""
    for value in event.values():
        if isinstance(value, str | int) or value is None:
            continue
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise InvalidInputError("an audit event holds a value that is not JSON") from None


def _flush_at_exit(ref: weakref.ReferenceType[AuditLog]) -> None:
    """Verdicts still queued when the interpreter exits are appended, not lost."""
    log = ref()
    if log is not None:
        log.flush()


def canonical(document: Mapping[str, Any]) -> bytes:
    """One spelling per document: sorted keys, no spaces, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def load_audit_key(secret: Secret | None, key_file: Path) -> Secret:
    """The audit key: given (env), or the key file, created (0600) on first use so that
    every command can be audited from the start; never replaced once it exists."""
    if secret is not None:
        check_strength(secret)
        return secret
    if not key_file.exists():
        try:
            write_private_file(key_file, (new_secret_value() + "\n").encode())
        except FileExistsError:
            pass  # another process made it first: use theirs
        except OSError as e:
            raise SecretError(f"cannot create the audit key {key_file}: {e.strerror}") from e
    found = read_secret_file(key_file)
    check_strength(found, MIN_SECRET_BYTES)
    return found


def parse_moment(text: str, now: float) -> float:
    """`1h` (that long ago) or an ISO 8601 time (UTC when it names no zone), as epoch seconds."""
    from datetime import UTC

    from mcpsec.core.durations import parse_duration

    cleaned = text.strip()
    try:
        return now - parse_duration(cleaned, field="time")
    except InvalidInputError:
        pass  # not a duration: an ISO time, then
    try:
        moment = datetime.fromisoformat(cleaned.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(
            f"{text!r} is neither a duration (like 1h) nor an ISO time (like 2026-11-22T10:00)",
            field="time",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_outcome(text: str) -> Outcome:
    try:
        return Outcome(text.lower())
    except ValueError:
        raise InvalidInputError(
            f"unknown outcome {text!r}; use allowed, denied or error", field="outcome"
        ) from None


def _event_fields(type: str, outcome: Outcome, fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(fields) - set(EVENT_FIELDS))
    if unknown:
        raise InvalidInputError(f"audit events have no field {unknown[0]!r}")
    event = {"type": type, "outcome": Outcome(outcome).value}
    event.update({k: v for k, v in fields.items() if v is not None and v != {}})
    return event


def _link(entry: LogEntry | None) -> tuple[str | None, int, str]:
    """(id, seq, mac) of the entry a new event must follow; of nothing for an empty log."""
    if entry is None:
        return None, 0, ""
    seq, mac = entry.fields.get("seq"), entry.fields.get("mac")
    if not isinstance(seq, int) or not isinstance(mac, str):
        # Not one of ours (or damaged): chain on from it anyway; verify will name it.
        return entry.id, 0, ""
    return entry.id, seq, mac
