"""OAuth 2.0 Protected Resource Metadata (RFC 9728) for an MCP server, and its challenge.

    found = protected_resource("https://mcp.example.com/mcp", ["https://auth.example.com"])
    found.metadata_url      # https://mcp.example.com/.well-known/oauth-protected-resource/mcp
    found.www_authenticate  # Bearer resource_metadata="https://mcp.example.com/.well-known/..."

The MCP authorization spec has a server publish this document and point to it from the
`WWW-Authenticate` challenge of every 401, so that a client can find the authorization
server on its own. Built here without the MCP SDK, so that `mcpsec prm generate` needs no
server extra.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

from mcpsec.core.errors import InvalidInputError

if TYPE_CHECKING:
    from mcpsec.core.config import ServerSettings

WELL_KNOWN: Final = "/.well-known/oauth-protected-resource"
LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 scope-token: no space, " or \


@dataclass(frozen=True)
class ProtectedResource:
    metadata_url: str
    www_authenticate: str = field(metadata={"essential": True})
    document: dict[str, Any]
    warnings: tuple[str, ...] = ()


def protected_resource(
    resource: str,
    authorization_servers: Sequence[str],
    scopes: Iterable[str] = (),
    *,
    name: str | None = None,
) -> ProtectedResource:
    """The RFC 9728 document for `resource` and the challenge a 401 should carry."""
    warnings: list[str] = []
    if not resource:
        raise InvalidInputError(
            "name the server's resource URI (--resource, or server.resource in the config)",
            field="resource",
        )
    checked = check_url(resource, "resource", warnings)
    if not authorization_servers:
        raise InvalidInputError(
            "name at least one authorization server (--authorization-server URL)",
            field="authorization_server",
        )
    servers = [check_url(s, "authorization server", warnings) for s in authorization_servers]
    chosen = list(dict.fromkeys(check_scope(s) for s in scopes))
    document: dict[str, Any] = {"resource": checked, "authorization_servers": servers}
    if chosen:
        document["scopes_supported"] = chosen
    document["bearer_methods_supported"] = ["header"]
    if name:
        document["resource_name"] = name
    metadata = metadata_url(checked)
    challenge = f'Bearer resource_metadata="{metadata}"'
    if chosen:
        challenge += f', scope="{" ".join(chosen)}"'
    return ProtectedResource(metadata, challenge, document, tuple(dict.fromkeys(warnings)))


def for_server(
    server: ServerSettings,
    *,
    resource: str | None = None,
    authorization_servers: Sequence[str] | None = None,
    scopes: Sequence[str] | None = None,
    name: str | None = None,
) -> ProtectedResource:
    """`protected_resource`, with what is not given taken from `[server]`: its resource, its
    authorization servers, and the permissions its tools need as the scopes."""
    return protected_resource(
        resource or server.resource or "",
        authorization_servers or server.authorization_servers,
        scopes or sorted(set(server.tools.values())),
        name=name,
    )


def metadata_url(resource: str) -> str:
    """Where the document lives (RFC 9728 §3.1): the well-known path goes between the host
    and the resource's own path."""
    parts = urlsplit(resource)
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN + path, parts.query, ""))


def check_url(url: str, what: str, warnings: list[str]) -> str:
    """An absolute https URL without a fragment; plain http only for a loopback host."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        host, parts = None, None
    if parts is None or not host or parts.scheme not in ("https", "http"):
        raise InvalidInputError(
            f"the {what} {url!r} is not an absolute URL like https://mcp.example.com/mcp",
            field=what,
        )
    if parts.fragment or any(c.isspace() or c == '"' for c in url.strip()):
        raise InvalidInputError(f"the {what} {url!r} may not have a fragment, spaces or quotes")
    if not url.isascii():  # it goes into HTTP header fields
        raise InvalidInputError(f"the {what} {url!r} must be ASCII: percent-encode the rest")
    if parts.scheme == "http":
        if host not in LOOPBACK:
            raise InvalidInputError(f"the {what} {url!r} must use https (RFC 9728)", field=what)
        warnings.append("plain http is only for trying things out on this machine")
    return url.strip()


def check_scope(scope: str) -> str:
    if not _SCOPE.fullmatch(scope):
        raise InvalidInputError(
            f"scope {scope!r} must be one word of printable characters, without quotes",
            field="scope",
        )
    return scope
