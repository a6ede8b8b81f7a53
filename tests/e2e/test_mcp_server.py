"""The example MCP server guarded by mcpsec, end to end: credentials made by the `mcpsec` CLI,
a real server process (examples/mcp_server.py), the official SDK's client, on SQLite and on
a real Redis.

The SDK's client reports refusals as `MCPError` only; the HTTP status and the challenge
headers are read from what its HTTP client received (`Client.exchanges`).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent
from mcpsec.server.gate import FORBIDDEN, RATE_LIMITED

from tests.e2e.conftest import GUEST_CAPACITY, GUEST_REFILL, Deployment, unique

T = TypeVar("T")
SCENARIO_TIMEOUT = 30.0
TOOLS = {"get_weather", "read_file", "write_file", "list_users"}
LOCALHOST = "127.0.0.1"
OTHER_AUDIENCE = "https://other.example/mcp"


@dataclass(frozen=True)
class Exchange:
    """One HTTP response the client received, with the JSON-RPC request it answered."""

    http_method: str
    rpc_method: str | None
    rpc_id: Any
    status: int
    headers: httpx2.Headers


class Client:
    """The SDK's client with one bearer credential; every response it gets is recorded."""

    def __init__(self, deployment: Deployment, credential: str) -> None:
        self.url = deployment.url
        self.credential = credential
        self.exchanges: list[Exchange] = []

    async def _record(self, response: httpx2.Response) -> None:
        request = response.request
        message: Any = None
        if request.method == "POST":
            try:
                message = json.loads(request.content)
            except ValueError:
                message = None
        rpc = message if isinstance(message, dict) else {}
        self.exchanges.append(
            Exchange(
                request.method, rpc.get("method"), rpc.get("id"), response.status_code,
                response.headers,
            )
        )  # fmt: skip

    @asynccontextmanager
    async def session(self) -> AsyncIterator[ClientSession]:
        """An initialized MCP session (the legacy `initialize` handshake)."""
        async with (
            httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {self.credential}"},
                timeout=httpx2.Timeout(10, read=30),
                event_hooks={"response": [self._record]},
            ) as http,
            streamable_http_client(self.url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session

    async def refused_at_connect(self) -> Exchange:
        """Open a session that the server must refuse; the answer to the `initialize`.
        The SDK raises its MCPError out of the connect, wrapped in exception groups."""
        refused = False
        try:
            async with self.session():
                pass
        except* MCPError:
            refused = True
        assert refused, f"a session was opened: {self.exchanges}"
        return self.last("initialize")

    def last(self, rpc_method: str = "tools/call") -> Exchange:
        found = [e for e in self.exchanges if e.rpc_method == rpc_method]
        assert found, f"no {rpc_method} among {self.exchanges}"
        return found[-1]


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT))


def text(result: CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


async def weather(session: ClientSession) -> str:
    """get_weather, which must succeed."""
    result = await session.call_tool("get_weather", {"city": "London"})
    assert not result.is_error, text(result)
    return text(result)


async def refused(session: ClientSession, tool: str, arguments: dict[str, Any]) -> MCPError:
    """The error a call the server refuses before the tool runs raises."""
    with pytest.raises(MCPError) as raised:
        await session.call_tool(tool, arguments)
    return raised.value


def challenge(exchange: Exchange) -> dict[str, str]:
    """The Bearer challenge's parameters (RFC 6750), from WWW-Authenticate."""
    header = exchange.headers.get("www-authenticate", "")
    assert header.startswith("Bearer "), f"{exchange.status}: WWW-Authenticate {header!r}"
    return dict(re.findall(r'([a-z_]+)="([^"]*)"', header))


def assert_unauthorized(exchange: Exchange, deployment: Deployment) -> None:
    """401 with the SDK's invalid_token challenge pointing at the resource metadata."""
    assert exchange.status == 401, exchange
    params = challenge(exchange)
    assert params["error"] == "invalid_token", params
    assert params["resource_metadata"] == deployment.metadata_url, params


def policy(header: str) -> dict[str, str]:
    """`"name";q=3;w=60` -> {"q": "3", "w": "60"} (RateLimit / RateLimit-Policy fields)."""
    _, *items = header.split(";")
    return dict(item.strip().partition("=")[::2] for item in items)


# -- the resource --------------------------------------------------------------------------


def test_protected_resource_metadata_names_the_server(deployment: Deployment) -> None:
    with httpx2.Client(timeout=10) as http:
        response = http.get(deployment.metadata_url)
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["resource"] == deployment.url
    assert document["authorization_servers"], document
    assert "header" in document.get("bearer_methods_supported", ["header"])


# -- 1. an API key ---------------------------------------------------------------------------


def test_a_user_key_lists_the_tools_and_gets_the_weather(deployment: Deployment) -> None:
    client = Client(deployment, deployment.create_key("user")["api_key"])

    async def scenario() -> tuple[set[str], str]:
        async with client.session() as session:
            tools = {tool.name for tool in (await session.list_tools()).tools}
            return tools, await weather(session)

    tools, forecast = run(scenario)
    assert tools == TOOLS
    assert forecast == "rain, 12°C"
    allowed = client.last()
    assert allowed.status == 200
    assert policy(allowed.headers["ratelimit-policy"])["q"] == "200"  # the user role's limit


# -- 2. permissions and the sandbox ------------------------------------------------------------


def test_write_file_is_forbidden_to_a_user_key_with_an_insufficient_scope_challenge(
    deployment: Deployment,
) -> None:
    client = Client(deployment, deployment.create_key("user")["api_key"])
    name = f"{unique('denied')}.txt"

    async def scenario() -> MCPError:
        async with client.session() as session:
            return await refused(session, "write_file", {"path": name, "text": "no"})

    error = run(scenario)
    assert error.code == FORBIDDEN
    assert error.data == {"required_scope": "files:write"}
    forbidden = client.last()
    assert forbidden.status == 403
    assert challenge(forbidden) == {
        "error": "insufficient_scope",
        "scope": "files:write",
        "resource_metadata": deployment.metadata_url,
    }
    assert not (deployment.sandbox / name).exists()


def test_a_premium_token_writes_inside_the_sandbox_and_never_outside(
    deployment: Deployment,
) -> None:
    token = deployment.mint(unique("writer"), "premium")["access_token"]
    client = Client(deployment, token)
    name = f"{unique('notes')}/hello.txt"
    absolute = deployment.workspace / "absolute.txt"
    escapes = ["../escape.txt", str(absolute)]

    async def scenario() -> tuple[CallToolResult, list[CallToolResult]]:
        async with client.session() as session:
            written = await session.call_tool("write_file", {"path": name, "text": "hello"})
            refusals = [
                await session.call_tool("write_file", {"path": path, "text": "escaped"})
                for path in escapes
            ]
            return written, refusals

    written, refusals = run(scenario)
    assert not written.is_error, text(written)
    assert (deployment.sandbox / name).read_text(encoding="utf-8") == "hello"
    for path, result in zip(escapes, refusals, strict=True):
        assert result.is_error, f"{path}: {text(result)}"
        assert "outside the sandbox" in text(result), text(result)
    assert [e.status for e in client.exchanges if e.rpc_method == "tools/call"] == [200] * 3
    assert not (deployment.workspace / "escape.txt").exists()
    assert not absolute.exists()
    assert list(deployment.workspace.iterdir()) == [deployment.sandbox]


# -- 3. credentials that no longer work --------------------------------------------------------


def test_a_revoked_key_is_refused_on_the_very_next_call(deployment: Deployment) -> None:
    key = deployment.create_key("user")
    client = Client(deployment, key["api_key"])

    async def scenario() -> None:
        async with client.session() as session:
            await weather(session)
            deployment.cli("keys", "revoke", key["key_id"], "--reason", "e2e")
            error = await refused(session, "get_weather", {"city": "Paris"})
            assert error.code not in {FORBIDDEN, RATE_LIMITED}, error

    run(scenario)
    assert [e.status for e in client.exchanges if e.rpc_method == "tools/call"] == [200, 401]
    assert_unauthorized(client.last(), deployment)
    assert_unauthorized(run(Client(deployment, key["api_key"]).refused_at_connect), deployment)


def test_revoking_a_subject_refuses_its_tokens_and_no_one_elses(deployment: Deployment) -> None:
    subject, bystander = unique("alice"), unique("bob")
    first, second = (deployment.mint(subject, "user")["access_token"] for _ in range(2))
    other = deployment.mint(bystander, "user")["access_token"]
    client = Client(deployment, first)

    async def scenario() -> str:
        async with client.session() as session:
            await weather(session)
            deployment.cli("token", "revoke", "--subject", subject)
            await refused(session, "get_weather", {"city": "Paris"})
        async with Client(deployment, other).session() as session:
            return await weather(session)

    assert run(scenario) == "rain, 12°C"
    assert [e.status for e in client.exchanges if e.rpc_method == "tools/call"] == [200, 401]
    assert_unauthorized(client.last(), deployment)
    assert_unauthorized(run(Client(deployment, second).refused_at_connect), deployment)


def test_a_token_for_another_audience_is_refused(deployment: Deployment) -> None:
    minted = deployment.mint(unique("carol"), "admin", "--audience", OTHER_AUDIENCE)
    assert_unauthorized(
        run(Client(deployment, minted["access_token"]).refused_at_connect), deployment
    )


# -- 4. rate limits ------------------------------------------------------------------------------


def test_a_guest_over_its_limit_gets_429_until_its_bucket_is_reset(
    deployment: Deployment,
) -> None:
    key = deployment.create_key("guest")
    client = Client(deployment, key["api_key"])

    async def scenario() -> MCPError:
        async with client.session() as session:
            for _ in range(GUEST_CAPACITY):
                await weather(session)
            error = await refused(session, "get_weather", {"city": "Paris"})
            deployment.cli("rate", "reset", key["key_id"])  # no owner: the key id is its identity
            await weather(session)
            return error

    error = run(scenario)
    calls = [e for e in client.exchanges if e.rpc_method == "tools/call"]
    assert [e.status for e in calls] == [200] * GUEST_CAPACITY + [429, 200]
    limited = calls[GUEST_CAPACITY]
    retry_after = limited.headers["retry-after"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= math.ceil(1 / GUEST_REFILL), retry_after
    assert error.code == RATE_LIMITED
    assert error.data == {"retry_after": int(retry_after)}
    limit = policy(limited.headers["ratelimit-policy"])
    assert limit["q"] == str(GUEST_CAPACITY)
    assert limit["w"] == str(math.ceil(GUEST_CAPACITY / GUEST_REFILL))
    assert policy(limited.headers["ratelimit"])["r"] == "0"
    assert int(policy(calls[-1].headers["ratelimit"])["r"]) == GUEST_CAPACITY - 1


# -- 5. the audit log ----------------------------------------------------------------------------


def test_the_audit_log_records_every_decision_and_verifies(deployment: Deployment) -> None:
    user = deployment.create_key("user")
    guest = deployment.create_key("guest")
    subject = unique("dave")
    token = deployment.mint(subject, "premium")
    users, guests = Client(deployment, user["api_key"]), Client(deployment, guest["api_key"])

    async def scenario() -> None:
        async with users.session() as session:
            await weather(session)
            await refused(session, "write_file", {"path": "audit.txt", "text": "no"})
        async with guests.session() as session:
            for _ in range(GUEST_CAPACITY):
                await weather(session)
            await refused(session, "get_weather", {"city": "Paris"})
        deployment.cli("keys", "revoke", user["key_id"])
        await Client(deployment, user["api_key"]).refused_at_connect()
        deployment.cli("token", "revoke", "--subject", subject)
        await Client(deployment, token["access_token"]).refused_at_connect()

    run(scenario)
    allowed_id, forbidden_id = (e.rpc_id for e in users.exchanges if e.rpc_method == "tools/call")
    limited_id = guests.last().rpc_id
    events = deployment.audit_events(200)

    def one(**fields: Any) -> dict[str, Any]:
        found = [e for e in events if all(e.get(k) == v for k, v in fields.items())]
        assert len(found) == 1, f"{len(found)} events with {fields} among:\n" + "\n".join(
            json.dumps(e) for e in events
        )
        return found[0]

    calls = {
        "allowed": one(
            type="tool.called", outcome="allowed", key_id=user["key_id"], tool="get_weather"
        ),
        "insufficient_scope": one(
            type="tool.called", outcome="denied", key_id=user["key_id"], tool="write_file"
        ),
        "rate_limited": one(
            type="tool.called", outcome="denied", key_id=guest["key_id"], tool="get_weather"
        ),
    }
    assert calls["allowed"]["reason"] is None
    assert calls["insufficient_scope"]["reason"] == "insufficient_scope"
    assert calls["rate_limited"]["reason"] == "rate_limited"
    expected_ids = {"allowed": allowed_id, "insufficient_scope": forbidden_id}
    expected_ids["rate_limited"] = limited_id
    for name, event in calls.items():
        assert event["client"] == LOCALHOST, (name, event)
        assert event["request_id"] == str(expected_ids[name]), (name, event)
    # The rate limiter's own event names the same call: client, tool, request and key.
    limited = one(type="rate.limited", key_id=guest["key_id"])
    assert (limited["client"], limited["tool"], limited["request_id"]) == (
        LOCALHOST,
        "get_weather",
        str(limited_id),
    )
    revoked_key = one(type="key.verified", outcome="denied", key_id=user["key_id"])
    assert revoked_key["reason"] == "revoked"
    assert revoked_key["client"] == LOCALHOST
    revoked_token = one(type="token.verified", outcome="denied", jti=token["jti"])
    assert revoked_token["subject"] == subject
    assert revoked_token["reason"] == "revoked"
    assert revoked_token["client"] == LOCALHOST

    verified = deployment.cli("audit", "verify")
    counted = re.search(r"(\d+)/(\d+) events valid", verified)
    assert counted is not None, verified
    assert counted[1] == counted[2], verified
