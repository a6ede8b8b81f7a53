"""Real `redis-server` processes for tests: one standalone server or a 3-master cluster.

    require_binaries("redis-server", "redis-cli")       # skip (or fail on CI) when missing
    server = start_redis_server(tmp_path)               # free port, temp folder, no persistence
    server.url                                          # redis://127.0.0.1:PORT/0
    server.kill(); server.restart()                     # faults: SIGKILL, then the same port again
    cluster = start_redis_cluster(tmp_path)             # redis+cluster://127.0.0.1:p1,...
    cluster.stop()

Every process started here is stopped by its owner (fixtures call `stop()`), and, as a safety
net, killed when the interpreter exits.
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
from pathlib import Path

import pytest

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


@dataclass
class RedisServer:
    """One `redis-server` process; `restart()` brings it back on the same port and folder."""

    port: int
    folder: Path
    process: subprocess.Popen[bytes]
    extra_args: tuple[str, ...] = field(default=())

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
        self.process = _spawn(self.port, self.folder, self.extra_args)
        _wait_until_ready(self.port, self.process, self.log)


def _spawn(port: int, folder: Path, extra_args: Iterable[str]) -> subprocess.Popen[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    argv = [
        "redis-server",
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
    folder: Path, *extra_args: str, port: int | None = None, attempts: int = 3
) -> RedisServer:
    """Start `redis-server` on a free port (or `port`), with no persistence, and wait for PONG.

    When another process grabs the chosen free port first, tries again on a new one.
    """
    for attempt in range(1, attempts + 1):
        chosen = port if port is not None else free_port()
        process = _spawn(chosen, folder, extra_args)
        try:
            _wait_until_ready(chosen, process, folder / _LOG_NAME)
        except RuntimeError as e:
            port_taken = "Address already in use" in str(e)
            if port is None and port_taken and attempt < attempts:
                continue
            raise
        return RedisServer(port=chosen, folder=folder, process=process, extra_args=extra_args)
    raise AssertionError("unreachable")


@dataclass
class RedisClusterProcs:
    """A local Redis Cluster of masters only, each node in its own subfolder."""

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


def start_redis_cluster(folder: Path, *, masters: int = 3) -> RedisClusterProcs:
    """Start `masters` cluster-enabled nodes, join them with `redis-cli --cluster create`."""
    cluster = RedisClusterProcs(nodes=[])
    try:
        for _ in range(masters):
            port = free_cluster_port()
            node = start_redis_server(
                folder / f"node-{port}",
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "5000",
                port=port,
            )  # fmt: skip
            cluster.nodes.append(node)
        addresses = [f"127.0.0.1:{port}" for port in cluster.ports]
        argv = ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0"]
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
    except BaseException:
        cluster.stop()
        raise
    return cluster
