"""Tool calls per second through the MCP SDK's client: the example server guarded by mcpsec.

    .venv/bin/python bench/mcp_server.py             # its own redis-server on a free port
    .venv/bin/python bench/mcp_server.py --url redis://127.0.0.1:6379/0 --n 500 --json

Two servers, each under uvicorn (log level warning) in its own process on a free loopback
port, so that their CPU is not the client's. Guarded: examples/mcp_server.py itself, run as
its docs say: `guarded_app(build_server(guard, sandbox), guard)` with the Guard from
`load_settings` of an environment that points XDG_CONFIG_HOME and XDG_DATA_HOME at a temp
folder, the store at the bench's Redis under a fresh key prefix, and the server's resource
and token audience at its URL. The folder's config gives the `user` role a rate limit of
10**9 refilling at 10**9 a second, so no call is ever refused (yet every call is still
charged, one Lua script on Redis), and holds an HS256 secret as `mcpsec config init` writes
one. Unguarded: the example's own four tools (its `add_tools`, no permissions declared),
on a plain `MCPServer("mcpsec-example", log_level="WARNING")` with no auth, serving
`server.streamable_http_app()` (this script's hidden `--serve-plain` mode).

On the guarded server every HTTP request is authenticated by the SDK through mcpsec's
verifier (an API key: one store round trip, in a worker thread, that checks and counts it;
an access token: signature and claims checked in the event loop, then its revocation marks
read) and the verdict appended to the audit chain (`key.verified` / `token.verified`); then
every `tools/call` body is read by mcpsec's gate: the tool's permission checked, the rate
limit charged, and a `tool.called` event appended, before the SDK runs the tool. Both kinds
of bearer credential are measured, each on its own session: an API key made with
`ApiKeys.create(roles=["user"])` and an access token from `Tokens.mint(roles=["user"])`.

The client is the SDK's own: `streamable_http_client` on an `httpx2.AsyncClient` (carrying
the `Authorization: Bearer` header) and a `ClientSession`, initialized once per server and
credential (three sessions, kept for the whole run), each call `call_tool("get_weather",
{"city": "london"})`; a call counts as failed when it raises or its result `is_error`. Two
modes: `--concurrency` calls in flight on each session at once (worker tasks sharing one
session: the SDK multiplexes concurrent requests, each its own POST, over the client's
connection pool), then one at a time. Every way gets `WARMUP` untimed calls first. Rounds
are interleaved: the three ways one after another, in reverse order every other round; the
figures are medians of the rounds, the server's and the client's CPU per call measured over
the same rounds (from /proc on Linux: the server's whole process, its threads included).
The client runs in this one Python process, so what it costs per call is in every figure
alike: the overhead it shows is mcpsec's share of a whole SDK round trip, not of the
server's work alone (the server CPU per call column shows that).

Target: mcpsec's overhead, 1 - guarded/unguarded calls per second, at most 15%, for each
credential and mode. After the run (untimed) the guarded server is stopped and the audit
chain walked once with `AuditLog.verify()`: it must be intact, and hold one allowed
`tool.called` event per call made with each credential, warm-ups included. A benchmark
reports; it always exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

# bench/ is no installed package: make the repo root importable from any working directory.
_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from mcpsec.core.api_keys import ApiKeys  # noqa: E402
from mcpsec.core.audit import AuditLog, Outcome, Verification  # noqa: E402
from mcpsec.core.authz import CredentialKind  # noqa: E402
from mcpsec.core.config import Settings, default_config_path, load_settings  # noqa: E402
from mcpsec.core.config_file import SECRET_FILE_NAME  # noqa: E402
from mcpsec.core.secret_files import new_secret_value, write_private_file  # noqa: E402
from mcpsec.core.tokens import Tokens  # noqa: E402
from mcpsec.server.guard import TOOL_EVENT  # noqa: E402

from bench.common import (  # noqa: E402
    add_server_options,
    bench_parser,
    client_like_the_store,
    forget,
    fresh_prefix,
    parse_server_args,
    positive,
    run_on_redis,
    swarm,
)

EXAMPLE: Final = _REPO / "examples" / "mcp_server.py"
TARGET_OVERHEAD: Final = 0.15
DEFAULT_N: Final = 300
DEFAULT_ROUNDS: Final = 7
DEFAULT_CONCURRENCY: Final = 4
WARMUP: Final = 50  # untimed calls per way before the first round: connections, caches warm
START_TIMEOUT: Final = 30.0  # seconds a server may take to listen
STOP_TIMEOUT: Final = 10.0
TOOL: Final = "get_weather"
ARGUMENTS: Final = {"city": "london"}
ROLE: Final = "user"  # grants weather:read
# Defining any [rate.roles.*] replaces the built-in limits: the user role's is never reached.
CONFIG: Final = f"[rate.roles.{ROLE}]\ncapacity = 1e9\nrefill_per_second = 1e9\n"
PLAIN, KEY, TOKEN = "unguarded", "key", "token"
WAYS: Final = (PLAIN, KEY, TOKEN)
GUARDED: Final = {KEY: CredentialKind.KEY.value, TOKEN: CredentialKind.TOKEN.value}
LABELS: Final = {PLAIN: "unguarded", KEY: "mcpsec, API key", TOKEN: "mcpsec, token"}


class ServerFailed(Exception):
    """A server that would not start: said on stderr, and nothing is measured."""


# -- the servers ---------------------------------------------------------------------------


def load_example() -> ModuleType:
    """examples/mcp_server.py as a module (examples/ is no package): its constants and helpers."""
    spec = importlib.util.spec_from_file_location("mcpsec_example_server", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve_plain(port: int, sandbox: Path) -> int:
    """The unguarded server (`--serve-plain PORT`): the example's own four tools, with no
    permissions declared, on a plain MCPServer with no auth, under uvicorn as the example
    runs."""
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("mcpsec-example", log_level="WARNING")
    load_example().add_tools(server, sandbox)
    uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=port, log_level="warning")
    return 0


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def cpu(self) -> float | None:
        """Seconds of CPU the server process has used, its threads included (Linux only)."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # from the state, field 3 of proc(5), on
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (held open together, so never the same one)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@contextmanager
def serving(name: str, argv: list[str], port: int, env: dict[str, str]) -> Iterator[Server]:
    """A server process, once it listens on `port`; stopped on the way out."""
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise ServerFailed(f"the {name} server exited with status {process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise ServerFailed(
                        f"the {name} server did not listen on port {port} in {START_TIMEOUT:.0f} s"
                    ) from None
                time.sleep(0.05)
        yield Server(name, port, process)
    finally:
        # Imported here, as bench/common.py does: tests.support imports pytest.
        from tests.support.redis_servers import terminate

        terminate(process, timeout=STOP_TIMEOUT)


# -- mcpsec's side: config, credentials, the audit check -----------------------------------


@dataclass(frozen=True)
class Deployment:
    environ: dict[str, str]  # what the guarded server's settings come from
    settings: Settings
    bearers: dict[str, str]  # way -> its credential


def deploy(folder: Path, store_url: str, prefix: str, resource: str) -> Deployment:
    """The temp config (the generous rate limit, and an HS256 secret as `config init` writes
    it), and one API key and one access token for the `user` role, made with the library."""
    environ = {
        "XDG_CONFIG_HOME": str(folder / "config"),
        "XDG_DATA_HOME": str(folder / "data"),
        "MCPSEC_STORE_URL": store_url,
        "MCPSEC_STORE_PREFIX": prefix,
        "MCPSEC_SERVER_RESOURCE": resource,
        "MCPSEC_JWT_AUDIENCE": resource,
    }
    config = default_config_path(environ)
    write_private_file(config, CONFIG.encode())
    write_private_file(config.parent / SECRET_FILE_NAME, (new_secret_value() + "\n").encode())
    settings = load_settings(environ)
    store = settings.store.open()
    try:
        log = AuditLog.from_settings(settings, store, actor="bench")
        keys = ApiKeys.from_settings(settings, store, audit=log)
        key = keys.create("bench", owner="bench-key", roles=[ROLE]).api_key
        tokens = Tokens.from_settings(settings, store, audit=log)
        token = tokens.mint("bench-token", roles=[ROLE], ttl=3600, refresh=False).access_token
    finally:
        store.close()
    return Deployment(environ, settings, {KEY: key, TOKEN: token})


def child_environ(environ: dict[str, str]) -> dict[str, str]:
    """This process's environment without its own MCPSEC_* settings, plus the bench's."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MCPSEC_")}
    return {**inherited, **environ}


@dataclass(frozen=True)
class Check:
    """The audit chain after the run, against the calls made on the guarded server."""

    verification: Verification
    recorded: dict[str, int]  # way -> allowed tool.called events with its credential kind
    denied: int  # tool.called events that refused a call: must be none
    made: dict[str, int]  # way -> calls made, warm-ups included
    types: dict[str, int]  # every event in the chain, by type, most frequent first

    @property
    def exact(self) -> bool:
        v = self.verification
        events = all(self.recorded[way] == self.made[way] for way in GUARDED)
        return v.intact and v.valid == v.total and self.denied == 0 and events


def check_audit(settings: Settings, made: dict[str, int]) -> Check:
    store = settings.store.open()
    try:
        log = AuditLog.from_settings(settings, store, actor="bench")
        verification = log.verify()
        recorded = dict.fromkeys(GUARDED, 0)
        kinds = {kind: way for way, kind in GUARDED.items()}
        denied = 0
        types: Counter[str] = Counter()
        for event in log.events():
            types[event.type] += 1
            if event.type != TOOL_EVENT:
                continue
            way = kinds.get(str(event.details.get("credential")))
            if event.outcome != Outcome.ALLOWED.value or way is None:
                denied += 1
            else:
                recorded[way] += 1
    finally:
        store.close()
    made_here = {way: made[way] for way in GUARDED}
    return Check(verification, recorded, denied, made_here, dict(types.most_common()))


# -- the client ----------------------------------------------------------------------------


@asynccontextmanager
async def session(url: str, bearer: str | None) -> AsyncIterator[ClientSession]:
    """The SDK's client, initialized: the credential rides on every request of its httpx2."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as opened,
    ):
        await opened.initialize()
        yield opened


def caller(opened: ClientSession) -> Any:
    """One tool call on `opened` as a swarm predicate: did it succeed?"""

    async def call(_: str) -> bool:
        try:
            result = await opened.call_tool(TOOL, ARGUMENTS)
        except Exception:  # an MCP error or a transport failure: a failed call, counted
            return False
        return not result.is_error

    return call


@dataclass(frozen=True)
class Throughput:
    way: str
    rates: tuple[float, ...]  # calls per second, one per round
    server_ms: float | None  # server CPU per call over the rounds (None: not on Linux)
    client_ms: float  # this process's CPU per call over the rounds
    failed: int

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


@dataclass(frozen=True)
class Mode:
    concurrency: int  # calls in flight on each session
    ways: dict[str, Throughput]

    @property
    def name(self) -> str:
        return "sequential" if self.concurrency == 1 else f"{self.concurrency} in flight"

    def ratio(self, way: str) -> float:
        return self.ways[way].median / self.ways[PLAIN].median

    def paired(self, way: str) -> float:
        """The median of the per-round ratios: steadier when the machine drifts."""
        rounds = zip(self.ways[way].rates, self.ways[PLAIN].rates, strict=True)
        return statistics.median(g / p for g, p in rounds)

    def overhead(self, way: str) -> float:
        return 1 - self.ratio(way)

    def met(self, way: str) -> bool:
        return self.overhead(way) <= TARGET_OVERHEAD


async def timed_rounds(
    sessions: dict[str, ClientSession],
    servers: dict[str, Server],
    concurrency: int,
    args: argparse.Namespace,
    made: dict[str, int],
) -> Mode:
    """Rounds of `args.n` calls each way, the ways in reverse order every other round."""
    rates: dict[str, list[float]] = {way: [] for way in WAYS}
    failed = dict.fromkeys(WAYS, 0)
    server_cpu: dict[str, float | None] = dict.fromkeys(WAYS, 0.0)
    client_cpu = dict.fromkeys(WAYS, 0.0)
    for round_no in range(args.rounds):
        for way in WAYS if round_no % 2 == 0 else WAYS[::-1]:
            server = servers[way]
            server_before, client_before = server.cpu(), time.process_time()
            rate, bad = await swarm(caller(sessions[way]), "", args.n, concurrency)
            client_cpu[way] += time.process_time() - client_before
            server_after, so_far = server.cpu(), server_cpu[way]
            if server_before is None or server_after is None or so_far is None:
                server_cpu[way] = None
            else:
                server_cpu[way] = so_far + server_after - server_before
            rates[way].append(rate)
            failed[way] += bad
            made[way] += args.n
    calls = args.n * args.rounds

    def per_call(seconds: float | None) -> float | None:
        return None if seconds is None else seconds * 1000 / calls

    return Mode(
        concurrency,
        {
            way: Throughput(
                way,
                tuple(rates[way]),
                per_call(server_cpu[way]),
                client_cpu[way] * 1000 / calls,
                failed[way],
            )
            for way in WAYS
        },
    )


async def measure(
    servers: dict[str, Server], bearers: dict[str, str], args: argparse.Namespace
) -> tuple[tuple[Mode, ...], dict[str, int], int]:
    """Every mode on the same three sessions; (modes, calls made per way, warm-ups failed)."""
    made = dict.fromkeys(WAYS, 0)
    warm_failed = 0
    async with AsyncExitStack() as stack:
        sessions = {
            way: await stack.enter_async_context(session(servers[way].url, bearers.get(way)))
            for way in WAYS
        }
        for way in WAYS:
            warm_failed += (await swarm(caller(sessions[way]), "", WARMUP, args.concurrency))[1]
            made[way] += WARMUP
        modes = [
            await timed_rounds(sessions, servers, concurrency, args, made)
            for concurrency in dict.fromkeys((args.concurrency, 1))
        ]
    return tuple(modes), made, warm_failed


# -- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    where: str
    n: int
    rounds: int
    modes: tuple[Mode, ...]
    warm_failed: int
    check: Check


def run(url: str, server: str, args: argparse.Namespace) -> Report | None:
    prefix = fresh_prefix()
    admin = client_like_the_store(url)
    try:
        version = str(admin.info("server")["redis_version"])
        where = f"Redis {version} at {server} (keys under {prefix}, deleted after)"
        with tempfile.TemporaryDirectory(prefix="mcpsec-bench-") as folder:
            try:
                return run_servers(Path(folder), url, prefix, where, args)
            except ServerFailed as e:
                print(f"nothing measured: {e}", file=sys.stderr)
                return None
    finally:
        forget(admin, prefix)
        admin.close()


def run_servers(
    folder: Path, url: str, prefix: str, where: str, args: argparse.Namespace
) -> Report | None:
    plain_port, guarded_port = free_ports(2)
    deployment = deploy(folder, url, prefix, f"http://127.0.0.1:{guarded_port}/mcp")
    env = child_environ(deployment.environ)
    sandbox = folder / "sandbox"
    sandbox.mkdir()
    here = str(Path(__file__).resolve())
    plain_argv = [sys.executable, here, "--serve-plain", str(plain_port), "--sandbox", str(sandbox)]
    guarded_argv = [sys.executable, str(EXAMPLE), "--port", str(guarded_port)]
    with (
        serving("unguarded", plain_argv, plain_port, env) as plain,
        serving("guarded", [*guarded_argv, "--sandbox", str(sandbox)], guarded_port, env) as guard,
    ):
        servers = {PLAIN: plain, KEY: guard, TOKEN: guard}
        try:
            modes, made, warm_failed = asyncio.run(measure(servers, deployment.bearers, args))
        except Exception as e:  # the client could not even start a session: say why, exit 0
            print(f"nothing measured: the MCP client failed: {e!r}", file=sys.stderr)
            return None
    # Untimed, with the guarded server stopped: every event it recorded is in.
    check = check_audit(deployment.settings, made)
    return Report(where, args.n, args.rounds, modes, warm_failed, check)


# -- output --------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in ("mcp", "uvicorn", "httpx2")}


def ratio_line(mode: Mode, way: str) -> str:
    verdict = "met" if mode.met(way) else "ABOVE TARGET"
    guarded, plain = mode.ways[way], mode.ways[PLAIN]
    return (
        f"{mode.name:<11}  {LABELS[way]:<16}  {guarded.median:6.0f}/s / unguarded "
        f"{plain.median:6.0f}/s = {mode.ratio(way):.2f}x, overhead {mode.overhead(way):6.1%} "
        f"(target <= {TARGET_OVERHEAD:.0%}: {verdict}; round by round {mode.paired(way):.2f}x)"
    )


def check_lines(report: Report) -> list[str]:
    c, v = report.check, report.check.verification
    chain = "intact" if v.intact else f"BROKEN at {v.event_id}: {v.problem}"
    lines = [
        "audit chain after the run (untimed): "
        f"{chain}; {v.valid} of {v.total} events valid, {v.trimmed} trimmed",
    ]
    for way in GUARDED:
        match = "match" if c.recorded[way] == c.made[way] else "MISMATCH"
        lines.append(
            f"  {TOOL_EVENT} allowed with the {LABELS[way].removeprefix('mcpsec, ')}: "
            f"{c.recorded[way]} recorded, {c.made[way]} calls made: {match}"
        )
    if c.denied:
        lines.append(f"  {c.denied} {TOOL_EVENT} events denied a call or named no credential")
    lines.append(f"  one event per call: {'exact' if c.exact else 'NOT EXACT'}")
    lines.append("  every event by type: " + ", ".join(f"{t} {n}" for t, n in c.types.items()))
    return lines


def render_table(report: Report) -> str:
    v = versions()
    head = (
        f"{'mode':<11}  {'server':<16}  {'median':>7}  {'min':>7}  {'max':>7}  "
        f"{'srv ms':>6}  {'cli ms':>6}  rounds (calls/s)"
    )
    lines = [
        report.where,
        f"Python {platform.python_version()}; mcp {v['mcp']}; uvicorn {v['uvicorn']}; "
        f"httpx2 {v['httpx2']}; {os.cpu_count()} CPUs",
        "examples/mcp_server.py guarded by mcpsec, next to its tools on a plain MCPServer, each "
        "under uvicorn in its own process; the SDK's client, one session per server and "
        "credential",
        f"{report.rounds} rounds x {report.n} calls of {TOOL}(city=london) per server, order "
        f"reversed every other round, after {WARMUP} warm-up calls each; srv ms / cli ms: the "
        "server's and this client's CPU per call",
        "",
        head,
        "-" * len(head),
    ]
    for mode in report.modes:
        for way in WAYS:
            t = mode.ways[way]
            server_ms = "-" if t.server_ms is None else f"{t.server_ms:.2f}"
            rounds = " ".join(f"{r:.0f}" for r in t.rates)
            lines.append(
                f"{mode.name:<11}  {LABELS[way]:<16}  {t.median:7.0f}  {min(t.rates):7.0f}  "
                f"{max(t.rates):7.0f}  {server_ms:>6}  {t.client_ms:6.2f}  {rounds}"
            )
            if t.failed:
                lines.append(f"  {t.failed} calls failed: the figures are wrong")
    if report.warm_failed:
        lines.append(f"{report.warm_failed} warm-up calls failed")
    lines += ["", *(ratio_line(m, way) for m in report.modes for way in GUARDED), ""]
    lines += check_lines(report)
    return "\n".join(lines)


def render_json(report: Report) -> str:
    def way(t: Throughput) -> dict[str, Any]:
        return {
            "median_per_s": round(t.median, 1),
            "rounds_per_s": [round(r, 1) for r in t.rates],
            "server_cpu_ms_per_call": None if t.server_ms is None else round(t.server_ms, 3),
            "client_cpu_ms_per_call": round(t.client_ms, 3),
            "failed": t.failed,
        }

    def mode(m: Mode) -> dict[str, Any]:
        found: dict[str, Any] = {"concurrency": m.concurrency, PLAIN: way(m.ways[PLAIN])}
        for name in GUARDED:
            found[name] = {
                **way(m.ways[name]),
                "ratio": round(m.ratio(name), 3),
                "per_round_median_ratio": round(m.paired(name), 3),
                "overhead": round(m.overhead(name), 3),
                "target_overhead": TARGET_OVERHEAD,
                "met": m.met(name),
            }
        return found

    c, v = report.check, report.check.verification
    document: dict[str, Any] = {
        "where": report.where,
        "python": platform.python_version(),
        **versions(),
        "cpus": os.cpu_count(),
        "tool": TOOL,
        "n": report.n,
        "rounds": report.rounds,
        "warmup": WARMUP,
        "warmup_failed": report.warm_failed,
        "modes": {m.name: mode(m) for m in report.modes},
        "audit": {
            "intact": v.intact,
            "problem": v.problem,
            "events": v.total,
            "valid": v.valid,
            "trimmed": v.trimmed,
            "tool_called": {w: {"recorded": c.recorded[w], "calls": c.made[w]} for w in GUARDED},
            "denied": c.denied,
            "exact": c.exact,
            "events_by_type": c.types,
        },
    }
    return json.dumps(document, indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--n", type=positive, default=DEFAULT_N, help="calls per server and round")
    parser.add_argument("--rounds", type=positive, default=DEFAULT_ROUNDS, help="timed rounds")
    parser.add_argument(
        "--concurrency",
        type=positive,
        default=DEFAULT_CONCURRENCY,
        help="calls in flight on each session in the concurrent mode (then one at a time)",
    )
    parser.add_argument("--serve-plain", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--sandbox", type=Path, default=Path("sandbox"), help=argparse.SUPPRESS)
    add_server_options(parser)
    args = parse_server_args(parser, argv)
    if args.serve_plain is not None:
        return serve_plain(args.serve_plain, args.sandbox)
    report = run_on_redis(args.url, lambda url, server: run(url, server, args))
    if report is not None:
        print((render_json if args.json else render_table)(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
