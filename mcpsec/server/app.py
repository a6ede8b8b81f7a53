"""mcpsec guarding a server built with the official MCP SDK (`pip install 'mcpsec[server]'`).

    guard = Guard.from_settings(load_settings(os.environ))
    server = MCPServer("files", **auth_options(guard))     # bearer: mcpsec keys and tokens

    @guard.requires("files:write")
    @server.tool()
    def write_file(path: str, text: str) -> str: ...

    app = guarded_app(server, guard)                      # uvicorn.run(app, ...)

The SDK verifies the bearer credential through `MCPVerifier` (401 with the RFC 9728
`resource_metadata` challenge when it fails) and serves the protected resource metadata;
`ToolGate` then answers per-tool permissions (403) and rate limits (429).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl
from starlette.middleware import Middleware

from mcpsec.core.errors import ConfigError
from mcpsec.server.gate import ClientAddress, ToolGate
from mcpsec.server.guard import Guard, Principal

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from starlette.applications import Starlette


class PrincipalToken(AccessToken):
    """The SDK's AccessToken, carrying the mcpsec principal on to the gate."""

    principal: Principal


class MCPVerifier:
    """The SDK's TokenVerifier: mcpsec API keys and access tokens as bearer credentials.
    Scopes are the principal's effective permissions; a token's audience must be the
    server's resource. None (so 401) for anything not valid, and when the store is down."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    async def verify_token(self, token: str) -> AccessToken | None:
        principal = await self.guard.authenticate(token)
        if principal is None:
            return None
        return PrincipalToken(
            token=token,
            client_id=principal.name,
            scopes=sorted(principal.permissions),
            expires_at=principal.expires_at,
            resource=self.guard.resource,
            subject=principal.name,
            claims={"kind": principal.kind.value, "roles": list(principal.roles)},
            principal=principal,
        )


def auth_options(guard: Guard) -> dict[str, Any]:
    """`MCPServer(..., **auth_options(guard))`: the verifier and the SDK's auth settings."""
    resource = _resource(guard)
    issuer = guard.authorization_servers[0] if guard.authorization_servers else _origin(resource)
    return {
        "token_verifier": MCPVerifier(guard),
        "auth": AuthSettings(
            issuer_url=AnyHttpUrl(issuer),
            resource_server_url=AnyHttpUrl(resource),
            required_scopes=None,
            validate_token_resource=True,
        ),
    }


def guarded_app(server: MCPServer, guard: Guard, **app_options: Any) -> Starlette:
    """The server's streamable-HTTP app with the tool gate inside its authentication.
    Build a new one for each start: the SDK's session manager runs once per app."""
    resource = _resource(guard)
    if hasattr(server, "_token_verifier") and not isinstance(server._token_verifier, MCPVerifier):
        raise ConfigError(
            "the MCP server does not verify bearer credentials with mcpsec: build it with "
            "MCPServer(..., **auth_options(guard))"
        )
    app = server.streamable_http_app(**app_options)
    metadata_url = str(build_resource_metadata_url(AnyHttpUrl(resource)))
    # Appended, not add_middleware(): user middleware listed last runs innermost, after the
    # SDK's authentication has put the verified principal in the request scope.
    app.user_middleware.append(Middleware(ToolGate, guard=guard, metadata_url=metadata_url))
    app.add_middleware(ClientAddress)  # outermost: before the SDK's authentication
    app.router.lifespan_context = _closing(app.router.lifespan_context, guard)
    return app


def _closing(lifespan: Any, guard: Guard) -> Any:
    """The app's lifespan, then the guard closed: the audit events still queued are
    appended before the process ends (uvicorn ends on SIGTERM by re-raising the signal,
    so nothing registered with atexit would run)."""

    @asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[Any]:
        try:
            async with lifespan(app) as state:
                yield state
        finally:
            await guard.aclose()

    return run


def _resource(guard: Guard) -> str:
    if not guard.resource or not guard.resource.startswith(("https://", "http://")):
        raise ConfigError(
            "an MCP server needs its resource URI: set server.resource (or tokens.audience) "
            "to the URL clients connect to, like https://mcp.example.com/mcp"
        )
    return guard.resource


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"
