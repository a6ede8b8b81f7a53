"""Audit appends per second on SQLite and real Redis: mcpsec's AuditLog next to a bare append.

    .venv/bin/python bench/audit.py                  # SQLite in a temp folder, its own redis-server
    .venv/bin/python bench/audit.py --url redis://127.0.0.1:6379/0 --n 3000 --json

mcpsec's append is the whole job, two ways. `record`: `AuditLog(store, key,
actor="bench").record(...)` of one typical event (a denied key verification with subject,
key id, reason, client, tool and request id), which returns once the event is stored, as a
change (`keys revoke`) must: it builds the event, MACs it over canonical JSON, and appends it
only right after the entry its writer saw last (`Store.log_append_after`: a Lua script of
XREVRANGE and XADD on Redis; a SELECT and an INSERT in one BEGIN IMMEDIATE transaction on
SQLite); when another writer came first, it chains to that entry and tries again. `verdict`:
`AuditLog.verdict(...)` of the same event, as a server records every decision: queued, and
appended by the log's background thread with whatever else is queued, up to 64 per round
trip; the timed span ends only when `flush()` says every one is stored. The baseline is a
bare append of the same JSON body (one mcpsec stored, taken once), one at a time: on Redis
`XADD <prefix>bare:audit * d <body>` with redis-py, no MAXLEN, as the AuditLog built here
has no `max_events` (the config default of 1,000,000 would add MAXLEN ~ 1000000 to mcpsec's
XADD, which trims nothing at these counts); on SQLite `INSERT INTO log (stream, time, data)`
in its own BEGIN IMMEDIATE ... COMMIT, on a separate file with mcpsec's log table, WAL,
synchronous=FULL and the store's busy timeout. Every client has the store's timeouts.

Three modes. 1 writer: this process appends in a loop, each way. N threads (`--writers`, 4)
of this process, sharing one AuditLog and store as a server's concurrent requests do: an
event queued while another thread appends goes in with that thread's next round trip (group
commit); the bare appends share one redis-py client, or one SQLite connection per thread. N
processes: spawned, each with its own store, AuditLog and connection, all on one stream (one
file); with `record`, one event per process is in flight at a time, so their appends take
turns at the chain's tail (the chain is one sequence: that is what makes a deleted event
show); with `verdict`, each process's queue goes in a batch at a time. Threads and processes
are released together by a barrier to share each round's appends; the rate is all of them
over the time from the first one's start to the last one's end. Rounds are interleaved, the
order swapped every round. Target: mcpsec >= 0.5x the bare appends per second, per backend
and mode. After the multi-writer rounds, `log.verify()` walks the whole chain once
(untimed): it must be intact and hold exactly as many events as were appended, proof that
concurrent writers neither broke it nor lost an event. A benchmark reports; it always exits
0.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, Final

import redis

# bench/ and tests/support are no installed packages: make the repo root importable from any
# working directory (spawned writers import this file again, and need it too).
_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from mcpsec.core.audit import STREAM, AuditLog, Outcome, Verification  # noqa: E402
from mcpsec.core.errors import MCPSecError  # noqa: E402
from mcpsec.store import codec, open_store  # noqa: E402

from bench.common import (  # noqa: E402
    TIMEOUT,
    Predicate,
    add_server_options,
    bench_parser,
    client_like_the_store,
    forget,
    fresh_prefix,
    parse_server_args,
    positive,
    run_on_redis,
    timed,
)

TARGET_RATIO: Final = 0.5
WARMUP: Final = 100  # appends each way, per writer, before timing: connections and scripts ready
DEFAULT_N: Final = 3000
DEFAULT_ROUNDS: Final = 7
DEFAULT_WRITERS: Final = 4
BARRIER_TIMEOUT: Final = 60.0
AUDIT_KEY: Final = b"k" * 48
EVENT: Final = {
    "subject": "alice",
    "key_id": "4fJq8Lw2Xc9a",
    "reason": "revoked",
    "client": "10.0.0.7",
    "tool": "read_file",
    "request_id": "r-123",
}
# mcpsec's log table and index (mcpsec/store/sqlite.py), for the bare appends' own file.
BARE_SCHEMA: Final = (
    "CREATE TABLE log (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, "
    "time REAL NOT NULL, data TEXT NOT NULL)",
    "CREATE INDEX log_stream ON log (stream, seq)",
)
MCPSEC, QUEUED, BARE = "mcpsec", "queued", "bare"

Timed = Callable[[int], tuple[float, int]]  # n appends -> (appends per second, failed)


@dataclass(frozen=True)
class Target:
    """Where one backend's appends go: all a spawned writer needs to open its own clients."""

    backend: str  # "sqlite" or "redis"
    store_url: str  # mcpsec's store
    prefix: str  # Redis: the key prefix of mcpsec's stream and the bare one
    bare: str  # the bare appends' place: the Redis URL, or the SQLite file
    body: str = ""  # what a bare append writes: the JSON of an event mcpsec stored


class BareRedis:
    """`XADD <key> * d <body>`: one round trip, no chain, no MAC."""

    def __init__(self, url: str, key: str, body: str) -> None:
        self.client = client_like_the_store(url)
        self.key = key
        self.body = body

    def append(self, _: str) -> bool:
        try:
            return bool(self.client.xadd(self.key, {"d": self.body}))
        except redis.RedisError:
            return False

    def count(self) -> int:
        return int(self.client.xlen(self.key))

    def close(self) -> None:
        self.client.close()


class BareSqlite:
    """One INSERT in its own write transaction, with the settings of mcpsec's SqliteStore."""

    def __init__(self, path: Path, body: str) -> None:
        self.db = sqlite3.connect(path, timeout=TIMEOUT, isolation_level=None)
        self.db.execute(f"PRAGMA busy_timeout = {int(TIMEOUT * 1000)}")
        self.db.execute("PRAGMA synchronous = FULL")
        self.body = body

    @staticmethod
    def create(path: Path) -> None:
        """The file, in WAL mode (which stays with the file), with mcpsec's log table."""
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            for statement in BARE_SCHEMA:
                db.execute(statement)
        finally:
            db.close()

    def append(self, _: str) -> bool:
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO log (stream, time, data) VALUES (?, ?, ?)",
                (STREAM, time.time(), self.body),
            )
            self.db.execute("COMMIT")
        except sqlite3.OperationalError:  # locked past the busy timeout
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            return False
        return True

    def count(self) -> int:
        (rows,) = self.db.execute("SELECT COUNT(*) FROM log").fetchone()
        return int(rows)

    def close(self) -> None:
        self.db.close()


class Appenders:
    """One writer's own clients: an AuditLog on its own store, and a bare connection."""

    def __init__(self, target: Target) -> None:
        self.store = open_store(target.store_url, prefix=target.prefix, timeout=TIMEOUT)
        self.log = AuditLog(self.store, AUDIT_KEY, actor="bench")
        self.failures_seen = 0
        self.bare: BareRedis | BareSqlite
        if target.backend == "redis":
            self.bare = BareRedis(target.bare, f"{target.prefix}bare:{STREAM}", target.body)
        else:
            self.bare = BareSqlite(Path(target.bare), target.body)

    def record(self, _: str) -> bool:
        try:
            self.log.record("key.verified", Outcome.DENIED, **EVENT)
        except MCPSecError:  # the chain too busy past its deadline, or the store failing
            return False
        return True

    def queue(self, _: str) -> bool:
        """A verdict as a server records it: queued, appended by the log's background
        thread with whatever else is queued; `settle` waits until all are stored."""
        self.log.verdict("key.verified", Outcome.DENIED, **EVENT)
        return True

    def settle(self, method: str) -> int:
        """After a way's appends, inside the timed span: wait until queued verdicts are
        stored. How many failed since the last time."""
        if method != QUEUED:
            return 0
        failures = len(self.log.failures)
        new, self.failures_seen = failures - self.failures_seen, failures
        return new

    @property
    def ways(self) -> dict[str, Predicate]:
        return {MCPSEC: self.record, QUEUED: self.queue, BARE: self.bare.append}

    def close(self) -> None:
        self.bare.close()
        self.store.close()


def writer(target: Target, start: Barrier, orders: Connection) -> None:
    """A spawned writer: for each order (method, count), wait for the others at the barrier,
    append `count` times, answer (start, end, failed) on the system-wide monotonic clock."""
    appenders = Appenders(target)
    try:
        while (order := orders.recv()) is not None:
            method, count = order
            append = appenders.ways[method]
            start.wait(timeout=BARRIER_TIMEOUT)
            began = time.monotonic()
            failed = sum(not append("") for _ in range(count))
            failed += appenders.settle(method)
            orders.send((began, time.monotonic(), failed))
    finally:
        appenders.close()


class Writers:
    """`count` spawned writers on one target, kept for every multi-writer round."""

    def __init__(self, target: Target, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        # Kept here: a writer still starting needs the barrier's semaphore alive.
        self.barrier = context.Barrier(count)
        self.orders: list[Connection] = []
        self.processes = []
        for _ in range(count):
            mine, theirs = context.Pipe()
            process = context.Process(
                target=writer, args=(target, self.barrier, theirs), daemon=True
            )
            process.start()
            theirs.close()  # so that a writer's death is an EOFError here, not a hang
            self.orders.append(mine)
            self.processes.append(process)

    def run(self, method: str, n: int) -> tuple[float, int]:
        """`n` appends shared by the writers: (appends per second all told, failed)."""
        k = len(self.orders)
        for i, orders in enumerate(self.orders):
            orders.send((method, n // k + (i < n % k)))
        answers = [orders.recv() for orders in self.orders]
        began = min(a[0] for a in answers)
        ended = max(a[1] for a in answers)
        return n / (ended - began), sum(a[2] for a in answers)

    def close(self) -> None:
        for orders in self.orders:
            with suppress(OSError):  # a writer that died has said why on stderr already
                orders.send(None)
        for process in self.processes:
            process.join(timeout=BARRIER_TIMEOUT)
        for orders in self.orders:
            orders.close()


class Threads:
    """`count` threads of this process sharing each round's appends: the shape of a server,
    whose concurrent requests share one AuditLog (and so its group commit) and one store.
    The bare appends share one redis-py client (its connection pool), or on SQLite take one
    connection per thread, as sqlite3 connections cannot be shared."""

    def __init__(self, target: Target, mine: Appenders, count: int) -> None:
        self.target, self.mine, self.count = target, mine, count
        self.local = threading.local()
        self.opened: list[BareSqlite] = []

    def bare(self, arg: str) -> bool:
        if self.target.backend == "redis":
            return self.mine.bare.append(arg)
        own = getattr(self.local, "bare", None)
        if own is None:
            own = self.local.bare = BareSqlite(Path(self.target.bare), self.target.body)
            self.opened.append(own)
        return own.append(arg)

    def run(self, method: str, n: int) -> tuple[float, int]:
        """`n` appends shared by the threads: (appends per second all told, failed)."""
        append = self.bare if method == BARE else self.mine.ways[method]
        start = threading.Barrier(self.count)
        times: list[tuple[float, float, int]] = []

        def work(share: int) -> None:
            start.wait(timeout=BARRIER_TIMEOUT)
            began = time.monotonic()
            failed = sum(not append("") for _ in range(share))
            if method == QUEUED:
                self.mine.log.flush()  # stored, not merely queued (failures counted below)
            times.append((began, time.monotonic(), failed))

        shares = [n // self.count + (i < n % self.count) for i in range(self.count)]
        threads = [threading.Thread(target=work, args=(share,)) for share in shares]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        began, ended = min(t[0] for t in times), max(t[1] for t in times)
        return n / (ended - began), sum(t[2] for t in times) + self.mine.settle(method)

    def close(self) -> None:
        for bare in self.opened:  # each thread's connection; closed from here, as they exit
            with suppress(sqlite3.ProgrammingError):
                bare.close()


@contextmanager
def writers(target: Target, count: int) -> Iterator[Writers]:
    spawned = Writers(target, count)
    try:
        yield spawned
    finally:
        spawned.close()


@dataclass(frozen=True)
class Throughput:
    name: str
    rates: tuple[float, ...]  # appends per second, one per round
    failed: int  # appends that raised (timed rounds): should be none
    appended: int  # appends that went in, warm-up included: what the stream must hold

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


@dataclass(frozen=True)
class Pair:
    backend: str
    writers: int
    how: str  # "process": one writer, or spawned processes; "threads": of one process
    mcpsec: Throughput
    bare: Throughput

    @property
    def mode(self) -> str:
        if self.writers == 1:
            return "1 writer"
        return f"{self.writers} {'threads' if self.how == 'threads' else 'procs'}"

    @property
    def call(self) -> str:
        """How mcpsec appended: `record` (each waits for its event: a change) or `verdict`
        (queued and appended meanwhile: what a server does on every request)."""
        return "verdict" if self.mcpsec.name == QUEUED else "record"

    @property
    def ratio(self) -> float:
        return self.mcpsec.median / self.bare.median

    @property
    def paired(self) -> float:
        """The median of the per-round ratios: steadier when the machine drifts."""
        rounds = zip(self.mcpsec.rates, self.bare.rates, strict=True)
        return statistics.median(m / b for m, b in rounds)

    @property
    def met(self) -> bool:
        return self.ratio >= TARGET_RATIO


@dataclass(frozen=True)
class Check:
    """What the streams hold after every round, against what was appended to them."""

    verification: Verification
    expected: int
    bare_count: int
    bare_expected: int

    @property
    def exact(self) -> bool:
        v = self.verification
        return v.intact and v.trimmed == 0 and v.valid == v.total == self.expected


@dataclass(frozen=True)
class Backend:
    name: str
    where: str
    pairs: tuple[Pair, ...]
    check: Check


@dataclass(frozen=True)
class Report:
    n: int
    rounds: int
    writers: int
    backends: tuple[Backend, ...]


def throughput(ways: dict[str, Timed], n: int, rounds: int, warmup: int) -> dict[str, Throughput]:
    """Rounds alternate which way goes first, so drift and warm caches hit both alike."""
    appended = dict.fromkeys(ways, 0)
    for name, run_way in ways.items():
        appended[name] += warmup - run_way(warmup)[1]
    rates: dict[str, list[float]] = {name: [] for name in ways}
    failed = dict.fromkeys(ways, 0)
    names = list(ways)
    for round_no in range(rounds):
        for name in names if round_no % 2 == 0 else names[::-1]:
            rate, bad = ways[name](n)
            rates[name].append(rate)
            failed[name] += bad
            appended[name] += n - bad
    return {
        name: Throughput(name, tuple(rates[name]), failed[name], appended[name]) for name in ways
    }


def first_body(target: Target) -> str:
    """The JSON of one event as mcpsec stored it (the chain's first): what bare appends write."""
    store = open_store(target.store_url, prefix=target.prefix, timeout=TIMEOUT)
    try:
        log = AuditLog(store, AUDIT_KEY, actor="bench")
        log.record("key.verified", Outcome.DENIED, **EVENT)
        (entry,) = store.log_tail(log.stream, 1)
    finally:
        store.close()
    return codec.encode_document(entry.fields)


def measure(name: str, where: str, target: Target, args: argparse.Namespace) -> Backend:
    """Single writer, then `--writers` threads of this process, then as many spawned
    processes, then the chain walked once."""
    target = replace(target, body=first_body(target))
    mine = Appenders(target)  # this process's writer; its AuditLog verifies at the end
    try:
        ways = {way: _in_process(mine, way) for way in mine.ways}
        single = throughput(ways, args.n, args.rounds, WARMUP)
        threads = Threads(target, mine, args.writers)
        try:
            ways = {way: _in_writers(threads, way) for way in (MCPSEC, QUEUED, BARE)}
            threaded = throughput(ways, args.n, args.rounds, WARMUP * args.writers)
        finally:
            threads.close()
        with writers(target, args.writers) as spawned:
            ways = {way: _in_writers(spawned, way) for way in (MCPSEC, QUEUED, BARE)}
            multi = throughput(ways, args.n, args.rounds, WARMUP * args.writers)
        runs = (single, threaded, multi)
        check = Check(
            mine.log.verify(),
            1 + sum(run[way].appended for run in runs for way in (MCPSEC, QUEUED)),
            mine.bare.count(),
            sum(run[BARE].appended for run in runs),
        )
    finally:
        mine.close()
    pairs = tuple(
        Pair(name, writers, how, run[way], run[BARE])
        for writers, how, run in (
            (1, "process", single),
            (args.writers, "threads", threaded),
            (args.writers, "process", multi),
        )
        for way in (MCPSEC, QUEUED)
    )
    return Backend(name, where, pairs, check)


def _in_process(mine: Appenders, way: str) -> Timed:
    def run(n: int) -> tuple[float, int]:
        start = time.perf_counter()
        _, failed = timed(mine.ways[way], "", n)
        failed += mine.settle(way)
        return n / (time.perf_counter() - start), failed

    return run


def _in_writers(spawned: Writers | Threads, way: str) -> Timed:
    return lambda n: spawned.run(way, n)


def run_sqlite(args: argparse.Namespace) -> Backend:
    with tempfile.TemporaryDirectory(prefix="mcpsec-bench-") as folder:
        bare = Path(folder) / "bare.db"
        BareSqlite.create(bare)
        target = Target("sqlite", f"sqlite:///{folder}/mcpsec.db", "mcpsec:", str(bare))
        where = (
            f"SQLite {sqlite3.sqlite_version} in {folder} (WAL, synchronous=FULL; the bare "
            "appends on their own file)"
        )
        return measure("sqlite", where, target, args)


def run_redis(url: str, server: str, args: argparse.Namespace) -> Backend:
    prefix = fresh_prefix()
    admin = client_like_the_store(url)
    try:
        version = str(admin.info("server")["redis_version"])
        where = f"Redis {version} at {server} (keys under {prefix}, deleted after)"
        return measure("redis", where, Target("redis", url, prefix, url), args)
    finally:
        forget(admin, prefix)
        admin.close()


def ratio_line(pair: Pair) -> str:
    below = "" if pair.met else "  BELOW TARGET"
    return (
        f"{pair.backend:<6}  {pair.mode:<9}  {pair.call:<7}  {pair.mcpsec.median:6.0f}/s / bare "
        f"{pair.bare.median:6.0f}/s = {pair.ratio:.2f}x (target >= {TARGET_RATIO:.1f}x; "
        f"round by round {pair.paired:.2f}x){below}"
    )


def check_line(backend: Backend) -> str:
    c, v = backend.check, backend.check.verification
    chain = "intact" if v.intact else f"BROKEN at {v.event_id}: {v.problem}"
    events = "exact" if c.exact else "NOT EXACT"
    line = (
        f"{backend.name:<6}  chain {chain}; {v.valid} of {v.total} events valid, "
        f"{v.trimmed} trimmed; {c.expected} appended: {events}"
    )
    bare = "" if c.bare_count == c.bare_expected else "  MISMATCH"
    return line + f"; bare: {c.bare_count} stored, {c.bare_expected} appended{bare}"


def render_table(report: Report) -> str:
    head = (
        f"{'backend':<7}  {'mode':<9}  {'method':<7}  {'median':>7}  {'min':>7}  {'max':>7}  "
        "rounds (appends/s)"
    )
    lines = [b.where for b in report.backends]
    lines += [
        f"Python {platform.python_version()}; redis-py {redis.__version__}; {os.cpu_count()} CPUs",
        f"{report.rounds} rounds x {report.n} appends, order swapped every round, after "
        f"{WARMUP} warm-up appends each way per writer; {report.writers} threads of one "
        f"process (one AuditLog), then {report.writers} spawned processes, sharing each "
        "round's appends, released by a barrier, timed from the first start to the last end",
        "",
        head,
        "-" * len(head),
    ]
    for backend in report.backends:
        for pair in backend.pairs:
            shown = (pair.mcpsec,) if pair.call == "record" else (pair.mcpsec, pair.bare)
            for t in shown:
                rounds = " ".join(f"{r:.0f}" for r in t.rates)
                lines.append(
                    f"{backend.name:<7}  {pair.mode:<9}  {t.name:<7}  {t.median:7.0f}  "
                    f"{min(t.rates):7.0f}  {max(t.rates):7.0f}  {rounds}"
                )
                if t.failed:
                    lines.append(f"  {t.name}: {t.failed} appends failed: the figures are wrong")
    lines += ["", *(ratio_line(p) for b in report.backends for p in b.pairs), ""]
    lines += ["log.verify() after the multi-writer rounds (untimed):"]
    lines += [check_line(b) for b in report.backends]
    return "\n".join(lines)


def render_json(report: Report) -> str:
    def way(t: Throughput) -> dict[str, Any]:
        return {
            "median_per_s": round(t.median, 1),
            "rounds_per_s": [round(r, 1) for r in t.rates],
            "failed": t.failed,
        }

    def pair(p: Pair) -> dict[str, Any]:
        return {
            "writers": p.writers,
            "mode": p.mode,
            "call": p.call,
            MCPSEC: way(p.mcpsec),
            BARE: way(p.bare),
            "ratio": round(p.ratio, 3),
            "per_round_median_ratio": round(p.paired, 3),
            "target": TARGET_RATIO,
            "met": p.met,
        }

    def check(c: Check) -> dict[str, Any]:
        v = c.verification
        return {
            "intact": v.intact,
            "problem": v.problem,
            "events": v.total,
            "valid": v.valid,
            "trimmed": v.trimmed,
            "appended": c.expected,
            "exact": c.exact,
            "bare_stored": c.bare_count,
            "bare_appended": c.bare_expected,
        }

    document: dict[str, Any] = {
        "python": platform.python_version(),
        "redis_py": redis.__version__,
        "cpus": os.cpu_count(),
        "n": report.n,
        "rounds": report.rounds,
        "warmup": WARMUP,
        "writers": report.writers,
        "results": {
            b.name: {
                "where": b.where,
                "pairs": [pair(p) for p in b.pairs],
                "verify": check(b.check),
            }
            for b in report.backends
        },
    }
    return json.dumps(document, indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--n", type=positive, default=DEFAULT_N, help="appends per round")
    parser.add_argument("--rounds", type=positive, default=DEFAULT_ROUNDS, help="timed rounds")
    parser.add_argument(
        "--writers", type=positive, default=DEFAULT_WRITERS, help="processes in multi mode"
    )
    parser.add_argument(
        "--backend", choices=("sqlite", "redis", "both"), default="both", help="what to measure"
    )
    add_server_options(parser)
    args = parse_server_args(parser, argv)
    found: list[Backend | None] = []
    if args.backend != "redis":
        found.append(run_sqlite(args))
    if args.backend != "sqlite":
        found.append(run_on_redis(args.url, lambda url, server: run_redis(url, server, args)))
    backends = tuple(b for b in found if b is not None)
    if not backends:
        return 0
    report = Report(args.n, args.rounds, args.writers, backends)
    print((render_json if args.json else render_table)(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
