"""Fault 8: an MCP server guarded by mcpsec, its Redis store killed.

The example server (examples/mcp_server.py under uvicorn, as tests/e2e runs it) refuses every
credential with 401 while the store is down: an API key or a token it cannot check against
the store is never let in. When Redis comes back, the same server process lets them in again.

Rate limiting is asked only once a caller is authenticated, and with the whole store down
nobody is; so its policy is driven at the ASGI gate, with the principal the SDK's
authentication would have put in the request: `rate.fail_open` true lets the call through,
false answers 503, and either way the server's log says which it did (the audit event that
also says it goes to the store that is down).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest
from mcpsec.core.authz import CredentialKind
from mcpsec.core.config import load_settings
from mcpsec.server.gate import UNAVAILABLE, ToolGate
from mcpsec.server.guard import Guard, Principal
from mcpsec.store import open_store

from tests.e2e.conftest import Deployment, _deploy
from tests.support.cli import AUDIT_KEY, private_env
from tests.support.redis_servers import RedisServer

pytestmark = pytest.mark.redis_server

TIMEOUT = "1s"  # store.timeout of the server
RECOVERY_LIMIT = 15.0  # seconds the server may take to let callers in again
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "fault-tests", "version": "1"},
    },
}


@pytest.fixture(scope="module")
def deployment(
    durable_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    store = {
        "MCPSEC_STORE_URL": durable_redis.url,
        "MCPSEC_STORE_PREFIX": "server-down:",
        "MCPSEC_STORE_TIMEOUT": TIMEOUT,
    }
    started = _deploy(tmp_path_factory.mktemp("server-down"), "redis", store)
    try:
        yield started
    finally:
        started.stop()


def initialize(deployment: Deployment, credential: str) -> httpx2.Response:
    """The MCP `initialize` a client opens its session with, bearing the credential."""
    return httpx2.post(
        deployment.url,
        json=INITIALIZE,
        headers={
            "Authorization": f"Bearer {credential}",
            "Accept": "application/json, text/event-stream",
        },
        timeout=30,
    )


def test_the_server_refuses_every_credential_while_the_store_is_down_and_recovers(
    deployment: Deployment, running: RedisServer
) -> None:
    credentials = {
        "API key": deployment.create_key("user")["api_key"],
        "token": deployment.mint("alice", "user")["access_token"],
    }
    for credential in credentials.values():
        assert initialize(deployment, credential).status_code == 200
    running.kill()
    try:
        for kind, credential in credentials.items():
            refused = initialize(deployment, credential)
            print(f"\n{kind}, store down: {refused.status_code} {refused.text}")
            assert refused.status_code == 401, refused.text
            assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    finally:
        running.restart()
    started = time.monotonic()
    while initialize(deployment, credentials["API key"]).status_code != 200:
        assert time.monotonic() - started < RECOVERY_LIMIT, deployment.server_log()
        time.sleep(0.05)
    print(f"the same server let the key in again {time.monotonic() - started:.3f} s after")
    assert initialize(deployment, credentials["token"]).status_code == 200
    said = " ".join(deployment.server_log().split())  # why it refused, in its log (wrapped)
    assert "could not record" in said and "unreachable" in said, said


# -- the rate limit, at the gate ------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    reached_the_tool: bool


async def call_tool_through_gate(guard: Guard, principal: Principal) -> Reply:
    """A `tools/call` POSTed through the ToolGate, with the principal the SDK verified, in
    front of a stand-in for the SDK's app that answers 200."""
    reached = False

    async def sdk(scope: Any, receive: Any, send: Any) -> None:
        nonlocal reached
        reached = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    document = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "tool"}}
    user = SimpleNamespace(access_token=SimpleNamespace(principal=principal))
    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": [], "user": user}

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": json.dumps(document).encode()}

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    gate = ToolGate(sdk, guard=guard, metadata_url="http://127.0.0.1/.well-known/x")
    await gate(scope, receive, send)
    start, *bodies = sent
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in bodies)
    return Reply(start["status"], headers, json.loads(body), reached)


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail-open", "fail-closed"])
def test_the_rate_limit_follows_its_policy_with_the_store_down_and_says_which(
    running: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, fail_open: bool
) -> None:
    settings = load_settings(
        private_env(tmp_path)
        | {"MCPSEC_AUDIT_KEY": AUDIT_KEY, "MCPSEC_RATE_FAIL_OPEN": str(fail_open).lower()}
    )
    store = open_store(running.url, prefix="server-rate:", timeout=0.5)
    guard = Guard.from_settings(settings, store)
    principal = Principal("alice", CredentialKind.TOKEN, frozenset(), ("user",), jti="j")

    async def decide() -> Reply:
        try:
            return await call_tool_through_gate(guard, principal)
        finally:
            await guard.aclose()

    running.kill()
    try:
        with caplog.at_level(logging.WARNING, logger="mcpsec.server"):
            reply = asyncio.run(decide())
    finally:
        running.restart()
        store.close()
    said = [r.getMessage() for r in caplog.records if r.name == "mcpsec.server"]
    print(f"\nrate.fail_open={fail_open}: {reply.status} {reply.body}; log: {said}")
    verdict = "allowed" if fail_open else "denied"
    assert said == [f"the rate-limit store did not answer: alice's call to tool {verdict} by "
                    "rate.fail_open"]  # fmt: skip
    if fail_open:
        assert (reply.status, reply.reached_the_tool) == (200, True)
    else:
        assert (reply.status, reply.reached_the_tool) == (503, False)
        assert reply.body["error"]["code"] == UNAVAILABLE
        assert "rate-limit store is unavailable" in reply.body["error"]["message"]
        assert reply.headers["retry-after"] == "1"
    # No bucket was read: a quota or a remaining count in the reply would be made up.
    assert not {"ratelimit", "ratelimit-policy"} & {name.lower() for name in reply.headers}
