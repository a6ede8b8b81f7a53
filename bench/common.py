"""Helpers every benchmark in bench/ shares, so that each script holds only what it measures.

    parser = bench_parser(__doc__)               # described by the docstring's first line
    parser.add_argument("--n", type=positive)    # the script's own options first,
    add_server_options(parser)                   # then --url and --json
    args = parse_server_args(parser, argv)
    report = run_on_redis(args.url, lambda url, server: run(url, server, args))

Sharing them keeps the scripts' figures comparable: every method is timed by the same loops
(`timed`, `swarm`), every client gets the store's socket settings (so only the method differs),
and every Redis benchmark runs on its own throwaway redis-server unless `--url` names one, keeps
its keys under a fresh prefix and deletes them after, as the server may not be ours. A benchmark
reports: a missing or failing server is said on stderr, and the script still exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Final, TypeVar

import redis
from mcpsec.core.errors import MCPSecError
from mcpsec.store import redact_url
from redis.backoff import NoBackoff
from redis.retry import Retry

TIMEOUT: Final = 2.0  # the store's default socket timeouts, given to every client
# The plain clients here, and `forget`'s SCAN, talk to one server: no cluster URLs.
STANDALONE_SCHEMES: Final = ("redis://", "rediss://", "unix://")

ReportT = TypeVar("ReportT")  # what a script's `run` returns
# One verify or rate-limit decision on one key, token or identity: does it say yes?
Predicate = Callable[[str], bool]
AsyncPredicate = Callable[[str], Awaitable[bool]]


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1 (errors name it "positive value")."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose description is the first line of the script's docstring."""
    return argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """`--url` and `--json`, the last options of every Redis benchmark."""
    parser.add_argument("--url", help="a redis:// server to use instead of starting one")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def parse_server_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """The options; exits with argparse's usage error when `--url` is no standalone Redis URL."""
    args = parser.parse_args(argv)
    if args.url is not None and not args.url.startswith(STANDALONE_SCHEMES):
        parser.error("--url must be a standalone Redis URL (redis://, rediss:// or unix://)")
    return args


def fresh_prefix() -> str:
    """A key prefix no other run uses, so that `forget` deletes this run's keys and no others."""
    return f"mcpsec-bench-{secrets.token_hex(4)}:"


def client_like_the_store(url: str) -> redis.Redis:
    """The settings `RedisStore.from_url` gives its client, so only the method differs."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=TIMEOUT,
        socket_timeout=TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def forget(client: redis.Redis, prefix: str) -> None:
    """Leave nothing behind on a server that is not ours."""
    names = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(names), 500):
        client.delete(*names[start : start + 500])


@contextmanager
def own_server() -> Iterator[str]:
    """A throwaway redis-server on a free port, in a temp folder, stopped on the way out."""
    # Imported here: tests.support imports pytest, which startup.py must not need.
    from tests.support.redis_servers import start_redis_server

    with tempfile.TemporaryDirectory(prefix="mcpsec-bench-") as folder:
        server = start_redis_server(Path(folder))
        try:
            yield server.url
        finally:
            server.stop()


def timed(predicate: Predicate, arg: str, n: int) -> tuple[float, int]:
    """(calls per second, how many said no) over `n` calls of `predicate(arg)`, one at a time."""
    said_no = 0
    start = time.perf_counter()
    for _ in range(n):
        said_no += not predicate(arg)
    return n / (time.perf_counter() - start), said_no


async def swarm(predicate: AsyncPredicate, arg: str, n: int, in_flight: int) -> tuple[float, int]:
    """`in_flight` worker tasks share `n` calls of `predicate(arg)`; (calls per second, said no)."""
    shares = [n // in_flight + (i < n % in_flight) for i in range(in_flight)]

    async def work(count: int) -> int:
        return sum([not await predicate(arg) for _ in range(count)])

    start = time.perf_counter()
    said_no = sum(await asyncio.gather(*(work(c) for c in shares)))
    return n / (time.perf_counter() - start), said_no


def run_on_redis(url: str | None, run: Callable[[str, str], ReportT]) -> ReportT | None:
    """`run(url, server)` on the server `url` names, else on an own one; `server` is the name
    the report prints (no password). None, said on stderr, when there is no server to use or
    Redis fails: a benchmark reports, it does not crash."""
    if url is None and shutil.which("redis-server") is None:
        print(
            "redis-server is not installed and no --url was given: nothing measured",
            file=sys.stderr,
        )
        return None
    try:
        with own_server() if url is None else nullcontext(url) as where:
            return run(where, redact_url(where) if url else f"{where} (own server)")
    except (redis.RedisError, MCPSecError) as e:
        print(f"could not run against Redis: {e}", file=sys.stderr)
        return None
