"""Token verifications per second against real Redis: mcpsec's verify next to PyJWT's bare decode.

    .venv/bin/python bench/tokens.py                  # its own redis-server on a free port
    .venv/bin/python bench/tokens.py --url redis://127.0.0.1:6379/0 --n 3000 --json

mcpsec's verify is the whole job: strict parsing, the signature, the claim rules, then one
read of the token's revocation marks on Redis (its jti, its subject's cut-off, its family).
The baseline is PyJWT's `jwt.decode(token, key, algorithms=[alg], audience=..., issuer=...)`
on the same token: signature and claims only, no revocation check, no store. So the ratio
shows what the revocation read, and mcpsec's stricter rules, cost on top of a decode.

Both algorithms mcpsec recommends are measured, HS256 (the config secret) and EdDSA (a
keyring key), in two modes. sync: one thread calls `Tokens.verify` in a loop, then
`jwt.decode` in a loop. async: `AsyncTokens(tokens).verify` with `--in-flight` verifications
at once, as many worker tasks on one event loop sharing each round's verifies (AsyncTokens
checks the signature in the loop and awaits the revocation read over redis.asyncio, the
reads of one loop turn batched into one pipeline). The async baseline is the same worker
tasks on the same loop calling `jwt.decode` directly: it is CPU only, with nothing to wait
for, so no thread and no concurrency; it is the same bare decode rate as sync, plus the
loop's overhead.
Rounds are interleaved, the order swapped every round. Targets, for EdDSA only: sync >= 0.4x
the bare decode, async >= 0.6x; the HS256 lines are for information. A breakdown then times
`Tokens.check` (signature and claims, no store), `Store.get_marks` (the revocation read) and
a bare PING, each alone, so that one sees where a verify's time goes. Before any timing,
both ways must accept the token, and a revoked token must verify as revoked (proof that the
revocation read runs). A benchmark reports; it always exits 0.
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
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
import redis

# bench/ and tests/support are no installed packages: make the repo root importable from any
# working directory.
_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from mcpsec.core.secret_files import Secret  # noqa: E402
from mcpsec.core.signing_keys import Algorithm, Keyring  # noqa: E402
from mcpsec.core.token_ids import subject_tag  # noqa: E402
from mcpsec.core.token_keys import TokenKeys  # noqa: E402
from mcpsec.core.token_rules import Reason  # noqa: E402
from mcpsec.core.tokens import CUTOFF_MARK, AsyncTokens, Tokens  # noqa: E402
from mcpsec.store import Store, open_store  # noqa: E402

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

TARGETS: Final = {("EdDSA", "sync"): 0.4, ("EdDSA", "async"): 0.6}
AUDIENCE: Final = "https://mcp.example"
ISSUER: Final = "mcpsec"
WARMUP: Final = 300  # verifies each before timing: scripts loaded, connections and threads open
DEFAULT_N: Final = 3000
DEFAULT_ROUNDS: Final = 5
DEFAULT_IN_FLIGHT: Final = 32
BENCH_SECRET: Final = b"mcpsec-bench-hs256-secret-not-for-production!!!"  # 48 bytes

Verify = Callable[[str], bool]
AsyncVerify = Callable[[str], Awaitable[bool]]
Timed = Callable[[int], tuple[float, int]]  # n verifies -> (verifies per second, not valid)


class Unmeasurable(Exception):
    """A way refuses the token before any timing: the figures would mean nothing."""


@dataclass(frozen=True)
class Throughput:
    name: str
    rates: tuple[float, ...]  # verifies per second, one per round
    invalid: int  # verifies that said "not valid": should be none

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


@dataclass(frozen=True)
class Pair:
    alg: str
    mode: str
    mcpsec: Throughput
    bare: Throughput

    @property
    def ratio(self) -> float:
        return self.mcpsec.median / self.bare.median

    @property
    def target(self) -> float | None:
        return TARGETS.get((self.alg, self.mode))

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.ratio >= self.target


@dataclass(frozen=True)
class Breakdown:
    """Microseconds per call, sync: the median of interleaved rounds, each way alone."""

    alg: str
    verify: float
    check: float
    marks: float
    ping: float  # a PING on a client like the store's: the round trip alone
    bare: float
    revoked_reason: str | None  # what verify said of a revoked token: should be "revoked"


@dataclass(frozen=True)
class Report:
    server: str
    redis_version: str
    n: int
    rounds: int
    in_flight: int
    executor_threads: int
    pairs: tuple[Pair, ...]
    breakdowns: tuple[Breakdown, ...]


@dataclass(frozen=True)
class Subject:
    """One algorithm's objects: mcpsec's verifier, a token it minted, the baseline's key."""

    alg: Algorithm
    tokens: Tokens
    token: str
    key: Any  # what jwt.decode gets: the Ed25519 public key, or the HS256 secret bytes


def throughput(ways: dict[str, Timed], n: int, rounds: int) -> dict[str, Throughput]:
    """Rounds alternate which way goes first, so drift and warm caches hit both alike."""
    for run_way in ways.values():
        run_way(WARMUP)
    rates: dict[str, list[float]] = {name: [] for name in ways}
    invalid = dict.fromkeys(ways, 0)
    names = list(ways)
    for round_no in range(rounds):
        for name in names if round_no % 2 == 0 else names[::-1]:
            rate, bad = ways[name](n)
            rates[name].append(rate)
            invalid[name] += bad
    return {name: Throughput(name, tuple(rates[name]), invalid[name]) for name in ways}


def bare_decoder(subject: Subject) -> Verify:
    """PyJWT on its own: signature, exp/nbf/iat, audience and issuer; nothing else."""
    alg = subject.alg.value

    def decode(token: str) -> bool:
        try:
            jwt.decode(token, subject.key, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER)
        except jwt.InvalidTokenError:
            return False
        return True

    return decode


def make_subjects(store: Store, folder: Path) -> tuple[Subject, ...]:
    ring = Keyring(folder / "ring")  # Keyring creates the folder itself, 0700
    ring.generate(Algorithm.EDDSA)
    keyring_keys = TokenKeys.load(ring, None)
    secret_keys = TokenKeys.load(None, Secret(BENCH_SECRET, "bench"))
    subjects = []
    for alg, keys in ((Algorithm.HS256, secret_keys), (Algorithm.EDDSA, keyring_keys)):
        tokens = Tokens(store, keys, audience=AUDIENCE, issuer=ISSUER)
        signer = keys.signer()
        assert signer.alg is alg
        key = keys.verifying[signer.kid].key
        subjects.append(
            Subject(alg, tokens, tokens.mint("alice", roles=["user"]).access_token, key)
        )
    return tuple(subjects)


def sane(subject: Subject) -> str | None:
    """Before timing: both ways accept the token, and a revoked token is reported revoked
    (so the revocation read really runs). Returns what verify says of the revoked token."""
    if not subject.tokens.verify(subject.token).valid:
        raise Unmeasurable(f"mcpsec does not accept its own {subject.alg} token")
    if not bare_decoder(subject)(subject.token):
        raise Unmeasurable(f"PyJWT does not decode the {subject.alg} token")
    doomed = subject.tokens.mint("bob", roles=["user"]).access_token
    subject.tokens.revoke(doomed)
    reason = subject.tokens.verify(doomed).reason
    return reason.value if reason is not None else None


def measure_pairs(subject: Subject, args: argparse.Namespace, runner: asyncio.Runner) -> list[Pair]:
    token, alg = subject.token, subject.alg.value
    tokens, bare = subject.tokens, bare_decoder(subject)

    def mcpsec_verify(t: str) -> bool:
        return tokens.verify(t).valid

    averify = AsyncTokens(tokens).verify

    async def mcpsec_async(t: str) -> bool:
        return (await averify(t)).valid

    async def bare_async(t: str) -> bool:
        return bare(t)

    def in_loop(verify: AsyncVerify) -> Timed:
        return lambda n: runner.run(swarm(verify, token, n, args.in_flight))

    sync = throughput(
        {
            "mcpsec": lambda n: timed(mcpsec_verify, token, n),
            "bare": lambda n: timed(bare, token, n),
        },
        args.n,
        args.rounds,
    )
    asynchronous = throughput(
        {"mcpsec": in_loop(mcpsec_async), "bare": in_loop(bare_async)}, args.n, args.rounds
    )
    return [
        Pair(alg, "sync", sync["mcpsec"], sync["bare"]),
        Pair(alg, "async", asynchronous["mcpsec"], asynchronous["bare"]),
    ]


def breakdown(
    subject: Subject,
    store: Store,
    admin: redis.Redis,
    args: argparse.Namespace,
    revoked: str | None,
) -> Breakdown:
    """The whole verify and its two halves, the rules and the store read: `n` calls of each
    in all, spread over interleaved rounds, so that the parts and the whole are measured
    at the same moments (this machine's round trips drift from one second to the next)."""
    tokens, token = subject.tokens, subject.token
    claims = tokens.check(token).claims
    # The three marks verify reads for an access token of a refresh family.
    names = ["j:" + claims["jti"], CUTOFF_MARK, "f:" + claims["fam"]]
    group = subject_tag(claims["sub"])

    def check(t: str) -> bool:
        return tokens.check(t).valid

    def marks(_: str) -> bool:
        return store.get_marks(group, names) == [None, None, None]

    def verify(t: str) -> bool:
        return tokens.verify(t).valid

    def ping(_: str) -> bool:  # the bare round trip: the floor under get_marks
        return bool(admin.ping())

    ways = {
        "verify": verify,
        "check": check,
        "marks": marks,
        "ping": ping,
        "bare": bare_decoder(subject),
    }
    found = throughput(
        {name: functools.partial(timed, way, token) for name, way in ways.items()},
        max(args.n // args.rounds, 1),
        args.rounds,
    )
    micros = {name: 1e6 / t.median if not t.invalid else math.nan for name, t in found.items()}
    return Breakdown(
        subject.alg.value,
        micros["verify"],
        micros["check"],
        micros["marks"],
        micros["ping"],
        micros["bare"],
        revoked,
    )


def run(url: str, server: str, args: argparse.Namespace) -> Report:
    prefix = fresh_prefix()
    store = open_store(url, prefix=prefix, timeout=TIMEOUT)
    admin = client_like_the_store(url)
    try:
        with tempfile.TemporaryDirectory(prefix="mcpsec-bench-keys-") as folder:
            subjects = make_subjects(store, Path(folder))
        version = str(admin.info("server")["redis_version"])
        return measure(store, admin, subjects, server, version, args)
    finally:
        forget(admin, prefix)
        admin.close()
        store.close()


def measure(
    store: Store,
    admin: redis.Redis,
    subjects: Sequence[Subject],
    server: str,
    version: str,
    args: argparse.Namespace,
) -> Report:
    revoked = {s.alg.value: sane(s) for s in subjects}
    pairs: list[Pair] = []
    breakdowns: list[Breakdown] = []
    with asyncio.Runner() as runner:  # one loop, one default executor, for every async round
        for subject in subjects:
            found = measure_pairs(subject, args, runner)
            pairs += found
            b = breakdown(subject, store, admin, args, revoked[subject.alg.value])
            breakdowns.append(b)
        runner.run(close_async(store))
    return Report(
        server,
        version,
        args.n,
        args.rounds,
        args.in_flight,
        default_executor_threads(),
        tuple(pairs),
        tuple(breakdowns),
    )


async def close_async(store: Store) -> None:
    """An asyncio transport, where the store has one, holds connections of this loop."""
    await store.aclose()


def default_executor_threads() -> int:
    """What asyncio.to_thread gets when nobody sets an executor (ThreadPoolExecutor's default)."""
    return min(32, (os.cpu_count() or 1) + 4)


def ratio_line(pair: Pair) -> str:
    head = (
        f"{pair.alg:<5} {pair.mode:<5}  mcpsec {pair.mcpsec.median:7.0f}/s / bare decode "
        f"{pair.bare.median:7.0f}/s = {pair.ratio:.2f}x"
    )
    if pair.target is None:
        return head + " (informational)"
    below = "" if pair.met else "  BELOW TARGET"
    return head + f" (target >= {pair.target:.1f}x){below}"


def breakdown_line(b: Breakdown) -> str:
    rest = b.verify - b.check - b.marks
    return (
        f"{b.alg:<5} one verify {b.verify:5.0f} us = check (signature+claims) {b.check:4.0f} us"
        f" + get_marks (revocation read) {b.marks:4.0f} us + rest {rest:+4.0f} us;"
        f" PING alone {b.ping:4.0f} us; bare decode {b.bare:4.0f} us"
    )


def revoked_line(b: Breakdown) -> str:
    ok = (
        "ok"
        if b.revoked_reason == Reason.REVOKED.value
        else "WRONG: the revocation read is not running"
    )
    return f"{b.alg:<5} a revoked token verifies as: {b.revoked_reason} ({ok})"


def render_table(report: Report) -> str:
    head = (
        f"{'alg':<5}  {'mode':<5}  {'method':<6}  {'median':>8}  {'min':>8}  {'max':>8}  "
        "rounds (verifies/s)"
    )
    lines = [
        f"Redis {report.redis_version} at {report.server}; Python {platform.python_version()}; "
        f"PyJWT {jwt.__version__}; {os.cpu_count()} CPUs",
        f"{report.rounds} rounds x {report.n} verifies, order swapped every round, after "
        f"{WARMUP} warm-up verifies each; async: {report.in_flight} in flight on one event "
        f"loop (its default executor: {report.executor_threads} threads)",
        "",
        head,
        "-" * len(head),
    ]
    for pair in report.pairs:
        for t, label in ((pair.mcpsec, "mcpsec"), (pair.bare, "bare")):
            rounds = " ".join(f"{r:.0f}" for r in t.rates)
            lines.append(
                f"{pair.alg:<5}  {pair.mode:<5}  {label:<6}  {t.median:8.0f}  "
                f"{min(t.rates):8.0f}  {max(t.rates):8.0f}  {rounds}"
            )
            if t.invalid:
                lines.append(
                    f"  {label}: {t.invalid} verifies said not valid: the figures are wrong"
                )
    lines += ["", *(ratio_line(p) for p in report.pairs), ""]
    lines += ["What one verify costs (sync, each part timed alone, interleaved; medians):"]
    lines += [breakdown_line(b) for b in report.breakdowns]
    lines += ["", *(revoked_line(b) for b in report.breakdowns)]
    return "\n".join(lines)


def render_json(report: Report) -> str:
    def way(t: Throughput) -> dict[str, Any]:
        return {
            "median_per_s": round(t.median, 1),
            "rounds_per_s": [round(r, 1) for r in t.rates],
            "invalid": t.invalid,
        }

    results: dict[str, dict[str, Any]] = {}
    for p in report.pairs:
        results.setdefault(p.alg, {})[p.mode] = {
            "mcpsec": way(p.mcpsec),
            "bare_decode": way(p.bare),
            "ratio": round(p.ratio, 3),
            "target": p.target,
            "met": p.met,
        }
    document: dict[str, Any] = {
        "server": report.server,
        "redis_version": report.redis_version,
        "python": platform.python_version(),
        "pyjwt": jwt.__version__,
        "cpus": os.cpu_count(),
        "n": report.n,
        "rounds": report.rounds,
        "warmup": WARMUP,
        "in_flight": report.in_flight,
        "executor_threads": report.executor_threads,
        "results": results,
        "breakdown_us": {
            b.alg: {
                "verify": round(b.verify, 1),
                "check": round(b.check, 1),
                "get_marks": round(b.marks, 1),
                "ping": round(b.ping, 1),
                "bare_decode": round(b.bare, 1),
            }
            for b in report.breakdowns
        },
        "revoked_token_reason": {b.alg: b.revoked_reason for b in report.breakdowns},
    }
    return json.dumps(document, indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--n", type=positive, default=DEFAULT_N, help="verifies per round")
    parser.add_argument("--rounds", type=positive, default=DEFAULT_ROUNDS, help="timed rounds")
    parser.add_argument(
        "--in-flight", type=positive, default=DEFAULT_IN_FLIGHT, help="async verifies at once"
    )
    add_server_options(parser)
    args = parse_server_args(parser, argv)
    try:
        report = run_on_redis(args.url, lambda url, server: run(url, server, args))
    except Unmeasurable as e:
        print(f"{e}: nothing measured", file=sys.stderr)
        return 0
    if report is None:
        return 0
    print((render_json if args.json else render_table)(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
