"""End-to-end fixtures: the example MCP server (examples/mcp_server.py) as a real process, once
per store backend, with its credentials made by the real `mcpsec` CLI.

    deployment.url                         http://127.0.0.1:PORT/mcp: resource and audience
    deployment.create_key("user")          `mcpsec keys create --json`, as a dict
    deployment.mint("alice", "premium")    `mcpsec token mint --json`, as a dict
    deployment.cli("keys", "revoke", kid)  any other command; exit 0 expected
    deployment.audit_events()              `mcpsec audit tail --json -n 200`, parsed

Each backend gets its own temporary HOME, XDG folders, config (a tiny guest rate limit: see
GUEST_CAPACITY) and store: an SQLite file, or its own key prefix on the session's real
redis-server (tests/conftest.py). The server is started once per module and backend.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import tomli_w

from tests.support.cli import Cli
from tests.support.redis_servers import RedisServer, free_port, log_tail, terminate

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mcp_server.py"
START_TIMEOUT = 15.0  # the server imports the MCP SDK (~0.7 s) before it listens
CLI_TIMEOUT = 30.0
START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it
GUEST_CAPACITY = 3
GUEST_REFILL = 0.05  # one call every 20 s: nothing refills noticeably during a test


@dataclass
class Deployment:
    """One running example server, its private mcpsec environment and its sandbox."""

    backend: str
    folder: Path
    mcpsec: Cli  # the server's settings, which its CLI shares
    port: int
    workspace: Path  # the sandbox's parent: nothing but the sandbox may ever appear here
    sandbox: Path
    log: Path  # the server's stderr
    process: subprocess.Popen[bytes]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.origin}/mcp"

    @property
    def metadata_url(self) -> str:
        return f"{self.origin}/.well-known/oauth-protected-resource/mcp"

    def server_log(self) -> str:
        return log_tail(self.log, 40)

    def cli(self, *args: str) -> str:
        """Run `mcpsec ARGS` as a real process in this deployment's environment; its stdout.
        Fails the test (with both outputs) unless it exits 0."""
        return _succeeds(self.mcpsec, *args)

    def cli_json(self, *args: str) -> dict[str, Any]:
        document = json.loads(self.cli(*args, "--json"))
        assert isinstance(document, dict), document
        return document

    def create_key(self, role: str, *, name: str | None = None) -> dict[str, Any]:
        """A new API key (no owner: its rate identity is its key id)."""
        return self.cli_json("keys", "create", "--name", name or f"e2e-{role}", "--role", role)

    def mint(self, subject: str, role: str, *options: str) -> dict[str, Any]:
        """A new access token for `subject`, for this server's audience unless told."""
        return self.cli_json("token", "mint", "--subject", subject, "--role", role, *options)

    def audit_events(self, lines: int = 200) -> list[dict[str, Any]]:
        out = self.cli("audit", "tail", "--json", "-n", str(lines))
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def stop(self) -> None:
        terminate(self.process)


def unique(prefix: str) -> str:
    """A name no other test (or earlier run against the same store) uses."""
    return f"{prefix}-{uuid4().hex[:8]}"


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("redis", id="redis", marks=pytest.mark.redis_server),
    ],
)
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """The example server, started once per module on this backend, stopped at the end."""
    store: dict[str, str] = {}
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        store = {"MCPSEC_STORE_URL": redis.url, "MCPSEC_STORE_PREFIX": f"{unique('e2e')}:"}
    started = _deploy(tmp_path_factory.mktemp(f"e2e-{request.param}"), request.param, store)
    try:
        yield started
    finally:
        started.stop()


def _deploy(folder: Path, backend: str, store: dict[str, str]) -> Deployment:
    workspace = folder / "workspace"
    sandbox = workspace / "sandbox"
    sandbox.mkdir(parents=True)
    log = folder / "server.log"
    configured = False
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()
        resource = f"http://127.0.0.1:{port}/mcp"
        mcpsec = Cli(folder, **store, MCPSEC_SERVER_RESOURCE=resource, MCPSEC_JWT_AUDIENCE=resource)
        if not configured:
            _configure(mcpsec)
            configured = True
        process = _spawn(port, sandbox, mcpsec.environment(), folder, log)
        deployment = Deployment(backend, folder, mcpsec, port, workspace, sandbox, log, process)
        problem = _wait_until_listening(deployment)
        if problem is None:
            # The store under test, not another: Redis leaves the default SQLite file unmade.
            made = (folder / "data" / "mcpsec" / "mcpsec.db").exists()
            assert made == (backend == "sqlite"), f"{backend}: SQLite file made: {made}"
            return deployment
        terminate(process)
        if "address already in use" not in problem.lower() or attempt == START_ATTEMPTS:
            pytest.fail(f"the example MCP server ({backend}) did not start: {problem}")
    raise AssertionError("unreachable")


def _succeeds(mcpsec: Cli, *args: str) -> str:
    ran = mcpsec.process(*args, timeout=CLI_TIMEOUT)
    assert ran.exit_code == 0, (
        f"mcpsec {' '.join(args)} exited {ran.exit_code}\n"
        f"stdout: {ran.stdout}\nstderr: {ran.stderr}"
    )
    return ran.stdout


def _configure(mcpsec: Cli) -> None:
    """`mcpsec config init` (the JWT secret for `token mint`), then a tiny guest rate limit."""
    path = Path(json.loads(_succeeds(mcpsec, "config", "init", "--json"))["config_path"])
    config = tomllib.loads(path.read_text(encoding="utf-8"))
    # [rate.roles.*] replaces the built-in limits entirely: keep the other roles' limits.
    config["rate"]["roles"]["guest"] = {
        "capacity": GUEST_CAPACITY,
        "refill_per_second": GUEST_REFILL,
    }
    path.write_text(tomli_w.dumps(config), encoding="utf-8")


def _spawn(
    port: int, sandbox: Path, env: dict[str, str], folder: Path, log: Path
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(EXAMPLE), "--port", str(port), "--sandbox", str(sandbox)]
    with log.open("ab") as stderr:  # the child keeps its own handle; ours closes here
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env,
            cwd=folder,
        )  # fmt: skip


def _wait_until_listening(deployment: Deployment) -> str | None:
    """None once the port accepts connections (uvicorn binds after the app's start-up), else
    what went wrong, with the server's stderr."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        code = deployment.process.poll()
        if code is not None:
            return f"it exited with {code}; stderr:\n{deployment.server_log()}"
        try:
            with socket.create_connection(("127.0.0.1", deployment.port), timeout=0.2):
                return None
        except OSError:
            time.sleep(0.05)
    return (
        f"port {deployment.port} not listening after {START_TIMEOUT:.0f} s;"
        f" stderr:\n{deployment.server_log()}"
    )
