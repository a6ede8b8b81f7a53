"""The root of the command tree: global options, then the list of command groups."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, ClassVar

import typer

from mcpsec import __version__
from mcpsec.cli.group import MCPSecGroup
from mcpsec.cli.options import JSON_HELP, QUIET_HELP
from mcpsec.cli.state import CliState

HELP = """Security operations for MCP servers: tokens, API keys, roles, rate limits, audit.

Settings come from flags, then MCPSEC_* environment variables, then the config file
($XDG_CONFIG_HOME/mcpsec/config.toml), then defaults. Start with `mcpsec config init`
and `mcpsec doctor`.
"""


class RootGroup(MCPSecGroup):
    """The command groups, imported only when used (start-up cost grows with each group)."""

    lazy_commands: ClassVar[Mapping[str, str]] = {
        "config": "mcpsec.cli.config:app",
        "doctor": "mcpsec.cli.doctor:app",
        "keys": "mcpsec.cli.keys:app",
        "pkce": "mcpsec.cli.pkce:app",
        "roles": "mcpsec.cli.roles:app",
        "signing-key": "mcpsec.cli.signing_key:app",
        "jwks": "mcpsec.cli.jwks:app",
        "token": "mcpsec.cli.token:app",
        "authz": "mcpsec.cli.authz:app",
        "rate": "mcpsec.cli.rate:app",
        "audit": "mcpsec.cli.audit:app",
        "prm": "mcpsec.cli.prm:app",
    }


app = typer.Typer(
    cls=RootGroup,
    name="mcpsec",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        print(f"mcpsec {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    ctx: typer.Context,
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="PATH",
            help="Config file to read instead of $MCPSEC_CONFIG or the XDG location.",
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            metavar="URL",
            help="Store URL (sqlite:///…, redis://…, redis+cluster://…); beats MCPSEC_STORE_URL.",
        ),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colours or tables (NO_COLOR is honoured too).")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="More detail on errors, including tracebacks.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    state = CliState(config_path, store, json, quiet, no_color, verbose)
    ctx.obj = state
    ctx.call_on_close(state.close)
