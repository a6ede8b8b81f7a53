"""The embedded default store: one SQLite file, safe for many threads and processes at once.

    store = SqliteStore(Path("~/.local/share/mcpsec/mcpsec.db").expanduser(), url=...)

WAL lets readers run beside one writer; every write runs in `BEGIN IMMEDIATE`, which takes
the write lock up front so that a read-modify-write can never interleave with another.
The busy timeout is the store timeout: a locked database waits that long, then fails loudly.
Threads of one process queue for the file on a lock of their own first (see `_writer_lock`).
"""

from __future__ import annotations

import asyncio
import builtins
import hmac
import math
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from mcpsec.core.clock import Clock, SystemClock
from mcpsec.core.durations import check_lifetime
from mcpsec.core.errors import (
    ConfigError,
    InvalidInputError,
    StoreError,
    StoreReadOnlyError,
    StoreUnavailableError,
)
from mcpsec.core.secret_files import ensure_private_dir
from mcpsec.store import codec
from mcpsec.store.interface import (
    KEEP_TTL,
    KEY_GRANT_FIELDS,
    KEY_KIND,
    BucketEntry,
    BucketPage,
    BucketReply,
    BucketRequest,
    ChainedAppend,
    JSONValue,
    KeyOutcome,
    KeyTouch,
    LogEntry,
    Page,
    Record,
    StoreInfo,
    UpdateResult,
    UpdateStatus,
    _Keep,
    bucket_level,
    check_batch,
    check_buckets,
    check_fields,
    check_id,
    check_kind,
    check_limit,
    check_mark,
    check_retention,
    check_update,
    has,
    is_counter,
    refilled,
)
from mcpsec.store.url import redact_url

SCHEMA_VERSION: Final = 3
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    expires_at REAL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_expiry ON records (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    time REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_stream ON log (stream, seq);
CREATE TABLE IF NOT EXISTS marks (
    grp TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (grp, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS marks_expiry ON marks (expires_at);
CREATE TABLE IF NOT EXISTS buckets (
    grp TEXT NOT NULL,
    name TEXT NOT NULL,
    tokens REAL NOT NULL,
    ts REAL NOT NULL,
    capacity REAL NOT NULL,
    refill REAL NOT NULL,
    expires_at REAL,
    PRIMARY KEY (grp, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS buckets_expiry ON buckets (expires_at) WHERE expires_at IS NOT NULL;
"""
_DAMAGED_CODES: Final = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB
_PROBLEMS_SHOWN: Final = 3  # quick_check's first problems, enough to name the damage
# One writer lock per database file and process, shared by every store object on the file.
_WRITERS: dict[tuple[int, str], threading.Lock] = {}
_WRITERS_GUARD = [threading.Lock()]  # in a list, so that a forked child can replace it


def _forget_writers() -> None:
    """In a forked child: a guard some parent thread held at the fork would never free."""
    _WRITERS_GUARD[0] = threading.Lock()
    _WRITERS.clear()


os.register_at_fork(after_in_child=_forget_writers)
_PURGE_EVERY: Final = 60.0  # seconds between sweeps of expired rows; reads ignore them anyway
_FOLLOW_POLL: Final = 0.05


class SqliteStore:
    """Store backed by one SQLite file; a connection per thread, shared file between processes."""

    backend = "sqlite"

    def __init__(
        self, path: Path, *, url: str, timeout: float = 2.0, clock: Clock | None = None
    ) -> None:
        self.path = path
        self.url = url
        self.timeout = timeout
        self.clock = clock or SystemClock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._next_purge = 0.0
        self._create_file()
        self._file = str(path.resolve())  # names the writer lock: one per file, however reached
        with self._errors():
            self._migrate(self._connection())

    # -- records ---------------------------------------------------------------------------

    def put(
        self,
        kind: str,
        id: str,
        fields: Mapping[str, JSONValue],
        *,
        ttl: float | None = None,
        only_if_absent: bool = False,
    ) -> bool:
        check_kind(kind)
        check_id(id)
        check_fields(fields)
        check_lifetime(ttl)
        data = codec.encode_document(fields)
        with self._write() as db:
            now = self.clock.now()
            if only_if_absent and self._live_row(db, kind, id, now) is not None:
                return False
            db.execute(
                "INSERT OR REPLACE INTO records (kind, id, data, expires_at) VALUES (?, ?, ?, ?)",
                (kind, id, data, now + ttl if ttl else None),
            )
            return True

    def get(self, kind: str, id: str) -> Record | None:
        check_kind(kind)
        check_id(id)
        with self._errors():
            row = self._live_row(self._connection(), kind, id, self.clock.now())
        return _record(kind, id, row[0], row[1]) if row else None

    def get_many(self, kind: str, ids: Sequence[str]) -> builtins.list[Record | None]:
        check_kind(kind)
        for id in ids:
            check_id(id)
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        with self._errors():
            rows = (
                self._connection()
                .execute(
                    f"SELECT id, data, expires_at FROM records WHERE kind = ? AND id IN ({marks}) "  # noqa: S608 - only placeholders are interpolated
                    "AND (expires_at IS NULL OR expires_at > ?)",
                    (kind, *ids, self.clock.now()),
                )
                .fetchall()
            )
        found = {id: _record(kind, id, data, exp) for id, data, exp in rows}
        return [found.get(id) for id in ids]

    def touch_key(self, key_id: str, secret_hash: str, accepted: Sequence[str] = ()) -> KeyTouch:
        check_id(key_id)
        # A wrong key is answered from a read, without the write lock: a flood of made-up
        # keys must not queue up the writers. The write below checks everything again.
        with self._errors():
            if self._key_fields(self._connection(), key_id, secret_hash) is None:
                return KeyTouch(KeyOutcome.UNKNOWN)
        with self._write() as db:
            now = self.clock.now()
            fields = self._key_fields(db, key_id, secret_hash)
            if fields is None:
                return KeyTouch(KeyOutcome.UNKNOWN)
            outcome = _key_outcome(fields, now, accepted)
            if outcome is KeyOutcome.OK:
                fields["use_count"] = int(fields.get("use_count") or 0) + 1
                fields["last_used_at"] = now
                db.execute(
                    "UPDATE records SET data = ? WHERE kind = ? AND id = ?",
                    (codec.encode_document(fields), KEY_KIND, key_id),
                )
            return KeyTouch(outcome, {name: fields.get(name) for name in KEY_GRANT_FIELDS})

    def _key_fields(
        self, db: sqlite3.Connection, key_id: str, secret_hash: str
    ) -> dict[str, JSONValue] | None:
        """The key's fields if the hash matches (compared in constant time), else None."""
        row = self._live_row(db, KEY_KIND, key_id, self.clock.now())
        fields: dict[str, JSONValue] = codec.decode(row[0]) if row else {}
        stored = str(fields.get("hash", ""))
        if row is None or not hmac.compare_digest(stored.encode(), secret_hash.encode()):
            return None
        return fields

    def delete(self, kind: str, id: str) -> bool:
        check_kind(kind)
        check_id(id)
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM records WHERE kind = ? AND id = ? AND "
                "(expires_at IS NULL OR expires_at > ?)",
                (kind, id, self.clock.now()),
            )
            return cursor.rowcount > 0

    def list(self, kind: str, *, cursor: str | None = None, limit: int = 100) -> Page:
        check_kind(kind)
        check_limit(limit)
        with self._errors():
            rows = (
                self._connection()
                .execute(
                    "SELECT id, data, expires_at FROM records WHERE kind = ? AND id > ? "
                    "AND (expires_at IS NULL OR expires_at > ?) ORDER BY id LIMIT ?",
                    (kind, cursor or "", self.clock.now(), limit + 1),
                )
                .fetchall()
            )
        records = tuple(_record(kind, id, data, exp) for id, data, exp in rows[:limit])
        more = len(rows) > limit
        return Page(records, records[-1].id if more else None)

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
        check_kind(kind)
        check_id(id)
        check_update(set, increment, expect)
        if not isinstance(ttl, _Keep):
            check_lifetime(ttl)
        with self._write() as db:
            now = self.clock.now()
            row = self._live_row(db, kind, id, now)
            if row is None:
                return UpdateResult(UpdateStatus.MISSING, None)
            fields = codec.decode(row[0])
            expires_at = row[1]
            if not _expected(fields, expect or {}):
                return UpdateResult(UpdateStatus.CONFLICT, _record(kind, id, row[0], expires_at))
            fields.update(set or {})
            for name, amount in (increment or {}).items():
                fields[name] = _incremented(name, fields.get(name), amount)
            if not isinstance(ttl, _Keep):
                expires_at = now + ttl if ttl else None
            data = codec.encode_document(fields)
            db.execute(
                "UPDATE records SET data = ?, expires_at = ? WHERE kind = ? AND id = ?",
                (data, expires_at, kind, id),
            )
            return UpdateResult(UpdateStatus.UPDATED, _record(kind, id, data, expires_at))

    # -- log -------------------------------------------------------------------------------

    def log_append(
        self, stream: str, fields: Mapping[str, JSONValue], *, maxlen: int | None = None
    ) -> LogEntry:
        check_kind(stream)
        check_retention(maxlen)
        data = codec.encode_document(fields)
        with self._write() as db:
            now = self.clock.now()
            seq = _append_row(db, stream, data, now, maxlen, None)
        return LogEntry(str(seq), now, codec.decode(data))

    def log_append_after(
        self,
        stream: str,
        entries: Sequence[Mapping[str, JSONValue]],
        *,
        after: str | None,
        maxlen: int | None = None,
        max_age: float | None = None,
    ) -> ChainedAppend:
        check_kind(stream)
        check_batch(entries)
        expected = _seq(after) if after is not None else None
        check_retention(maxlen, max_age)
        documents = [codec.encode_document(fields) for fields in entries]
        with self._write() as db:
            now = self.clock.now()
            row = db.execute(
                "SELECT seq, time, data FROM log WHERE stream = ? ORDER BY seq DESC LIMIT 1",
                (stream,),
            ).fetchone()
            if (row[0] if row else None) != expected:
                last = LogEntry(str(row[0]), row[1], codec.decode(row[2])) if row else None
                return ChainedAppend((), last)
            appended = tuple(
                LogEntry(str(_append_row(db, stream, data, now, maxlen, max_age)), now, dict(f))
                for data, f in zip(documents, entries, strict=True)
            )
        return ChainedAppend(appended, None)

    def log_read(
        self, stream: str, *, after: str | None = None, limit: int = 100, block: float = 0
    ) -> builtins.list[LogEntry]:
        check_kind(stream)
        check_limit(limit)
        start = _seq(after)
        deadline = time.monotonic() + block
        while True:
            with self._errors():
                rows = (
                    self._connection()
                    .execute(
                        "SELECT seq, time, data FROM log WHERE stream = ? AND seq > ? "
                        "ORDER BY seq LIMIT ?",
                        (stream, start, limit),
                    )
                    .fetchall()
                )
            if rows or time.monotonic() >= deadline:
                return [LogEntry(str(seq), t, codec.decode(data)) for seq, t, data in rows]
            time.sleep(min(_FOLLOW_POLL, max(0.0, deadline - time.monotonic())))

    def log_tail(self, stream: str, count: int) -> builtins.list[LogEntry]:
        check_kind(stream)
        check_limit(count)
        with self._errors():
            rows = (
                self._connection()
                .execute(
                    "SELECT seq, time, data FROM log WHERE stream = ? ORDER BY seq DESC LIMIT ?",
                    (stream, count),
                )
                .fetchall()
            )
        return [LogEntry(str(seq), t, codec.decode(data)) for seq, t, data in reversed(rows)]

    # -- marks ---------------------------------------------------------------------------

    def set_mark(self, group: str, name: str, value: float, *, ttl: float) -> float:
        check_mark(group, [name], value)
        check_lifetime(ttl)
        with self._write() as db:
            now = self.clock.now()
            # An expired row counts as absent: its value must not hold the new one down.
            db.execute(
                "INSERT INTO marks (grp, name, value, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (grp, name) DO UPDATE SET "
                "value = CASE WHEN expires_at <= ? THEN excluded.value "
                "ELSE max(value, excluded.value) END, "
                "expires_at = CASE WHEN expires_at <= ? THEN excluded.expires_at "
                "ELSE max(expires_at, excluded.expires_at) END",
                (group, name, float(value), now + ttl, now, now),
            )
            (held,) = db.execute(
                "SELECT value FROM marks WHERE grp = ? AND name = ?", (group, name)
            ).fetchone()
        return float(held)

    def get_marks(self, group: str, names: Sequence[str]) -> builtins.list[float | None]:
        check_mark(group, names)
        marks = ", ".join("?" * len(names))
        with self._errors():
            rows = (
                self._connection()
                .execute(
                    f"SELECT name, value FROM marks WHERE grp = ? AND name IN ({marks}) "  # noqa: S608 - only placeholders are interpolated
                    "AND expires_at > ?",
                    (group, *names, self.clock.now()),
                )
                .fetchall()
            )
        found = dict(rows)
        return [found.get(name) for name in names]

    async def get_marks_async(
        self, group: str, names: Sequence[str]
    ) -> builtins.list[float | None]:
        return await asyncio.to_thread(self.get_marks, group, names)

    async def touch_key_async(
        self, key_id: str, secret_hash: str, accepted: Sequence[str] = ()
    ) -> KeyTouch:
        return await asyncio.to_thread(self.touch_key, key_id, secret_hash, accepted)

    # -- token buckets ---------------------------------------------------------------------

    def take_buckets(
        self,
        group: str,
        requests: Sequence[BucketRequest],
        *,
        consume: bool = True,
        override_kind: str | None = None,
    ) -> BucketReply:
        """The rules of bucket_take.lua, in one write transaction."""
        check_buckets(group, requests)
        with self._write() as db:
            now = self.clock.now()
            override = self._override(db, override_kind, group, now)
            states = []
            for r in requests:
                applies = bool(r.overridable and override)
                capacity, refill = override if applies and override else (r.capacity, r.refill)
                row = db.execute(
                    "SELECT tokens, ts FROM buckets WHERE grp = ? AND name = ? "
                    "AND (expires_at IS NULL OR expires_at > ?)",
                    (group, r.name, now),
                ).fetchone()
                tokens = refilled(row[0], row[1], capacity, refill, now) if row else capacity
                states.append((r, capacity, refill, tokens, row is not None, applies))
            allowed = all(has(tokens, r.cost) for r, _, _, tokens, _, _ in states)
            levels = []
            for r, capacity, refill, held, existed, applies in states:
                left = held - r.cost if allowed and consume else held
                if allowed and consume:
                    expires = now + (capacity - left) / refill + 1 if refill > 0 else None
                    db.execute(
                        "INSERT OR REPLACE INTO buckets "
                        "(grp, name, tokens, ts, capacity, refill, expires_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (group, r.name, left, now, capacity, refill, expires),
                    )
                level = bucket_level(
                    r.name, capacity, refill, left, r.cost, existed=existed, overridden=applies
                )
                levels.append(level)
        return BucketReply(allowed, tuple(levels))

    async def take_buckets_async(
        self,
        group: str,
        requests: Sequence[BucketRequest],
        *,
        consume: bool = True,
        override_kind: str | None = None,
    ) -> BucketReply:
        return await asyncio.to_thread(
            self.take_buckets, group, requests, consume=consume, override_kind=override_kind
        )

    def reset_buckets(self, group: str, names: Sequence[str] | None = None) -> int:
        check_id(group, "bucket group")
        for name in names or ():
            check_id(name, "bucket name")
        with self._write() as db:
            now = self.clock.now()
            live = "AND (expires_at IS NULL OR expires_at > ?)"
            if names is None:
                cursor = db.execute(f"DELETE FROM buckets WHERE grp = ? {live}", (group, now))  # noqa: S608 - constant text
            else:
                marks = ", ".join("?" * len(names))
                cursor = db.execute(
                    f"DELETE FROM buckets WHERE grp = ? AND name IN ({marks}) {live}",  # noqa: S608 - only placeholders are interpolated
                    (group, *names, now),
                )
            return int(cursor.rowcount)

    def list_buckets(self, *, cursor: str | None = None, limit: int = 100) -> BucketPage:
        check_limit(limit)
        group, _, name = (cursor or "").partition(" ")
        with self._errors():
            now = self.clock.now()
            rows = (
                self._connection()
                .execute(
                    "SELECT grp, name, tokens, ts, capacity, refill FROM buckets "
                    "WHERE (grp, name) > (?, ?) AND (expires_at IS NULL OR expires_at > ?) "
                    "ORDER BY grp, name LIMIT ?",
                    (group, name, now, limit),
                )
                .fetchall()
            )
        entries = tuple(
            BucketEntry(
                grp,
                bucket_level(
                    nm,
                    capacity,
                    refill,
                    refilled(tokens, ts, capacity, refill, now),
                    1.0,
                    existed=True,
                ),
            )
            for grp, nm, tokens, ts, capacity, refill in rows
        )
        last = f"{rows[-1][0]} {rows[-1][1]}" if len(rows) == limit else None
        return BucketPage(entries, last)

    def _override(
        self, db: sqlite3.Connection, kind: str | None, group: str, now: float
    ) -> tuple[float, float] | None:
        if kind is None:
            return None
        row = self._live_row(db, check_kind(kind), group, now)
        if row is None:
            return None
        fields = codec.decode(row[0])
        capacity, refill = fields.get("capacity"), fields.get("refill")
        # The same rule as bucket_take.lua: numbers in range, or no override at all.
        if not all(_is_number(v) for v in (capacity, refill)):
            return None
        if not (capacity >= 1 and refill >= 0):
            return None
        return float(capacity), float(refill)

    # -- the rest --------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    def info(self) -> StoreInfo:
        with self._errors():
            db = self._connection()
            (mode,) = db.execute("PRAGMA journal_mode").fetchone()
            file_mode = stat.S_IMODE(self.path.stat().st_mode)
            self._check_integrity(db)
        details = {
            "path": str(self.path),
            "journal_mode": str(mode),
            "schema": str(SCHEMA_VERSION),
            "file_mode": f"{file_mode:04o}",
        }
        return StoreInfo("sqlite", redact_url(self.url), sqlite3.sqlite_version, details)

    async def aclose(self) -> None:
        """Nothing to do: the async reads run the blocking connections in worker threads."""

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()

    # -- plumbing --------------------------------------------------------------------------

    def _create_file(self) -> None:
        """Create the folder 0700 and the file 0600 before SQLite does it with the umask."""
        try:
            ensure_private_dir(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        except ValueError:  # a NUL byte in the path
            raise ConfigError(
                f"store URL {redact_url(self.url)} names an impossible path"
            ) from None
        except OSError as e:
            raise StoreUnavailableError(
                f"cannot open the SQLite store {self.path}: {e.strerror}",
                hint="check the path in MCPSEC_STORE_URL or --store, and its permissions",
            ) from e

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection; a forked child opens its own (SQLite forbids sharing)."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None and self._local.pid != os.getpid():
            connection = None
        if connection is None:
            connection = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            connection.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            # FULL: a revocation acknowledged to the operator must survive a power cut.
            connection.execute("PRAGMA synchronous = FULL")
            self._local.connection = connection
            self._local.pid = os.getpid()
            with self._lock:
                self._connections.append(connection)
        return connection

    def _check_integrity(self, db: sqlite3.Connection) -> None:
        """Raise if the file is damaged anywhere. SQLite keeps no page checksums: a command
        notices damage only in the pages it reads, so without this `doctor` (the one caller,
        through `info`) would call a file ok whose key or audit pages are garbage."""
        rows = [row[0] for row in db.execute(f"PRAGMA quick_check({_PROBLEMS_SHOWN})")]
        if rows != ["ok"]:  # a row may hold several lines, headed "*** in database main ***"
            lines = (line.strip() for row in rows for line in str(row).splitlines())
            problems = [line for line in lines if line and not line.startswith("***")]
            raise _damaged(self.path, "; ".join(problems[:_PROBLEMS_SHOWN]))

    def _migrate(self, db: sqlite3.Connection) -> None:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the SQLite store {self.path} was written by a newer mcpsec (schema {version})",
                hint="upgrade mcpsec",
            )
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        if version < SCHEMA_VERSION:
            with self._write() as tx:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    tx.execute(statement)
                tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @staticmethod
    def _live_row(
        db: sqlite3.Connection, kind: str, id: str, now: float
    ) -> tuple[str, float | None] | None:
        row: tuple[str, float | None] | None = db.execute(
            "SELECT data, expires_at FROM records WHERE kind = ? AND id = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (kind, id, now),
        ).fetchone()
        return row

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that holds the lock from its first statement to COMMIT.

        Threads of this process take turns on `_writer_lock` before BEGIN IMMEDIATE, so only
        one of them at a time meets SQLite's busy handler, which sleeps and polls: with 16
        threads writing, a thread could lose every poll for the whole busy timeout and fail
        "locked" while the file was never held by anyone else for that long. A blocked lock
        waiter is woken the moment the lock is released instead. Other processes still meet
        the busy timeout, so a write waits at most twice the store timeout in all.
        """
        lock = self._writer_lock()
        if not lock.acquire(timeout=self.timeout):
            raise _locked(self.path)
        try:
            with self._errors():
                db = self._connection()
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    self._purge_expired(db)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
        finally:
            lock.release()

    def _writer_lock(self) -> threading.Lock:
        """This process's writer lock for the file, whichever store object opened it; a
        forked child gets its own (a lock held by a thread that did not fork never frees)."""
        key = (os.getpid(), self._file)
        lock = _WRITERS.get(key)
        if lock is None:
            with _WRITERS_GUARD[0]:
                lock = _WRITERS.setdefault(key, threading.Lock())
        return lock

    def _purge_expired(self, db: sqlite3.Connection) -> None:
        now = self.clock.now()
        if now >= self._next_purge:
            self._next_purge = now + _PURGE_EVERY
            db.execute("DELETE FROM records WHERE expires_at <= ?", (now,))
            db.execute("DELETE FROM marks WHERE expires_at <= ?", (now,))
            db.execute("DELETE FROM buckets WHERE expires_at <= ?", (now,))

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise _translate(e, self.path) from e
        except OSError as e:
            raise StoreUnavailableError(
                f"the SQLite store {self.path} cannot be used: {e.strerror}"
            ) from e


def _key_outcome(
    fields: Mapping[str, JSONValue], now: float, accepted: Sequence[str]
) -> KeyOutcome:
    """The same order as key_touch.lua: revoked, expired, then the permission."""
    if fields.get("status") != "active":
        return KeyOutcome.REVOKED
    expires_at = fields.get("expires_at")
    if expires_at is not None and float(expires_at) <= now:
        return KeyOutcome.EXPIRED
    if accepted and not set(accepted) & set(str(fields.get("grant_tokens") or "").split()):
        return KeyOutcome.INSUFFICIENT_PERMISSION
    return KeyOutcome.OK


def _append_row(
    db: sqlite3.Connection,
    stream: str,
    data: str,
    now: float,
    maxlen: int | None,
    max_age: float | None,
) -> int:
    """Insert one log entry, then trim the stream to `maxlen` entries and `max_age` seconds
    (never the entry just written)."""
    seq = db.execute(
        "INSERT INTO log (stream, time, data) VALUES (?, ?, ?)", (stream, now, data)
    ).lastrowid
    assert seq is not None
    if maxlen is not None:
        db.execute(
            "DELETE FROM log WHERE stream = ? AND seq <= (SELECT seq FROM log "
            "WHERE stream = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
            (stream, stream, maxlen),
        )
    if max_age is not None:
        db.execute(
            "DELETE FROM log WHERE stream = ? AND time < ? AND seq < ?",
            (stream, now - max_age, seq),
        )
    return seq


def _is_number(value: JSONValue) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _record(kind: str, id: str, data: str, expires_at: float | None) -> Record:
    return Record(kind, id, codec.decode(data), expires_at)


def _expected(fields: Mapping[str, JSONValue], expect: Mapping[str, JSONValue]) -> bool:
    return all(
        codec.encode(fields.get(name)) == codec.encode(value) for name, value in expect.items()
    )


def _incremented(name: str, current: JSONValue, amount: int) -> int:
    """The same rule as the Redis script: integers only, and 64-bit like HINCRBY."""
    if not is_counter(current):
        raise InvalidInputError(f"field {name} does not hold an integer", field=name)
    result = int(current or 0) + amount
    if not is_counter(result):
        raise InvalidInputError(f"field {name} would overflow a 64-bit integer", field=name)
    return result


def _seq(after: str | None) -> int:
    if after is None:
        return 0
    try:
        return int(after)
    except ValueError:
        raise InvalidInputError(f"log position {after!r} is not one this store wrote") from None


def _damaged(path: Path, problem: str) -> StoreError:
    return StoreError(
        f"the SQLite store {path} is damaged or is not an SQLite database: {problem}",
        hint="restore it from a backup, or move it aside and mcpsec will start an empty "
        "store (`sqlite3 FILE .recover` may save what is left)",
    )


def _locked(path: Path) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"the SQLite store {path} stayed locked by another writer past the timeout",
        hint="retry, or raise store.timeout",
    )


def _translate(error: sqlite3.Error, path: Path) -> StoreError:
    text = str(error)
    # The primary result code (the low byte of an extended one): damage is told apart by
    # code, as messages differ between SQLite versions. Errors raised by Python's own
    # module (a closed connection) carry no code.
    code: int = getattr(error, "sqlite_errorcode", None) or 0
    if code & 0xFF in _DAMAGED_CODES:
        return _damaged(path, text)
    if "locked" in text or "busy" in text:
        return _locked(path)
    if "readonly" in text or "read-only" in text:
        return StoreReadOnlyError(f"the SQLite store {path} is read-only: {text}")
    if isinstance(error, sqlite3.OperationalError):
        return StoreUnavailableError(f"the SQLite store {path} cannot be used: {text}")
    return StoreError(f"the SQLite store {path} failed: {text}")
