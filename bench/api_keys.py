"""API key verifications per second against real Redis: mcpsec's verify next to a naive baseline.

    .venv/bin/python bench/api_keys.py                  # its own redis-server on a free port
    .venv/bin/python bench/api_keys.py --url redis://127.0.0.1:6379/0 --n 5000 --json

The baseline is the read-modify-write the seed documents show: GET the key's JSON record,
parse it, compare the hash, check status and expiry in Python, SET it back with the count
incremented (two round trips, and a race). mcpsec's verify is one Lua script that does all of
that atomically. Both parse the presented key and hash its secret with the same functions, on
redis-py clients with the same settings, one client each; rounds are interleaved, the order
swapped every round. Then many threads verify one key at once, each way, and the use counts
that went missing are counted. Target: mcpsec >= 1.5x the baseline's verifies per second, with
no lost counts. A benchmark reports; it always exits 0.
"""

from __future__ import annotations

import argparse
import hmac
import json
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import redis

# bench/ and tests/support are no installed packages: make the repo root importable from any
# working directory.
_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from mcpsec.core.api_keys import ApiKeys  # noqa: E402
from mcpsec.core.key_format import MalformedKeyError, parse_key, secret_hash  # noqa: E402
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
    timed,
)

TARGET_RATIO: Final = 1.5
WARMUP: Final = 200  # verifies each before timing: scripts loaded, connections open
DEFAULT_N: Final = 2000
DEFAULT_ROUNDS: Final = 5
DEFAULT_THREADS: Final = 32
DEFAULT_PER_THREAD: Final = 50

Verify = Callable[[str], bool]


class NaiveKeys:
    """The seed's way: one JSON document per key, read, changed in Python and written back.

    Two round trips per verify, and concurrent verifies of one key overwrite each other's
    count. It is a baseline to beat, not code to copy.
    """

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def enroll(self, api_key: str, *, ttl: float = 90 * 86400.0) -> None:
        parts = parse_key(api_key)
        record = {
            "hash": secret_hash(parts.secret),
            "status": "active",
            "expires_at": time.time() + ttl,
            "use_count": 0,
            "last_used": None,
        }
        self.client.set(self._name(parts.key_id), json.dumps(record))

    def verify(self, api_key: str) -> bool:
        try:
            parts = parse_key(api_key)
        except MalformedKeyError:
            return False
        name = self._name(parts.key_id)
        raw = self.client.get(name)
        if raw is None:
            return False
        record = json.loads(raw)
        if not hmac.compare_digest(record["hash"], secret_hash(parts.secret)):
            return False
        now = time.time()
        if record["status"] != "active":
            return False
        if record["expires_at"] is not None and record["expires_at"] <= now:
            return False
        record["use_count"] += 1
        record["last_used"] = now
        self.client.set(name, json.dumps(record))
        return True

    def use_count(self, api_key: str) -> int:
        raw = self.client.get(self._name(parse_key(api_key).key_id))
        return int(json.loads(raw)["use_count"]) if raw is not None else 0

    def _name(self, key_id: str) -> str:
        return f"{self.prefix}naive:{key_id}"


@dataclass(frozen=True)
class Throughput:
    name: str
    rates: tuple[float, ...]  # verifies per second, one per round
    invalid: int  # verifies that said "not valid": should be none

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


@dataclass(frozen=True)
class Race:
    name: str
    verifies: int
    count: int
    invalid: int

    @property
    def lost(self) -> int:
        return self.verifies - self.count


@dataclass(frozen=True)
class Report:
    server: str
    redis_version: str
    n: int
    rounds: int
    threads: int
    per_thread: int
    mcpsec: Throughput
    naive: Throughput
    races: tuple[Race, ...]

    @property
    def ratio(self) -> float:
        return self.mcpsec.median / self.naive.median


def throughput(ways: dict[str, tuple[Verify, str]], n: int, rounds: int) -> dict[str, Throughput]:
    """Rounds alternate which way goes first, so drift and warm caches hit both alike."""
    for verify, api_key in ways.values():
        timed(verify, api_key, WARMUP)
    rates: dict[str, list[float]] = {name: [] for name in ways}
    invalid = dict.fromkeys(ways, 0)
    names = list(ways)
    for round_no in range(rounds):
        for name in names if round_no % 2 == 0 else names[::-1]:
            verify, api_key = ways[name]
            rate, bad = timed(verify, api_key, n)
            rates[name].append(rate)
            invalid[name] += bad
    return {name: Throughput(name, tuple(rates[name]), invalid[name]) for name in ways}


def hammer(verify: Verify, api_key: str, threads: int, per_thread: int) -> int:
    """`threads` threads released together, each verifying `per_thread` times; how many failed."""
    start = threading.Barrier(threads)

    def work() -> int:
        start.wait(timeout=30)
        return sum(not verify(api_key) for _ in range(per_thread))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(work) for _ in range(threads)]
        return sum(f.result() for f in futures)


def run(url: str, server: str, args: argparse.Namespace) -> Report:
    prefix = fresh_prefix()
    naive_client = client_like_the_store(url)
    store = open_store(url, prefix=prefix, timeout=TIMEOUT)
    naive = NaiveKeys(naive_client, prefix)
    try:
        version = str(naive_client.info("server")["redis_version"])
        return measure(ApiKeys(store), naive, server, version, args)
    finally:
        forget(naive_client, prefix)
        naive_client.close()
        store.close()


def measure(
    keys: ApiKeys, naive: NaiveKeys, server: str, version: str, args: argparse.Namespace
) -> Report:
    def mcpsec_verify(api_key: str) -> bool:
        return keys.verify(api_key).valid

    fast = keys.create("bench-throughput").api_key
    naive.enroll(fast)
    results = throughput(
        {"mcpsec": (mcpsec_verify, fast), "naive": (naive.verify, fast)}, args.n, args.rounds
    )
    verifies = args.threads * args.per_thread
    shared = keys.create("bench-race")
    naive.enroll(shared.api_key)
    bad = hammer(naive.verify, shared.api_key, args.threads, args.per_thread)
    naive_race = Race("naive", verifies, naive.use_count(shared.api_key), bad)
    bad = hammer(mcpsec_verify, shared.api_key, args.threads, args.per_thread)
    mcpsec_race = Race("mcpsec", verifies, keys.show(shared.key_id).use_count, bad)
    return Report(
        server,
        version,
        args.n,
        args.rounds,
        args.threads,
        args.per_thread,
        results["mcpsec"],
        results["naive"],
        (naive_race, mcpsec_race),
    )


def met(report: Report) -> bool:
    mcpsec_race = next(r for r in report.races if r.name == "mcpsec")
    return report.ratio >= TARGET_RATIO and mcpsec_race.lost == 0


def verdict_line(report: Report) -> str:
    below = "" if report.ratio >= TARGET_RATIO else "  BELOW TARGET"
    return f"mcpsec verify / naive = {report.ratio:.2f}x (target >= {TARGET_RATIO:.1f}x){below}"


def race_line(race: Race) -> str:
    line = f"{race.name}: {race.verifies} verifies, count {race.count}, lost {race.lost}"
    return line + (f" ({race.invalid} said not valid)" if race.invalid else "")


def render_table(report: Report) -> str:
    head = f"{'method':<8}  {'median':>9}  {'min':>9}  {'max':>9}  rounds (verifies/s)"
    lines = [
        f"Redis {report.redis_version} at {report.server}; Python {platform.python_version()}; "
        f"one client each; {report.rounds} rounds x {report.n} verifies, order swapped "
        f"every round, after {WARMUP} warm-up verifies each",
        "",
        head,
        "-" * len(head),
    ]
    for t in (report.mcpsec, report.naive):
        rounds = " ".join(f"{r:.0f}" for r in t.rates)
        lines.append(
            f"{t.name:<8}  {t.median:9.0f}  {min(t.rates):9.0f}  {max(t.rates):9.0f}  {rounds}"
        )
        if t.invalid:
            lines.append(f"  {t.name}: {t.invalid} verifies said not valid: the figures are wrong")
    lines += [
        "",
        verdict_line(report),
        "",
        f"{report.threads} threads x {report.per_thread} verifies of one key, "
        f"expected count {report.threads * report.per_thread}:",
        *(race_line(race) for race in report.races),
    ]
    return "\n".join(lines)


def render_json(report: Report) -> str:
    document: dict[str, Any] = {
        "server": report.server,
        "redis_version": report.redis_version,
        "python": platform.python_version(),
        "n": report.n,
        "rounds": report.rounds,
        "warmup": WARMUP,
        "throughput": {
            t.name: {
                "median_per_s": round(t.median, 1),
                "rounds_per_s": [round(r, 1) for r in t.rates],
                "invalid": t.invalid,
            }
            for t in (report.mcpsec, report.naive)
        },
        "ratio": round(report.ratio, 3),
        "target": {"ratio": TARGET_RATIO, "lost": 0, "met": met(report)},
        "concurrency": {
            "threads": report.threads,
            "per_thread": report.per_thread,
            "results": {r.name: asdict(r) | {"lost": r.lost} for r in report.races},
        },
    }
    return json.dumps(document, indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--n", type=positive, default=DEFAULT_N, help="verifies per round")
    parser.add_argument("--rounds", type=positive, default=DEFAULT_ROUNDS, help="timed rounds")
    parser.add_argument("--threads", type=positive, default=DEFAULT_THREADS)
    parser.add_argument("--per-thread", type=positive, default=DEFAULT_PER_THREAD)
    add_server_options(parser)
    args = parse_server_args(parser, argv)
    report = run_on_redis(args.url, lambda url, server: run(url, server, args))
    if report is None:
        return 0
    print((render_json if args.json else render_table)(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
