"""`mcpsec token`: mint, verify, inspect, revoke and refresh access and refresh tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from mcpsec.cli import errors
from mcpsec.cli.options import FileOption, JsonFlag, QuietFlag, RequiredPermission, read_credential
from mcpsec.cli.state import state_of

if TYPE_CHECKING:
    from mcpsec.core.tokens import Inspection, Revocation, TokenVerdict

app = typer.Typer(
    add_completion=False,
    help="Mint, verify, inspect, revoke and refresh access tokens (JWT).",
    no_args_is_help=True,
)

TokenArgument = Annotated[
    str | None,
    typer.Argument(metavar="TOKEN|-", help="The token; `-` (or nothing, when piped) reads stdin."),
]
AudienceOption = Annotated[
    str | None,
    typer.Option("--audience", metavar="URI", help="The resource URI (default: tokens.audience)."),
]
KEEP_SAFE = "store the refresh token like a password: it mints new access tokens"
UNVERIFIED = "UNVERIFIED: what the token says about itself; nothing here is checked"


@app.command()
def mint(
    ctx: typer.Context,
    subject: Annotated[str, typer.Option("--subject", "-s", help="Who the token is for (sub).")],
    role: Annotated[
        list[str] | None, typer.Option("--role", "-r", metavar="ROLE", help="Repeatable.")
    ] = None,
    permission: Annotated[
        list[str] | None,
        typer.Option(
            "--permission", "-p", metavar="PERMISSION", help="Extra resource:action; repeatable."
        ),
    ] = None,
    audience: AudienceOption = None,
    ttl: Annotated[
        str | None,
        typer.Option(
            "--ttl", metavar="DURATION", help="Access token lifetime (default: tokens.access_ttl)."
        ),
    ] = None,
    no_refresh: Annotated[
        bool, typer.Option("--no-refresh", help="An access token only, no refresh token.")
    ] = False,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Mint an access token (and a refresh token) carrying roles and effective permissions.

    Example: mcpsec token mint --subject alice --role user --audience https://mcp.example.com
    """
    from mcpsec.core.durations import parse_duration
    from mcpsec.core.tokens import DEFAULT

    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    minted = state.tokens().mint(
        subject,
        roles=role or (),
        permissions=permission or (),
        audience=audience if audience is not None else DEFAULT,
        ttl=parse_duration(ttl, field="ttl") if ttl is not None else None,
        refresh=not no_refresh,
    )
    out.result(minted)
    if minted.refresh_token:
        out.note(f"note: {KEEP_SAFE}")


@app.command()
def verify(
    ctx: typer.Context,
    token: TokenArgument = None,
    file: FileOption = None,
    audience: AudienceOption = None,
    permission: RequiredPermission = None,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Check signature, claims and revocation: exit 0 valid, 1 otherwise (with the reason).

    Example: mcpsec token verify --permission files:read - < access.jwt
    """
    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    verdict = state.tokens().verify(
        read_credential(token, file, "token"), audience=audience, permission=permission
    )
    out.result(verdict, human=_verdict_lines)
    if not verdict.valid:
        raise typer.Exit(errors.NEGATIVE)


@app.command()
def inspect(
    ctx: typer.Context,
    token: TokenArgument = None,
    file: FileOption = None,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Show a token's header and claims WITHOUT verifying them, with times relative to now
    and the revocation status if the store answers.

    Example: mcpsec token inspect - < access.jwt
    """
    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    seen = state.tokens().inspect(read_credential(token, file, "token"))
    out.result(_inspection_document(seen), human=_inspection_lines)


@app.command()
def revoke(
    ctx: typer.Context,
    token: TokenArgument = None,
    file: FileOption = None,
    jti: Annotated[
        str | None, typer.Option("--jti", metavar="JTI", help="Revoke the token with this id.")
    ] = None,
    subject: Annotated[
        str | None,
        typer.Option("--subject", metavar="SUBJECT", help="Revoke every token of S issued so far."),
    ] = None,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Revoke one token (by itself or its jti) or every token of a subject issued until now,
    access and refresh. The revocation lasts as long as the tokens would have. Idempotent.

    Example: mcpsec token revoke --subject alice
    """
    from mcpsec.core.errors import InvalidInputError

    given = [token is not None or file is not None, jti is not None, subject is not None]
    if sum(given) > 1:
        raise InvalidInputError("give one of TOKEN (or --file), --jti or --subject")
    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    tokens = state.tokens()
    if jti is not None:
        done = tokens.revoke_jti(jti)
    elif subject is not None:
        done = tokens.revoke_subject(subject)
    else:
        done = tokens.revoke(read_credential(token, file, "token"))
    out.result(done, human=_revocation_line)


@app.command()
def refresh(
    ctx: typer.Context,
    token: TokenArgument = None,
    file: FileOption = None,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Trade a refresh token for a new access token and refresh token; the old one is spent.
    Presenting a spent one again revokes its whole family (exit 1, reuse_detected).

    Example: mcpsec token refresh --json - < refresh.jwt
    """
    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    result = state.tokens().refresh(read_credential(token, file, "refresh token"))
    if result.tokens is None:
        out.result(
            {"valid": False, "reason": result.reason}, human=lambda _: f"invalid: {result.reason}"
        )
        raise typer.Exit(errors.NEGATIVE)
    out.result(result.tokens)
    out.note(f"note: {KEEP_SAFE}")


def _verdict_lines(verdict: TokenVerdict) -> str:
    if not verdict.valid:
        return f"invalid: {verdict.reason}"
    claims = verdict.claims
    return f"valid: {claims.get('sub')} ({_relative('exp', claims.get('exp'), _now())})"


def _revocation_line(done: Revocation) -> str:
    if not done.revoked:
        return f"{done.jti}: already expired, nothing to revoke"
    until = done.until.strftime("%Y-%m-%d %H:%M:%S UTC") if done.until else "-"
    if done.target == "subject":
        return f"revoked every token of the subject issued until now (held until {until})"
    return f"revoked {done.jti} (held until {until})"


def _inspection_document(seen: Inspection) -> dict[str, Any]:
    from mcpsec.core.token_rules import is_time

    times = {
        name: {
            "at": _iso(seen.claims[name]),
            "relative": _relative(name, seen.claims[name], seen.now),
        }
        for name in ("iat", "nbf", "exp")
        if is_time(seen.claims.get(name))
    }
    return {
        "verified": seen.verified,
        "header": dict(seen.header),
        "claims": dict(seen.claims),
        "times": times,
        "revoked": seen.revoked,
        "revocation_note": seen.revocation_note,
    }


def _inspection_lines(document: dict[str, Any]) -> str:
    """Every name and value escaped: the token is untrusted, its text could drive the terminal."""
    from mcpsec.cli.output import escape_unprintable as shown

    lines = [UNVERIFIED, ""]
    for name, value in document["header"].items():
        lines.append(shown(f"header.{name}: {value}"))
    for name, value in document["claims"].items():
        text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
        if name in document["times"]:
            when = document["times"][name]
            text = f"{when['at'] or 'beyond the year 9999'} ({when['relative']})"
        lines.append(shown(f"{name}: {text}"))
    revoked = document["revoked"]
    status = document["revocation_note"] or ("REVOKED" if revoked else "not revoked")
    lines += ["", f"revocation: {status}"]
    return "\n".join(lines)


def _relative(name: str, at: Any, now: float) -> str:
    from mcpsec.core.durations import format_duration
    from mcpsec.core.token_rules import is_time

    if not is_time(at):
        return "not a time"
    gap = format_duration(abs(at - now))
    future = at > now
    if name == "exp":
        return f"expires in {gap}" if future else f"expired {gap} ago"
    if name == "nbf":
        return f"valid in {gap}" if future else f"valid since {gap} ago"
    return f"issued in {gap} (in the future!)" if future else f"issued {gap} ago"


def _iso(epoch: float) -> str | None:
    """None for a time a datetime cannot hold (past the year 9999): the token is untrusted."""
    from mcpsec.core.clock import to_datetime

    try:
        return to_datetime(epoch).isoformat()
    except (ValueError, OverflowError, OSError):
        return None


def _now() -> float:
    import time

    return time.time()
