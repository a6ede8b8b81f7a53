"""`mcpsec prm`: OAuth protected resource metadata (RFC 9728) for an MCP server."""

from __future__ import annotations

import json as json_module
from typing import Annotated

import typer

from mcpsec.cli.options import JsonFlag, QuietFlag
from mcpsec.cli.state import state_of
from mcpsec.core.prm import ProtectedResource, for_server

app = typer.Typer(
    add_completion=False,
    help="OAuth protected resource metadata (RFC 9728) for an MCP server.",
    no_args_is_help=True,
)


@app.callback()
def prm() -> None:
    """OAuth protected resource metadata (RFC 9728) for an MCP server."""


@app.command()
def generate(
    ctx: typer.Context,
    resource: Annotated[
        str | None,
        typer.Option(
            "--resource",
            metavar="URI",
            help="The server's resource URI, like https://mcp.example.com/mcp "
            "(default: server.resource).",
        ),
    ] = None,
    authorization_servers: Annotated[
        list[str] | None,
        typer.Option(
            "--authorization-server",
            metavar="URL",
            help="An authorization server that issues its tokens; repeat for more "
            "(default: server.authorization_servers).",
        ),
    ] = None,
    scopes: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            metavar="S",
            help="A scope the server understands; repeat for more "
            "(default: the permissions in [server.tools]).",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", metavar="TEXT", help="A human-readable name for the resource."),
    ] = None,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Print the RFC 9728 document and the WWW-Authenticate value a server sends on 401.

    Serve the document at the printed metadata URL. Example:
    mcpsec prm generate --resource https://mcp.example.com/mcp --authorization-server
    https://auth.example.com --scope files:read --json | jq .document
    """
    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    found = for_server(
        state.settings().server,
        resource=resource,
        authorization_servers=authorization_servers,
        scopes=scopes,
        name=name,
    )
    for warning in found.warnings:
        out.warn(warning)
    out.result(found, human=_human)


def _human(found: ProtectedResource) -> str:
    return "\n".join(
        [
            f"# serve at {found.metadata_url}",
            json_module.dumps(found.document, indent=2),
            f"WWW-Authenticate: {found.www_authenticate}",
        ]
    )
