"""The HTTP side of the guard: an ASGI middleware that answers a `tools/call` the caller may
not make with the status the MCP authorization spec names, before the SDK runs the tool.

It sits inside the SDK's authentication middleware, so the bearer credential is already
verified (`scope["user"]`); it reads the JSON-RPC body, asks the Guard, and either answers
403 `insufficient_scope` / 429 with Retry-After itself, or passes the same body on, with
the RateLimit header fields added to the SDK's response. Every request served carries its
client address and JSON-RPC id into the audit events recorded meanwhile.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcpsec.core.audit import request_context
from mcpsec.server.guard import Admission, Guard, Principal, rate_headers

MAX_BODY: Final = 4 * 1024 * 1024  # the SDK's own default limit
FORBIDDEN: Final = -32003  # JSON-RPC error codes the SDK's client passes through as they are
RATE_LIMITED: Final = -32029
UNAUTHENTICATED: Final = -32001
UNAVAILABLE: Final = -32002
INVALID_PARAMS: Final = -32602
_GONE: Final = b"\x00gone"  # what _read_body returns when the client disconnected
_TOOL_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,128}")  # the MCP spec's tool names


class ToolGate:
    """Pure ASGI middleware inside an SDK app: every POST it serves is looked at, whatever
    its path (a root path or a mount prefix must not let a tool call past the gate)."""

    def __init__(self, app: ASGIApp, *, guard: Guard, metadata_url: str) -> None:
        self.app = app
        self.guard = guard
        self.metadata_url = metadata_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is _GONE:  # the client went away mid-request: nothing to answer
            return
        if body is None:
            await _send_json(send, 413, {"error": "request body too large"})
            return
        principal = _principal(scope)
        if principal is None:
            await self._unauthenticated(scope, receive, send, body)
            return
        await self._serve(scope, receive, send, principal, body)

    async def _unauthenticated(
        self, scope: Scope, receive: Receive, send: Send, body: bytes
    ) -> None:
        """No verified principal: the SDK answers 401 on its MCP route; a tool call that
        would reach a tool anyway (an app built without mcpsec's verifier) is refused here:
        the gate fails closed."""
        call = _tool_call(body)
        if call is None:
            await self.app(scope, _replay(body, receive), send)
            return
        challenge = f'Bearer error="invalid_token", resource_metadata="{self.metadata_url}"'
        error = _rpc_error(call[1], UNAUTHENTICATED, "authentication required", {})
        await _send_json(send, 401, error, {"WWW-Authenticate": challenge})

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, principal: Principal, body: bytes
    ) -> None:
        call = _tool_call(body)
        if call is None:
            await self.app(scope, _replay(body, receive), send)
            return
        tool, request_id = call
        if not _TOOL_NAME.fullmatch(tool):
            message = "a tool name is 1-128 letters, digits, _, - or ."
            await _send_json(send, 400, _rpc_error(request_id, INVALID_PARAMS, message, {}))
            return
        with request_context(
            actor=principal.name,
            key_id=principal.key_id,
            jti=principal.jti,
            tool=tool,
            request_id=_text(request_id),
        ):
            admission = await self.guard.admit(principal, tool)
        headers = rate_headers(admission.rate) if admission.rate is not None else {}
        if admission.allowed:
            await self.app(scope, _replay(body, receive), _adding(send, headers))
            return
        await self._refuse(send, tool, request_id, admission, headers)

    async def _refuse(
        self,
        send: Send,
        tool: str,
        request_id: Any,
        admission: Admission,
        headers: dict[str, str],
    ) -> None:
        if admission.reason == "insufficient_scope":
            needed = admission.permission or ""
            challenge = (
                f'Bearer error="insufficient_scope", scope="{needed}", '
                f'resource_metadata="{self.metadata_url}"'
            )
            message = f"tool {tool} needs the permission {needed}"
            error = _rpc_error(request_id, FORBIDDEN, message, {"required_scope": needed})
            await _send_json(send, 403, error, {"WWW-Authenticate": challenge})
            return
        if admission.reason == "store_unavailable":
            message = "the rate-limit store is unavailable; try again"
            error = _rpc_error(request_id, UNAVAILABLE, message, {})
            await _send_json(send, 503, error, {"Retry-After": "1"})
            return
        retry = headers.get("Retry-After", "")
        message = f"rate limited: retry after {retry} s" if retry else "rate limited"
        seconds = int(retry) if retry else None
        error = _rpc_error(request_id, RATE_LIMITED, message, {"retry_after": seconds})
        await _send_json(send, 429, error, headers)


class ClientAddress:
    """Outermost ASGI middleware: every audit event recorded while serving a request, the
    credential's verdict included, names the client's address."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client") if scope["type"] == "http" else None
        if not client:
            await self.app(scope, receive, send)
            return
        with request_context(client=str(client[0])):
            await self.app(scope, receive, send)


def _principal(scope: Scope) -> Principal | None:
    user = scope.get("user")
    token = getattr(user, "access_token", None)
    principal = getattr(token, "principal", None)
    return principal if isinstance(principal, Principal) else None


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return _GONE
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _tool_call(body: bytes) -> tuple[str, Any] | None:
    """(tool, JSON-RPC id) of a `tools/call` request; None for anything else, a notification
    (no id: the SDK runs no tool for it) included: the SDK judges those."""
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if (
        not isinstance(message, dict)
        or message.get("method") != "tools/call"
        or "id" not in message
    ):
        return None
    params = message.get("params")
    name = params.get("name") if isinstance(params, dict) else None
    return (name, message.get("id")) if isinstance(name, str) else None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then whatever comes: the client's disconnect

    return replay


def _adding(send: Send, headers: dict[str, str]) -> Send:
    if not headers:
        return send
    extra = _encoded(headers.items())

    async def with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return with_headers


def _rpc_error(request_id: Any, code: int, message: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {"code": code, "message": message, "data": data},
    }


async def _send_json(
    send: Send, status: int, document: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    body = json.dumps(document).encode()
    fields = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *_encoded((headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": fields})
    await send({"type": "http.response.body", "body": body})


def _encoded(items: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in items]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:200]
