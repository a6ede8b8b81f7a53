"""`mcpsec authz`: answer "may this credential do that?" with an exit code, for runbooks and CI."""

from __future__ import annotations

from typing import Annotated

import typer

from mcpsec.cli import errors
from mcpsec.cli.options import FileOption, JsonFlag, QuietFlag, read_credential
from mcpsec.cli.state import state_of

app = typer.Typer(
    add_completion=False,
    help="Check what a token or API key may do.",
    no_args_is_help=True,
)


@app.callback()
def authz() -> None:
    """Check what a token or API key may do (`check`; more questions may come)."""


@app.command()
def check(
    ctx: typer.Context,
    permission: Annotated[
        str, typer.Option("--permission", "-p", metavar="PERMISSION", help="resource:action.")
    ],
    credential: Annotated[
        str | None,
        typer.Argument(
            metavar="CREDENTIAL|-",
            help="A token or API key, told apart by shape; `-` (or nothing, when piped) "
            "reads stdin.",
        ),
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", metavar="TOKEN|-", help="Check this access token.")
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", metavar="KEY|-", help="Check this API key.")
    ] = None,
    file: FileOption = None,
    audience: Annotated[
        str | None,
        typer.Option("--audience", metavar="URI", help="For tokens (default: tokens.audience)."),
    ] = None,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Exit 0 if the credential is valid and grants PERMISSION, 1 if not (with the reason).
    An API key checked here counts one use.

    Example: mcpsec authz check --permission files:write - < access.jwt
    """
    from mcpsec.core.authz import CredentialKind, check_access
    from mcpsec.core.errors import InvalidInputError

    given = [v for v in (credential, token, key) if v is not None]
    if len(given) > 1 or (given and file is not None):
        raise InvalidInputError("give one credential: an argument, --token, --key or --file")
    kind = CredentialKind.TOKEN if token is not None else CredentialKind.KEY if key else None
    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    decision = check_access(
        read_credential(given[0] if given else None, file, "token or API key"),
        permission,
        tokens=state.tokens,
        api_keys=state.api_keys,
        kind=kind,
        audience=audience,
        audit=state.audit_log(),
    )
    out.result(
        decision,
        human=lambda d: (
            f"allowed: {d.principal} may {d.permission}" if d.allowed else f"denied: {d.reason}"
        ),
    )
    if not decision.allowed:
        raise typer.Exit(errors.NEGATIVE)
