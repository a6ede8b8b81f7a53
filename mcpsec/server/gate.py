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
from collections.abc import Iterable
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcpsec.core.audit import request_context
from mcpsec.server.guard import Admission, Guard, Principal, rate_headers

MAX_BODY: Final = 4 * 1024 * 1024  # the SDK's own default limit
FORBIDDEN: Final = -32003  # JSON-RPC error codes the SDK's client passes through as they are
RATE_LIMITED: Final = -32029


class ToolGate:
    """Pure ASGI middleware for the MCP endpoint (`path`) of an SDK app."""

    def __init__(self, app: ASGIApp, *, guard: Guard, path: str, metadata_url: str) -> None:
        self.app = app
        self.guard = guard
        self.path = path.rstrip("/") or "/"
        self.metadata_url = metadata_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"].rstrip("/") != self.path
        ):
            await self.app(scope, receive, send)
            return
        principal = _principal(scope)
        if principal is None:  # the SDK answers 401, with its challenge
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            await _send_json(send, 413, {"error": "request body too large"})
            return
        await self._serve(scope, receive, send, principal, body)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, principal: Principal, body: bytes
    ) -> None:
        call = _tool_call(body)
        if call is None:
            await self.app(scope, _replay(body, receive), send)
            return
        tool, request_id = call
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
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _tool_call(body: bytes) -> tuple[str, Any] | None:
    """(tool, JSON-RPC id) of a `tools/call`; None for anything else (the SDK judges it)."""
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("method") != "tools/call":
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
