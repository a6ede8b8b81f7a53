"""Real `redis-server` processes for tests: a standalone server, a 3-master cluster, or a
primary with a replica and three sentinels.

    require_binaries("redis-server", "redis-cli")       # skip (or fail on CI) when missing
    server = start_redis_server(tmp_path)               # free port, temp folder, no persistence
    with start_redis_server(tmp_path) as server: ...    # stopped however the block ends
    server.url                                          # redis://127.0.0.1:PORT/0
    server.kill(); server.restart()                     # faults: SIGKILL, then the same port again
    cluster = start_redis_cluster(tmp_path)             # redis+cluster://127.0.0.1:p1,...
    start_redis_cluster(tmp_path, replicas=1, node_timeout_ms=1000)   # failovers in seconds
    cluster.stop()
    topology = start_sentinel_topology(tmp_path)       # redis+sentinel://127.0.0.1:s1,.../svc
    topology.primary.kill(); topology.wait_for_new_primary(old_port)   # a failover

Every process started here is stopped by its owner (`stop()`, or the end of its `with` block),
and, as a safety net, killed when the interpreter exits.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Self

import pytest
import redis

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
CLUSTER_TIMEOUT = 30.0
_POLL = 0.05
_LOG_NAME = "redis.log"

_live: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_live):
        terminate(process)


def terminate(process: subprocess.Popen[bytes], *, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, wait, then SIGKILL: never leave a process (or a zombie) behind."""
    try:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
    finally:
        _live.discard(process)


def ci_is_set() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require_binaries(*names: str) -> None:
    """Skip the test when a binary is missing; fail instead on CI, which must never skip."""
    wanted = names or ("redis-server", "redis-cli")
    missing = [name for name in wanted if shutil.which(name) is None]
    if not missing:
        return
    message = (
        f"{', '.join(missing)} not installed: install Redis (e.g. `apt-get install redis-server`)"
        " to run the tests that need a real server"
    )
    if ci_is_set():
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    rng = random.Random()  # not for security
    for _ in range(200):
        port = rng.randint(20_000, 50_000)
        if _port_is_free(port) and _port_is_free(port + 10_000):
            return port
    raise RuntimeError("no free pair of ports (port, port + 10000) found for a cluster node")


def command(port: int, *args: str, timeout: float = 1.0) -> str:
    """Send one command over RESP; return a simple-string or bulk reply as text (nil as "").

    Raises OSError when the server does not answer and RuntimeError on an error reply.
    """
    request = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request.encode())
        buffer = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"redis on port {port} closed the connection")
            buffer += chunk
            if b"\r\n" not in buffer:
                continue
            head, _, rest = buffer.partition(b"\r\n")
            kind, body = head[:1], head[1:].decode()
            if kind == b"+":
                return body
            if kind == b"-":
                raise RuntimeError(f"redis on port {port} answered {body}")
            if kind == b"$":
                size = int(body)
                if size < 0:
                    return ""
                if len(rest) >= size + 2:
                    return rest[:size].decode()
                continue
            return head.decode()


def _answers_ping(port: int) -> bool:
    try:
        return command(port, "PING", timeout=0.5) == "PONG"
    except (OSError, RuntimeError):
        return False


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class _Stoppable:
    """`with start_…(…) as started:` stops what was started however the block ends, so that a
    fixture holding a server is three lines: require the binaries, `with`, `yield`."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class RedisServer(_Stoppable):
    """One `redis-server` process; `restart()` brings it back on the same port and folder."""

    port: int
    folder: Path
    process: subprocess.Popen[bytes]
    extra_args: tuple[str, ...] = field(default=())
    config: Path | None = None  # a config file read first (a sentinel's, which it rewrites)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.folder / _LOG_NAME

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Terminate gracefully (SIGTERM), then kill if it does not exit in time."""
        terminate(self.process)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown, no save."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)
        finally:
            _live.discard(self.process)

    def restart(self) -> None:
        """Stop if still running, then start again on the same port with the same arguments."""
        self.stop()
        self.process = _spawn(self.port, self.folder, self.extra_args, config=self.config)
        _wait_until_ready(self.port, self.process, self.log)


def _spawn(
    port: int, folder: Path, extra_args: Iterable[str], *, config: Path | None = None
) -> subprocess.Popen[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    argv = [
        "redis-server",
        *([str(config)] if config else []),  # redis-server reads a config file only first
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(folder),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--protected-mode", "no",
        *extra_args,
    ]  # fmt: skip
    with (folder / _LOG_NAME).open("ab") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=folder
        )
    _live.add(process)
    return process


def _wait_until_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _live.discard(process)
            raise RuntimeError(
                f"redis-server on port {port} exited with {process.returncode} while starting;"
                f" log {log}:\n{log_tail(log)}"
            )
        if _answers_ping(port):
            return
        time.sleep(_POLL)
    terminate(process)
    raise RuntimeError(
        f"redis-server on port {port} did not answer PING within {START_TIMEOUT:.0f} s;"
        f" log {log}:\n{log_tail(log)}"
    )


def start_redis_server(
    folder: Path,
    *extra_args: str,
    port: int | None = None,
    attempts: int = 3,
    config: Path | None = None,
) -> RedisServer:
    """Start `redis-server` on a free port (or `port`), with no persistence, and wait for PONG.

    When another process grabs the chosen free port first, tries again on a new one.
    """
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else free_port()
        process = _spawn(chosen, folder, extra_args, config=config)
        try:
            _wait_until_ready(chosen, process, folder / _LOG_NAME)
        except RuntimeError as e:
            port_taken = "Address already in use" in str(e)
            if port is None and port_taken and attempt < attempts:
                continue
            raise
        return RedisServer(chosen, folder, process, extra_args, config)
    raise AssertionError("unreachable")


@dataclass
class RedisClusterProcs(_Stoppable):
    """A local Redis Cluster (masters, and the replicas asked for), each node in its own
    subfolder; `nodes` lists them as started, which says nothing of their roles now."""

    nodes: list[RedisServer]

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def wait_until_ok(self, timeout: float = CLUSTER_TIMEOUT) -> None:
        """Wait until every node reports `cluster_state:ok` with all 16384 slots assigned."""
        deadline = time.monotonic() + timeout
        last: dict[int, str] = {}
        while time.monotonic() < deadline:
            for port in self.ports:
                try:
                    last[port] = command(port, "CLUSTER", "INFO")
                except (OSError, RuntimeError) as e:
                    last[port] = repr(e)
            if all(_cluster_ok(info) for info in last.values()):
                return
            time.sleep(0.1)
        states = "; ".join(f"{port}: {_cluster_summary(info)}" for port, info in last.items())
        raise RuntimeError(f"redis cluster not ok within {timeout:.0f} s: {states}")


def _cluster_fields(info: str) -> dict[str, str]:
    pairs = (line.partition(":") for line in info.splitlines() if ":" in line)
    return {name.strip(): value.strip() for name, _, value in pairs}


def _cluster_ok(info: str) -> bool:
    fields = _cluster_fields(info)
    return fields.get("cluster_state") == "ok" and fields.get("cluster_slots_ok") == "16384"


def _cluster_summary(info: str) -> str:
    fields = _cluster_fields(info)
    if not fields:
        return info
    return f"state={fields.get('cluster_state')} slots_ok={fields.get('cluster_slots_ok')}"


def start_redis_cluster(
    folder: Path, *, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 5000
) -> RedisClusterProcs:
    """Start `masters` cluster-enabled nodes and `replicas` replicas of each, join them with
    `redis-cli --cluster create`, and wait until the slots are served and every replica has
    synced (a replica not yet synced could not take over). A low `node_timeout_ms` makes a
    failover quick, for fault tests."""
    cluster = RedisClusterProcs(nodes=[])
    try:
        for _ in range(masters * (1 + replicas)):
            port = free_cluster_port()
            node = start_redis_server(
                folder / f"node-{port}",
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", str(node_timeout_ms),
                port=port,
            )  # fmt: skip
            cluster.nodes.append(node)
        addresses = [f"127.0.0.1:{port}" for port in cluster.ports]
        argv = ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", str(replicas)]
        create = subprocess.run(
            [*argv, "--cluster-yes"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLUSTER_TIMEOUT,
            check=False,
        )
        if create.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed ({create.returncode}):\n"
                f"{create.stdout[-2000:]}\n{create.stderr[-2000:]}"
            )
        cluster.wait_until_ok()
        if replicas:
            _wait_until_replicas_synced(cluster.ports, masters * replicas)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_until_replicas_synced(ports: list[int], expected: int) -> None:
    """Until `expected` of the nodes are replicas whose link to their primary is up."""
    deadline = time.monotonic() + CLUSTER_TIMEOUT
    linked = 0
    while time.monotonic() < deadline:
        states = [_replication(port) for port in ports]
        linked = sum(
            1 for s in states if s.get("role") == "slave" and s.get("master_link_status") == "up"
        )
        if linked >= expected:
            return
        time.sleep(0.1)
    raise RuntimeError(
        f"only {linked} of {expected} cluster replicas synced within {CLUSTER_TIMEOUT:.0f} s"
    )


SENTINEL_SERVICE = "mcpsec-main"
SENTINEL_TIMEOUT = 30.0
_SENTINEL_CONF = """\
sentinel monitor {service} 127.0.0.1 {port} 2
sentinel down-after-milliseconds {service} 1000
sentinel failover-timeout {service} 5000
sentinel parallel-syncs {service} 1
"""


@dataclass
class SentinelTopology(_Stoppable):
    """A primary, a replica and three sentinels (quorum 2) on loopback.

    `primary` and `replica` name the roles the nodes hold now: `wait_for_new_primary` swaps
    them after a failover, and `rejoin` brings a dead node back as the replica.
    """

    service: str
    primary: RedisServer
    replica: RedisServer
    sentinels: list[RedisServer]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.primary):
            server.stop()

    def wait_until_healthy(self, timeout: float = SENTINEL_TIMEOUT) -> None:
        """Until every sentinel names `primary`, knows the two other sentinels and sees the
        replica up, and the replica's link to the primary is up: ready for a failover."""
        deadline = time.monotonic() + timeout
        problems = ["not checked yet"]
        while time.monotonic() < deadline:
            problems = self._health_problems()
            if not problems:
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"sentinel topology not healthy within {timeout:.0f} s: {'; '.join(problems)}\n"
            + self._log_tails()
        )

    def wait_for_new_primary(self, old_port: int, timeout: float = SENTINEL_TIMEOUT) -> RedisServer:
        """Until every sentinel names a primary other than `old_port` and that node says it
        is a master; then `primary` and `replica` are swapped. Returns the new primary."""
        deadline = time.monotonic() + timeout
        named: list[int | None] = []
        while time.monotonic() < deadline:
            named = [self._named_primary(sentinel.port) for sentinel in self.sentinels]
            new = named[0]
            if new not in (None, old_port) and set(named) == {new} and _role(new) == "master":
                if self.primary.port != new:
                    self.primary, self.replica = self.replica, self.primary
                return self.primary
            time.sleep(0.05)
        raise RuntimeError(
            f"no new primary (other than port {old_port}) within {timeout:.0f} s; the sentinels "
            f"name ports {named}\n" + self._log_tails()
        )

    def switched_at(self, since: float) -> float | None:
        """When the first sentinel announced a new primary (`+switch-master` in its log) at
        or after `since`, both `time.time()` values: the failover's own share of a recovery."""
        announced = [
            stamp
            for sentinel in self.sentinels
            for stamp in _switch_times(sentinel.log)
            if stamp >= since - 0.001  # the log keeps milliseconds
        ]
        return min(announced, default=None)

    def rejoin(self, server: RedisServer) -> None:
        """Start a dead node again as a replica of the primary, as an operator brings back
        a crashed primary, and wait until the topology is ready for the next failover."""
        server.extra_args = ("--replicaof", "127.0.0.1", str(self.primary.port))
        server.restart()
        self.replica = server
        self.wait_until_healthy()

    def _health_problems(self) -> list[str]:
        problems = []
        for sentinel in self.sentinels:
            try:
                problems += self._sentinel_problems(sentinel.port)
            except redis.RedisError as e:
                problems.append(f"sentinel {sentinel.port}: {e}")
        if _replication(self.replica.port).get("master_link_status") != "up":
            problems.append(f"replica {self.replica.port}: link to the primary not up")
        elif not _acknowledges(self.primary.port):
            # Link up is not yet "acknowledging writes": a test that WAITs for one replica
            # right after a rejoin would otherwise see 0 of 1 on a busy machine.
            problems.append(f"replica {self.replica.port}: does not acknowledge writes yet")
        return problems

    def _sentinel_problems(self, port: int) -> list[str]:
        with _client(port) as client:
            master = client.sentinel_master(self.service)
            replicas = client.sentinel_slaves(self.service)
        seen = [r for r in replicas if r["port"] == self.replica.port and not r["is_sdown"]]
        checks = {
            f"names port {master['port']} as primary": master["port"] == self.primary.port,
            "sees the primary down": not (master["is_sdown"] or master["is_odown"]),
            f"knows {master['num-other-sentinels']} other sentinels": master["num-other-sentinels"]
            >= len(self.sentinels) - 1,
            "does not see the replica up": bool(seen),
        }
        return [f"sentinel {port} {problem}" for problem, ok in checks.items() if not ok]

    def _named_primary(self, port: int) -> int | None:
        try:
            with _client(port) as client:
                address = client.sentinel_get_master_addr_by_name(self.service)
        except redis.RedisError:
            return None
        return int(address[1]) if address else None

    def _log_tails(self) -> str:
        servers = (self.primary, self.replica, *self.sentinels)
        return "\n".join(f"-- {server.log}:\n{log_tail(server.log, 10)}" for server in servers)


def _switch_times(log: Path) -> list[float]:
    """Times of the `+switch-master` lines of a sentinel's log, which start like
    `1234:X 03 Dec 2026 08:24:15.800 # +switch-master ...` (local time)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    stamps = (line.split(" ", 1)[1][:24] for line in lines if "+switch-master" in line)
    # Naive on purpose: the log's local time, read as local time by timestamp().
    return [datetime.strptime(s, "%d %b %Y %H:%M:%S.%f").timestamp() for s in stamps]


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, decode_responses=True, socket_timeout=1.0)


def _replication(port: int) -> dict[str, str]:
    try:
        return _cluster_fields(command(port, "INFO", "replication"))
    except (OSError, RuntimeError):
        return {}


def _acknowledges(primary: int) -> bool:
    """Whether a write on the primary is acknowledged by its replica within half a second."""
    try:
        with _client(primary) as client:
            client.incr("_topology:probe")
            return int(client.execute_command("WAIT", 1, 500)) >= 1
    except redis.RedisError:
        return False


def _role(port: int) -> str | None:
    return _replication(port).get("role")


def start_sentinel(folder: Path, service: str, primary_port: int) -> RedisServer:
    """A sentinel watching the primary; its config file lives in its folder (it rewrites it)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "sentinel.conf"
    config.write_text(_SENTINEL_CONF.format(service=service, port=primary_port))
    return start_redis_server(folder, "--sentinel", config=config)


def start_sentinel_topology(folder: Path, *, service: str = SENTINEL_SERVICE) -> SentinelTopology:
    """Start a primary, its replica and three sentinels, each in a subfolder of `folder`,
    and wait until the sentinels know each other and the replica; everything started is
    stopped again when that fails."""
    started: list[RedisServer] = []
    try:
        primary = start_redis_server(folder / "primary")
        started.append(primary)
        replica_args = ("--replicaof", "127.0.0.1", str(primary.port))
        replica = start_redis_server(folder / "replica", *replica_args)
        started.append(replica)
        for i in range(3):
            started.append(start_sentinel(folder / f"sentinel-{i}", service, primary.port))
        topology = SentinelTopology(service, primary, replica, started[2:])
        topology.wait_until_healthy()
    except BaseException:
        for server in started:
            server.stop()
        raise
    return topology
