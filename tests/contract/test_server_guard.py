"""mcpsec.server's Guard on every backend: who a bearer credential speaks for, whether a tool
call may go ahead (permission, then rate budget), and the audited decision."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, MutableMapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from mcpsec.core.audit import AuditEvent, Outcome, request_context
from mcpsec.core.authz import CredentialKind
from mcpsec.core.config import Settings, load_settings
from mcpsec.server.guard import Guard, Principal, rate_headers
from mcpsec.store import Store, open_store

RESOURCE = "https://mcp.example.com/mcp"
T = TypeVar("T")
CONFIG = """
[server.tools]
write_file = "files:write"
get_weather = "weather:read"

[server.tool_costs]
expensive = 2

[rate.roles.guest]
capacity = 3
refill_per_second = 0.01

[rate.roles.user]
capacity = 100
refill_per_second = 1
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    environ = {
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "MCPSEC_JWT_SECRET": "s" * 48,
        "MCPSEC_AUDIT_KEY": "a" * 48,
        "MCPSEC_SERVER_RESOURCE": RESOURCE,
        "MCPSEC_JWT_AUDIENCE": RESOURCE,
    }
    return load_settings(environ, config_path=config)


@pytest.fixture
def guard(settings: Settings, store: Store) -> Guard:
    return Guard.from_settings(settings, store)


def run(guard: Guard, work: Awaitable[T]) -> T:
    """One event loop per call: close the store's asyncio connections of that loop after."""

    async def body() -> T:
        try:
            return await work
        finally:
            await guard.aclose()

    return asyncio.run(body())


def tool_events(guard: Guard) -> list[AuditEvent]:
    return [e for e in guard.audit.events() if e.type == "tool.called"]


def test_an_api_key_speaks_for_its_owner_with_its_effective_permissions(guard: Guard) -> None:
    created = guard.api_keys.keys.create("bot", owner="alice", roles=["user"])
    principal = run(guard, guard.authenticate(created.api_key))
    assert principal is not None
    assert (principal.name, principal.kind, principal.key_id) == (
        "alice",
        CredentialKind.KEY,
        created.key_id,
    )
    assert {"weather:read", "files:read"} <= principal.permissions
    assert "files:write" not in principal.permissions
    guard.api_keys.keys.revoke(created.key_id)
    assert run(guard, guard.authenticate(created.api_key)) is None
    assert run(guard, guard.authenticate("mcp_not_a_key")) is None


def test_a_token_speaks_for_its_subject_only_with_this_servers_audience(guard: Guard) -> None:
    tokens = guard.tokens.tokens
    minted = tokens.mint("bob", roles=["premium"], refresh=False)
    principal = run(guard, guard.authenticate(minted.access_token))
    assert principal is not None
    assert (principal.name, principal.kind, principal.jti) == (
        "bob",
        CredentialKind.TOKEN,
        minted.jti,
    )
    assert "files:write" in principal.permissions and principal.expires_at is not None
    elsewhere = tokens.mint("bob", roles=["premium"], audience="https://other.example/mcp")
    assert run(guard, guard.authenticate(elsewhere.access_token)) is None
    tokens.revoke_subject("bob")
    assert run(guard, guard.authenticate(minted.access_token)) is None


def test_a_missing_permission_is_refused_without_spending_rate_budget(guard: Guard) -> None:
    guest = Principal("carol", CredentialKind.KEY, frozenset({"weather:read"}), ("guest",))
    for _ in range(5):
        refused = run(guard, guard.admit(guest, "write_file"))
        assert (refused.allowed, refused.reason, refused.permission) == (
            False,
            "insufficient_scope",
            "files:write",
        )
        assert refused.rate is None
    # The guest's whole budget of 3 is still there.
    admitted = [run(guard, guard.admit(guest, "get_weather")).allowed for _ in range(4)]
    assert admitted == [True, True, True, False]


def test_a_tool_costs_what_the_config_says_and_the_limit_answers_with_headers(
    guard: Guard,
) -> None:
    guest = Principal("dave", CredentialKind.KEY, frozenset(), ("guest",))
    first = run(guard, guard.admit(guest, "expensive"))  # costs 2 of 3
    assert first.allowed and first.rate is not None and first.rate.remaining == 1
    second = run(guard, guard.admit(guest, "expensive"))
    assert (second.allowed, second.reason) == (False, "rate_limited")
    assert second.rate is not None
    headers = rate_headers(second.rate)
    # One token short at 0.01 tokens/s: a retry could pass in 100 s, not sooner.
    assert headers["Retry-After"] == "100"
    assert headers["RateLimit-Policy"] == '"role:guest";q=3;w=300'
    assert headers["RateLimit"].startswith('"role:guest";r=1;t=')
    assert "Retry-After" not in rate_headers(first.rate)


def test_a_tool_without_a_rule_needs_the_default_permission_when_one_is_set(
    guard: Guard,
) -> None:
    reader = Principal("kim", CredentialKind.KEY, frozenset({"weather:read"}), ("user",))
    assert run(guard, guard.admit(reader, "unlisted")).allowed  # open: no default set
    guard.default_permission = "tools:call"
    refused = run(guard, guard.admit(reader, "unlisted"))
    assert (refused.allowed, refused.permission) == (False, "tools:call")
    assert run(guard, guard.admit(reader, "get_weather")).allowed  # its own rule still wins


def test_the_most_generous_role_sets_the_limit(guard: Guard) -> None:
    both = Principal("erin", CredentialKind.TOKEN, frozenset(), ("guest", "user"))
    decision = run(guard, guard.admit(both, "anything"))
    assert decision.rate is not None and (decision.rate.limit, decision.rate.policy) == (
        100,
        "role:user",
    )


def test_every_decision_is_one_audited_event_with_the_request(guard: Guard) -> None:
    guest = Principal(
        "frank", CredentialKind.KEY, frozenset({"weather:read"}), ("guest",), key_id="k1"
    )

    async def calls() -> None:
        with request_context(client="10.0.0.7", tool="get_weather", request_id="7"):
            await guard.admit(guest, "get_weather")
        with request_context(client="10.0.0.7", request_id="8"):
            await guard.admit(guest, "write_file")

    run(guard, calls())
    events = tool_events(guard)
    assert [(e.outcome, e.tool, e.reason, e.request_id, e.client) for e in events] == [
        ("allowed", "get_weather", None, "7", "10.0.0.7"),
        ("denied", "write_file", "insufficient_scope", "8", "10.0.0.7"),
    ]
    assert all((e.subject, e.actor, e.key_id) == ("frank", "frank", "k1") for e in events)
    assert guard.audit.verify().intact


@pytest.mark.parametrize(
    ("name", "identity"),
    [
        ("alice", "alice"),
        ("svc:reports@example.com", "svc:reports@example.com"),
        ("Alice Smith", None),
        ("{braces}", None),
    ],
)
def test_the_rate_identity_is_the_name_or_a_hash_of_it(name: str, identity: str | None) -> None:
    principal = Principal(name, CredentialKind.TOKEN, frozenset())
    if identity is not None:
        assert principal.rate_identity == identity
    else:
        assert principal.rate_identity.startswith("sub-") and len(principal.rate_identity) == 20


def test_the_requires_decorator_registers_the_tool(guard: Guard) -> None:
    @guard.requires("admin:users")
    def list_users() -> list[str]:
        return []

    @guard.requires("files:read", tool="cat")
    def read() -> str:
        return ""

    assert (guard.tools["list_users"], guard.tools["cat"]) == ("admin:users", "files:read")
    assert list_users() == [] and read() == ""


def test_a_store_that_cannot_answer_lets_nobody_in(settings: Settings, tmp_path: Path) -> None:
    """Fails closed: a valid-looking key or a validly signed token is refused when the
    revocation state cannot be read."""
    good = Guard.from_settings(settings, open_store(f"sqlite:///{tmp_path}/ok.db"))
    created = good.api_keys.keys.create("bot", roles=["admin"])
    minted = good.tokens.tokens.mint("gina", roles=["admin"], refresh=False)
    down = Guard.from_settings(settings, open_store("redis://127.0.0.1:9/0", timeout=0.2))
    assert run(down, down.authenticate(created.api_key)) is None
    assert run(down, down.authenticate(minted.access_token)) is None
    assert down.audit.failures  # and the failure to record it is kept, for the operator


def test_the_apps_shutdown_appends_every_queued_event(guard: Guard, store: Store) -> None:
    """uvicorn ends on SIGTERM by re-raising the signal, so atexit never runs: the app's
    lifespan must leave nothing queued when the server stops."""
    from mcp.server.mcpserver import MCPServer
    from mcpsec.server import auth_options, guarded_app

    app = guarded_app(MCPServer("t", log_level="WARNING", **auth_options(guard)), guard)
    appended = threading.Event()
    real = store.log_append_after

    def slow(*args: Any, **options: Any) -> Any:  # the background thread is still busy ...
        time.sleep(0.2)
        appended.set()
        return real(*args, **options)

    async def serve_and_stop() -> None:
        async with app.router.lifespan_context(app):
            guard.audit.store.log_append_after = slow  # type: ignore[method-assign]
            for n in range(20):
                guard.audit.verdict("key.verified", Outcome.ALLOWED, details={"n": n})
        # ... when the server stops: everything went in before the lifespan ended.
        assert appended.is_set() and not guard.audit._appending

    asyncio.run(serve_and_stop())
    stored = store.log_tail(guard.audit.stream, 100)
    assert [e.fields.get("details") for e in stored] == [{"n": n} for n in range(20)]


# -- the HTTP gate --------------------------------------------------------------------------


class Reply:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""


async def through_gate(
    guard: Guard, document: dict[str, Any], principal: Principal | None, path: str = "/mcp"
) -> tuple[Reply, bool]:
    """POST `document` through a ToolGate in front of a stand-in for the SDK's app:
    (what the client got, whether the request reached the app)."""
    from mcpsec.server.gate import ToolGate

    reached = False

    async def sdk(scope: Any, receive: Any, send: Any) -> None:
        nonlocal reached
        reached = True
        message = await receive()
        assert json.loads(message["body"]) == document  # the very same body, replayed
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    gate = ToolGate(sdk, guard=guard, metadata_url="https://mcp.example.com/.well-known/x")
    token = SimpleNamespace(principal=principal) if principal else None
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "/api" if path.startswith("/api") else "",
        "headers": [],
        "user": SimpleNamespace(access_token=token) if token else None,
    }
    body = json.dumps(document).encode()
    chunks = [body[:10], body[10:]]  # sent in two parts: the gate must read them all

    async def receive() -> MutableMapping[str, Any]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    reply = Reply()

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            reply.status = message["status"]
            reply.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            reply.body += message.get("body", b"")

    await gate(scope, receive, send)
    return reply, reached


def tool_call(name: str, request_id: int = 7) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name}}


def test_the_gate_checks_tool_calls_under_any_path(guard: Guard) -> None:
    reader = Principal("hal", CredentialKind.KEY, frozenset({"weather:read"}), ("user",))
    for path in ("/mcp", "/api/mcp", "/somewhere/else"):
        reply, reached = run(guard, through_gate(guard, tool_call("write_file"), reader, path))
        assert (reply.status, reached) == (403, False), path
        assert reply.headers["www-authenticate"] == (
            'Bearer error="insufficient_scope", scope="files:write", '
            'resource_metadata="https://mcp.example.com/.well-known/x"'
        )
        assert json.loads(reply.body)["id"] == 7
    reply, reached = run(guard, through_gate(guard, tool_call("get_weather"), reader))
    assert (reply.status, reached) == (200, True)
    assert reply.headers["ratelimit-policy"] == '"role:user";q=100;w=100'


def test_a_tool_call_without_a_verified_principal_never_reaches_a_tool(guard: Guard) -> None:
    reply, reached = run(guard, through_gate(guard, tool_call("get_weather"), None))
    assert (reply.status, reached) == (401, False)
    assert reply.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    assert run(guard, through_gate(guard, listing, None))[1]  # the SDK answers that one


def test_a_tool_call_notification_is_left_to_the_sdk_which_runs_no_tool(guard: Guard) -> None:
    guest = Principal("lou", CredentialKind.KEY, frozenset(), ("guest",))
    notification = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "write_file"}}
    _, reached = run(guard, through_gate(guard, notification, guest))
    assert reached and tool_events(guard) == []  # neither charged nor logged as a call


def test_a_tool_name_that_no_tool_can_have_is_refused_before_it_is_logged(guard: Guard) -> None:
    reader = Principal("ivy", CredentialKind.KEY, frozenset({"*"}), ("user",))
    reply, reached = run(guard, through_gate(guard, tool_call("x" * 5000), reader))
    assert (reply.status, reached) == (400, False)
    assert tool_events(guard) == []


def test_a_tool_dearer_than_any_bucket_is_refused_not_an_error(settings: Settings) -> None:
    store = open_store("sqlite:///:memory:")
    dear = Guard.from_settings(settings, store)
    dear.costs["get_weather"] = 10  # the guest bucket holds 3
    guest = Principal("jo", CredentialKind.KEY, frozenset({"weather:read"}), ("guest",))
    reply, reached = run(dear, through_gate(dear, tool_call("get_weather"), guest))
    assert (reply.status, reached) == (429, False)


def test_an_app_that_does_not_verify_with_mcpsec_is_refused(guard: Guard) -> None:
    from mcp.server.mcpserver import MCPServer
    from mcpsec.core.errors import ConfigError
    from mcpsec.server import guarded_app

    with pytest.raises(ConfigError, match="auth_options"):
        guarded_app(MCPServer("open", log_level="WARNING"), guard)


def test_a_client_that_goes_away_mid_body_is_not_answered_nor_passed_on(guard: Guard) -> None:
    from mcpsec.server.gate import ToolGate

    reached, sent = False, []

    async def sdk(scope: Any, receive: Any, send: Any) -> None:
        nonlocal reached
        reached = True

    async def scenario() -> None:
        gate = ToolGate(sdk, guard=guard, metadata_url="https://m")
        messages: list[MutableMapping[str, Any]] = [
            {"type": "http.request", "body": b'{"jsonrpc": "2.0", "me', "more_body": True},
            {"type": "http.disconnect"},
        ]

        async def receive() -> MutableMapping[str, Any]:
            return messages.pop(0)

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": []}
        await gate(scope, receive, send)

    asyncio.run(scenario())
    assert (reached, sent) == (False, [])
