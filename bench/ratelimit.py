"""Rate-limit decisions per second against real Redis: mcpsec's limiter, a naive bucket, `limits`.

    .venv/bin/python bench/ratelimit.py                  # its own redis-server on a free port
    .venv/bin/python bench/ratelimit.py --url redis://127.0.0.1:6379/0 --n 5000 --json

Three ways to decide "may this identity make one more request", on the same server.
mcpsec's `RateLimiter(store).check(identity, limit=Limit.of(capacity, refill))`: a token
bucket charged by one Lua script, by the server's clock, atomically. A naive bucket written
here, the seed's way: GET the bucket's JSON {tokens, ts}, refill it in Python, SETEX it back
(as SET with EX; two round trips, and a race). The `limits` library (the `bench` extra), its
fixed-window and moving-window strategies, one Lua script each too. While timing, nothing
may be denied: the limits are 10**9 (refilling at 10**9 an hour; for `limits`, 10**9 per
hour), and each method charges one identity per round, its own, a fresh one every round.

Two modes. sync: one client, one thread, decisions in a loop. async: `--in-flight` worker
tasks on one event loop share each round's decisions: `AsyncRateLimiter(limiter).check`
(the takes of one loop turn go out as one pipeline), the naive bucket on redis.asyncio, and
`limits.aio` on its redis.asyncio implementation ("redispy"). Every client has the store's
socket timeouts. A PING on the naive client runs alongside, for reference: the round trip
alone, which on a small VM swings several-fold as the scheduler puts redis-server on the
client's CPU or not. Rounds are short and interleaved, the order rotated every round. Each
ratio is of the medians, and is what its target is judged on; the median of the per-round
ratios is printed beside it, steadier when the machine drifts. Targets, in each mode: mcpsec
>= 1.0x the faster `limits` strategy, and >= 1.5x the naive bucket.

Then over-admission: `--threads` threads released together each ask `--per-thread` times
for one fresh identity allowed 100 with no refill (`limits`: 100 per hour); each admitted
request past the 100th is over-admission. Target: none for mcpsec. A benchmark reports; it
always exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import redis
import redis.asyncio as aredis

# `limits` is the bench extra, absent where only the test and dev extras are installed (there
# mypy still checks this file): main says so and measures nothing.
try:
    import limits  # type: ignore[import-not-found,unused-ignore]
    import limits.aio.storage  # type: ignore[import-not-found,unused-ignore]
    import limits.aio.strategies  # type: ignore[import-not-found,unused-ignore]
    import limits.storage  # type: ignore[import-not-found,unused-ignore]
    import limits.strategies  # type: ignore[import-not-found,unused-ignore]
    from limits.aio.storage.redis import redispy  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    HAVE_LIMITS = False
else:
    HAVE_LIMITS = True

# bench/ and tests/support are no installed packages: make the repo root importable from any
# working directory.
_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from mcpsec.core.ratelimit import AsyncRateLimiter, Limit, RateLimiter  # noqa: E402
from mcpsec.store import open_store  # noqa: E402

from bench.common import (  # noqa: E402
    TIMEOUT,
    add_server_options,
    bench_parser,
    client_like_the_store,
    forget,
    fresh_prefix,
    parse_server_args,
    positive,
    run_on_redis,
    swarm,
    timed,
)

TARGETS: Final = {"limits": 1.0, "naive": 1.5}  # mcpsec's decisions/s over theirs, each mode
WARMUP: Final = 300  # decisions each before timing: scripts loaded, connections open
# Many short rounds: on a small VM a round trip takes ~25 us while the client and redis-server
# share a CPU and ~120 us while they don't, and the scheduler flips between the two every few
# seconds; short interleaved rounds put every method in both states alike.
DEFAULT_N: Final = 1500
DEFAULT_ROUNDS: Final = 21
DEFAULT_IN_FLIGHT: Final = 64
DEFAULT_THREADS: Final = 32
DEFAULT_PER_THREAD: Final = 20
CAPACITY: Final = 10**9  # nothing is denied while timing
REFILL: Final = CAPACITY / 3600  # the sustained rate of `limits`' 10**9 per hour
RACE_CAPACITY: Final = 100
NEVER_FULL_TTL: Final = 3600  # the naive key's ttl when nothing refills: it must end some time
MCPSEC, NAIVE, FIXED, MOVING = "mcpsec", "naive", "limits-fixed", "limits-moving"
PING: Final = "ping"  # a reference row, no decision: the round trip alone
LIMITS_METHODS: Final = (FIXED, MOVING)

Decide = Callable[[str], bool]  # identity -> allowed
AsyncDecide = Callable[[str], Awaitable[bool]]
Timed = Callable[[str, int], tuple[float, int]]  # (identity, n) -> (decisions/s, denied)


@dataclass(frozen=True)
class NaiveBucket:
    """The seed's bucket: a JSON document {tokens, ts}, refilled in Python by the client's clock.

    Reading and writing it back are two round trips, so concurrent takes of one bucket see
    the same tokens and each writes back its own count: it admits more than its capacity.
    A baseline to beat, not code to copy.
    """

    prefix: str
    capacity: float
    refill: float

    def take(self, client: redis.Redis, identity: str) -> bool:
        key = self._key(identity)
        allowed, document, ttl = self._charge(client.get(key), time.time())
        client.set(key, document, ex=ttl)
        return allowed

    async def take_async(self, client: aredis.Redis, identity: str) -> bool:
        key = self._key(identity)
        allowed, document, ttl = self._charge(await client.get(key), time.time())
        await client.set(key, document, ex=ttl)
        return allowed

    def _charge(self, raw: str | bytes | None, now: float) -> tuple[bool, str, int]:
        """(allowed, the document to write back, its ttl in seconds)."""
        tokens = self.capacity
        if raw is not None:
            held = json.loads(raw)
            tokens = min(self.capacity, held["tokens"] + max(0.0, now - held["ts"]) * self.refill)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        if self.refill > 0:
            ttl = math.ceil((self.capacity - tokens) / self.refill) + 1
        else:
            ttl = NEVER_FULL_TTL
        return allowed, json.dumps({"tokens": tokens, "ts": now}), ttl

    def _key(self, identity: str) -> str:
        return f"{self.prefix}naive:{identity}"


@dataclass(frozen=True)
class Clients:
    """Every method's clients on one server, keys under one prefix; `close` in `run`."""

    prefix: str
    limiter: RateLimiter
    naive: redis.Redis
    naive_async: aredis.Redis
    limits_pool: redis.ConnectionPool
    limits_sync: limits.storage.RedisStorage
    limits_async: limits.aio.storage.RedisStorage

    def sync_ways(self, capacity: int, refill: float) -> dict[str, Decide]:
        limit = Limit.of(capacity, refill)
        item = limits.RateLimitItemPerHour(capacity)
        fixed = limits.strategies.FixedWindowRateLimiter(self.limits_sync)
        moving = limits.strategies.MovingWindowRateLimiter(self.limits_sync)

        def mcpsec(identity: str) -> bool:
            return self.limiter.check(identity, limit=limit).allowed

        return {
            MCPSEC: mcpsec,
            NAIVE: functools.partial(NaiveBucket(self.prefix, capacity, refill).take, self.naive),
            FIXED: functools.partial(fixed.hit, item),
            MOVING: functools.partial(moving.hit, item),
        }

    def async_ways(self, alimiter: AsyncRateLimiter) -> dict[str, AsyncDecide]:
        limit = Limit.of(CAPACITY, REFILL)
        naive = NaiveBucket(self.prefix, CAPACITY, REFILL)
        item = limits.RateLimitItemPerHour(CAPACITY)
        fixed = limits.aio.strategies.FixedWindowRateLimiter(self.limits_async)
        moving = limits.aio.strategies.MovingWindowRateLimiter(self.limits_async)

        async def mcpsec(identity: str) -> bool:
            return (await alimiter.check(identity, limit=limit)).allowed

        async def ping(_: str) -> bool:
            return bool(await self.naive_async.ping())

        return {
            MCPSEC: mcpsec,
            NAIVE: functools.partial(naive.take_async, self.naive_async),
            FIXED: functools.partial(fixed.hit, item),
            MOVING: functools.partial(moving.hit, item),
            PING: ping,
        }

    async def aclose(self, alimiter: AsyncRateLimiter) -> None:
        """The asyncio clients hold connections of the loop they ran in: closed in it."""
        await alimiter.aclose()
        await self.naive_async.aclose()
        bridge = self.limits_async.bridge
        if isinstance(bridge, redispy.RedispyBridge):
            await bridge.storage.aclose()

    def close(self) -> None:
        self.limiter.store.close()
        self.naive.close()
        self.limits_pool.disconnect()


@dataclass(frozen=True)
class Throughput:
    name: str
    rates: tuple[float, ...]  # decisions per second, one per round
    denied: int  # decisions that said no: should be none

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


@dataclass(frozen=True)
class Ratio:
    mode: str
    mcpsec: Throughput
    other: Throughput
    target: float

    @property
    def ratio(self) -> float:
        return self.mcpsec.median / self.other.median

    @property
    def paired(self) -> float:
        """The median of the per-round ratios: each round's two rates were taken moments
        apart, so this one holds even when the machine's speed drifts between rounds."""
        pairs = zip(self.mcpsec.rates, self.other.rates, strict=True)
        return statistics.median(m / o for m, o in pairs)

    @property
    def met(self) -> bool:
        return self.ratio >= self.target


@dataclass(frozen=True)
class Mode:
    name: str  # "sync" or "async"
    results: tuple[Throughput, ...]

    def of(self, method: str) -> Throughput:
        return next(t for t in self.results if t.name == method)

    @property
    def ratios(self) -> tuple[Ratio, Ratio]:
        fastest = max((self.of(m) for m in LIMITS_METHODS), key=lambda t: t.median)
        mcpsec = self.of(MCPSEC)
        return (
            Ratio(self.name, mcpsec, fastest, TARGETS["limits"]),
            Ratio(self.name, mcpsec, self.of(NAIVE), TARGETS["naive"]),
        )


@dataclass(frozen=True)
class Race:
    name: str
    requests: int
    admitted: int

    @property
    def over(self) -> int:
        return self.admitted - RACE_CAPACITY


@dataclass(frozen=True)
class Report:
    server: str
    redis_version: str
    n: int
    rounds: int
    in_flight: int
    threads: int
    per_thread: int
    modes: tuple[Mode, ...]
    races: tuple[Race, ...]


def throughput(ways: dict[str, Timed], mode: str, n: int, rounds: int) -> Mode:
    """Rounds rotate which way goes first, so drift and warm caches hit every way alike."""
    names = list(ways)
    for name in names:
        ways[name](f"{mode}-{name}-warmup", WARMUP)
    rates: dict[str, list[float]] = {name: [] for name in names}
    denied = dict.fromkeys(names, 0)
    for round_no in range(rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            rate, said_no = ways[name](f"{mode}-{name}-r{round_no}", n)
            rates[name].append(rate)
            denied[name] += said_no
    return Mode(mode, tuple(Throughput(name, tuple(rates[name]), denied[name]) for name in names))


def hammer(decide: Decide, identity: str, threads: int, per_thread: int) -> int:
    """`threads` threads released together, each asking `per_thread` times; how many passed."""
    start = threading.Barrier(threads)

    def work() -> int:
        start.wait(timeout=30)
        return sum(decide(identity) for _ in range(per_thread))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(work) for _ in range(threads)]
        return sum(f.result() for f in futures)


def measure(clients: Clients, server: str, version: str, args: argparse.Namespace) -> Report:
    sync_ways = clients.sync_ways(CAPACITY, REFILL) | {PING: lambda _: bool(clients.naive.ping())}
    sync = throughput(
        {name: functools.partial(timed, way) for name, way in sync_ways.items()},
        "sync",
        args.n,
        args.rounds,
    )
    with asyncio.Runner() as runner:  # one loop for every async round, its clients closed in it
        alimiter = AsyncRateLimiter(clients.limiter)

        def in_loop(way: AsyncDecide) -> Timed:
            return lambda identity, n: runner.run(swarm(way, identity, n, args.in_flight))

        try:
            ways = {name: in_loop(way) for name, way in clients.async_ways(alimiter).items()}
            asynchronous = throughput(ways, "async", args.n, args.rounds)
        finally:
            runner.run(clients.aclose(alimiter))
    requests = args.threads * args.per_thread
    races = tuple(
        Race(name, requests, hammer(way, f"race-{name}", args.threads, args.per_thread))
        for name, way in clients.sync_ways(RACE_CAPACITY, 0).items()
    )
    return Report(
        server,
        version,
        args.n,
        args.rounds,
        args.in_flight,
        args.threads,
        args.per_thread,
        (sync, asynchronous),
        races,
    )


def open_clients(url: str, prefix: str) -> Clients:
    """`limits` names a unix socket redis+unix://; its other options must be plain values."""
    limits_url = "redis+unix://" + url.removeprefix("unix://") if url.startswith("unix:") else url
    pool = redis.ConnectionPool.from_url(
        url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT
    )
    return Clients(
        prefix,
        RateLimiter(open_store(url, prefix=prefix, timeout=TIMEOUT)),
        client_like_the_store(url),
        aredis.Redis.from_url(
            url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT, decode_responses=True
        ),
        pool,
        limits.storage.RedisStorage(limits_url, connection_pool=pool, key_prefix=prefix + "lim"),
        limits.aio.storage.RedisStorage(
            "async+" + limits_url,
            implementation="redispy",
            key_prefix=prefix + "lim",
            socket_connect_timeout=TIMEOUT,
            socket_timeout=TIMEOUT,
        ),
    )


def run(url: str, server: str, args: argparse.Namespace) -> Report:
    prefix = fresh_prefix()
    clients = open_clients(url, prefix)
    try:
        version = str(clients.naive.info("server")["redis_version"])
        return measure(clients, server, version, args)
    finally:
        forget(clients.naive, prefix)
        clients.close()


def ratio_line(r: Ratio) -> str:
    below = "" if r.met else "  BELOW TARGET"
    against = f"fastest limits ({r.other.name})" if r.other.name != NAIVE else NAIVE
    return (
        f"{r.mode:<5}  mcpsec {r.mcpsec.median:6.0f}/s / {against} {r.other.median:6.0f}/s"
        f" = {r.ratio:.2f}x (target >= {r.target:.1f}x; round by round {r.paired:.2f}x){below}"
    )


def race_line(race: Race) -> str:
    line = (
        f"{race.name:<13}  admitted {race.admitted:4d} of {race.requests}, "
        f"over-admission {race.over:+d}"
    )
    if race.name != MCPSEC:
        return line
    return line + (" (target 0)" if race.over == 0 else " (target 0)  ABOVE TARGET")


def render_table(report: Report) -> str:
    head = (
        f"{'mode':<5}  {'method':<13}  {'median':>7}  {'min':>7}  {'max':>7}  rounds (decisions/s)"
    )
    lines = [
        f"Redis {report.redis_version} at {report.server}; Python {platform.python_version()}; "
        f"redis-py {redis.__version__}; limits {limits.__version__}; {os.cpu_count()} CPUs",
        f"{report.rounds} rounds x {report.n} decisions, order rotated every round, after "
        f"{WARMUP} warm-up decisions each; sync: one client; async: {report.in_flight} "
        "in flight on one event loop; ping: a PING, the round trip alone, for reference",
        "",
        head,
        "-" * len(head),
    ]
    for mode in report.modes:
        for t in mode.results:
            rounds = " ".join(f"{r:.0f}" for r in t.rates)
            lines.append(
                f"{mode.name:<5}  {t.name:<13}  {t.median:7.0f}  {min(t.rates):7.0f}  "
                f"{max(t.rates):7.0f}  {rounds}"
            )
            if t.denied:
                lines.append(f"  {t.name}: {t.denied} decisions said no: the figures are wrong")
    lines += ["", *(ratio_line(r) for mode in report.modes for r in mode.ratios), ""]
    lines += [
        f"{report.threads} threads x {report.per_thread} requests for one identity allowed "
        f"{RACE_CAPACITY} (no refill; limits: {RACE_CAPACITY} per hour):",
        *(race_line(race) for race in report.races),
    ]
    return "\n".join(lines)


def render_json(report: Report) -> str:
    def way(t: Throughput) -> dict[str, Any]:
        return {
            "median_per_s": round(t.median, 1),
            "rounds_per_s": [round(r, 1) for r in t.rates],
            "denied": t.denied,
        }

    def ratio(r: Ratio) -> dict[str, Any]:
        return {
            "against": r.other.name,
            "ratio": round(r.ratio, 3),
            "per_round_median_ratio": round(r.paired, 3),
            "target": r.target,
        }

    document: dict[str, Any] = {
        "server": report.server,
        "redis_version": report.redis_version,
        "python": platform.python_version(),
        "redis_py": redis.__version__,
        "limits": limits.__version__,
        "cpus": os.cpu_count(),
        "n": report.n,
        "rounds": report.rounds,
        "warmup": WARMUP,
        "in_flight": report.in_flight,
        "results": {
            mode.name: {
                "throughput": {t.name: way(t) for t in mode.results},
                "vs_limits": ratio(mode.ratios[0]) | {"met": mode.ratios[0].met},
                "vs_naive": ratio(mode.ratios[1]) | {"met": mode.ratios[1].met},
            }
            for mode in report.modes
        },
        "over_admission": {
            "threads": report.threads,
            "per_thread": report.per_thread,
            "capacity": RACE_CAPACITY,
            "results": {r.name: {"admitted": r.admitted, "over": r.over} for r in report.races},
            "target": {"mcpsec_over": 0, "met": races_met(report)},
        },
    }
    return json.dumps(document, indent=2)


def races_met(report: Report) -> bool:
    return next(r for r in report.races if r.name == MCPSEC).over == 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--n", type=positive, default=DEFAULT_N, help="decisions per round")
    parser.add_argument("--rounds", type=positive, default=DEFAULT_ROUNDS, help="timed rounds")
    parser.add_argument(
        "--in-flight", type=positive, default=DEFAULT_IN_FLIGHT, help="async decisions at once"
    )
    parser.add_argument("--threads", type=positive, default=DEFAULT_THREADS)
    parser.add_argument("--per-thread", type=positive, default=DEFAULT_PER_THREAD)
    add_server_options(parser)
    args = parse_server_args(parser, argv)
    if not HAVE_LIMITS:
        print(
            "the limits library is not installed (pip install -e '.[bench]'): nothing measured",
            file=sys.stderr,
        )
        return 0
    report = run_on_redis(args.url, lambda url, server: run(url, server, args))
    if report is None:
        return 0
    print((render_json if args.json else render_table)(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
