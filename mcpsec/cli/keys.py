"""`mcpsec keys`: issue, verify, rotate, revoke and list API keys for machines."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from mcpsec.cli import errors
from mcpsec.cli.options import JsonFlag, QuietFlag, RequiredPermission, read_value
from mcpsec.cli.state import state_of

if TYPE_CHECKING:
    from mcpsec.core.api_keys import Verdict
    from mcpsec.core.key_records import ApiKey

app = typer.Typer(
    add_completion=False,
    help="Issue, verify, rotate, revoke and list API keys.",
    no_args_is_help=True,
)

KeyArgument = Annotated[
    str | None,
    typer.Argument(metavar="KEY|-", help="The API key; `-` (or nothing, when piped) reads stdin."),
]
KeyIdArgument = Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (not secret).")]
TtlOption = Annotated[
    str | None,
    typer.Option("--ttl", metavar="DURATION|never", help="Lifetime, like 90d, or never."),
]
PermissionOption = Annotated[
    list[str] | None,
    typer.Option("--permission", "-p", metavar="PERMISSION", help="resource:action; repeatable."),
]
ONCE = "store this key now: it is shown once and cannot be recovered"


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", "-n", help="What the key is for (1-100 chars).")],
    owner: Annotated[
        str | None, typer.Option("--owner", help="Who answers for the key (a team, a bot).")
    ] = None,
    role: Annotated[
        list[str] | None, typer.Option("--role", "-r", metavar="ROLE", help="Repeatable.")
    ] = None,
    permission: PermissionOption = None,
    ttl: TtlOption = None,
    rate_limit: Annotated[
        str | None,
        typer.Option("--rate-limit", metavar="CAP/PER", help="e.g. 100/1m: its own limit."),
    ] = None,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Issue a new API key; the key itself is printed once and never stored.

    Example: mcpsec keys create --name ci-bot --owner platform --role user --quiet > ci.key
    """
    from mcpsec.core.api_keys import DEFAULT
    from mcpsec.core.durations import parse_lifetime
    from mcpsec.core.key_records import parse_rate_limit

    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    created = state.api_keys().create(
        name,
        owner=owner,
        roles=role or (),
        permissions=permission or (),
        ttl=parse_lifetime(ttl) if ttl is not None else DEFAULT,
        rate_limit=parse_rate_limit(rate_limit) if rate_limit else None,
    )
    out.result(created)
    out.note(f"note: {ONCE}")


@app.command()
def verify(
    ctx: typer.Context,
    key: KeyArgument = None,
    permission: RequiredPermission = None,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Check a key against the store and count one use: exit 0 valid, 1 otherwise.

    Example: mcpsec keys verify --permission files:read - < ci.key
    """
    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    verdict = state.api_keys().verify(read_value(key, "API key"), permission=permission)
    out.result(verdict, human=_verdict_line)
    if not verdict.valid:
        raise typer.Exit(errors.NEGATIVE)


@app.command()
def check(
    ctx: typer.Context, key: KeyArgument = None, json: JsonFlag = False, quiet: QuietFlag = False
) -> None:
    """Check a key's format and checksum offline (no store): exit 0 well-formed, 1 otherwise.

    Example: git diff | grep -o 'mcp_[A-Za-z0-9_]*' | xargs -n1 mcpsec keys check
    """
    from mcpsec.core.api_keys import check_format

    out = state_of(ctx).output(json=json, quiet=quiet)
    verdict = check_format(read_value(key, "API key"))
    out.result(verdict, human=_verdict_line)
    if not verdict.valid:
        raise typer.Exit(errors.NEGATIVE)


@app.command()
def show(
    ctx: typer.Context, key_id: KeyIdArgument, json: JsonFlag = False, quiet: QuietFlag = False
) -> None:
    """Show a key's metadata: status, grants, expiry, last use and use count; never its secret.

    Example: mcpsec keys show 4fJq8Lw2Xc9a
    """
    state = state_of(ctx)
    state.output(json=json, quiet=quiet).result(state.api_keys().show(key_id))


@app.command("list")
def list_keys(
    ctx: typer.Context,
    owner: Annotated[str | None, typer.Option("--owner", help="Only this owner's keys.")] = None,
    status: Annotated[
        str, typer.Option("--status", metavar="active|revoked|expired|all", help="Which keys.")
    ] = "all",
    expiring_within: Annotated[
        str | None, typer.Option("--expiring-within", metavar="DURATION", help="e.g. 7d.")
    ] = None,
    unused_for: Annotated[
        str | None, typer.Option("--unused-for", metavar="DURATION", help="e.g. 30d.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", help="Page size, 1-1000.")] = 50,
    cursor: Annotated[
        str | None, typer.Option("--cursor", metavar="CURSOR", help="From a previous page.")
    ] = None,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """List keys one page at a time; `--json` gives {"keys": [...], "next_cursor": ...}.

    Example: mcpsec keys list --status active --expiring-within 7d
    """
    from mcpsec.core.key_filters import parse_filter

    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    where = parse_filter(status, expiring_within, unused_for)
    page = state.api_keys().list(owner=owner, where=where, limit=limit, cursor=cursor)
    columns = ("KEY ID", "NAME", "OWNER", "STATUS", "EXPIRES", "LAST USED", "USES")
    out.listing(page.keys, columns, _row, document=page)
    if page.next_cursor:
        out.note(f"more keys: add --cursor {page.next_cursor}")


@app.command()
def rotate(
    ctx: typer.Context,
    key_id: KeyIdArgument,
    grace: Annotated[
        str | None,
        typer.Option("--grace", metavar="DURATION", help="How long the old key still works (24h)."),
    ] = None,
    now: Annotated[bool, typer.Option("--now", help="Stop the old key at once.")] = False,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Issue a successor with the same name, owner, grants and limits; the old key works
    until the grace period ends (never past its own expiry), or stops at once with --now.

    Example: mcpsec keys rotate 4fJq8Lw2Xc9a --grace 1h --quiet > ci.key
    """
    from mcpsec.core.api_keys import DEFAULT_GRACE
    from mcpsec.core.durations import parse_duration
    from mcpsec.core.errors import InvalidInputError

    if now and grace is not None:
        raise InvalidInputError("give --grace or --now, not both")
    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    kept = None if now else parse_duration(grace) if grace else DEFAULT_GRACE
    rotation = state.api_keys().rotate(key_id, grace=kept)
    out.result(rotation)
    out.note(f"note: {ONCE}")


@app.command()
def revoke(
    ctx: typer.Context,
    key_id: Annotated[
        str | None, typer.Argument(metavar="KEY_ID", help="The key to revoke.")
    ] = None,
    owner: Annotated[
        str | None, typer.Option("--owner", help="Revoke every key of this owner instead.")
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", metavar="TEXT", help="Recorded with the key.")
    ] = None,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Revoke a key (or every key of an owner), effective on the very next verify.

    Example: mcpsec keys revoke 4fJq8Lw2Xc9a --reason "leaked in CI logs"
    """
    from mcpsec.core.errors import InvalidInputError

    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    if (key_id is None) == (owner is None):
        raise InvalidInputError("give either a KEY_ID or --owner, not both and not neither")
    keys = state.api_keys()
    if owner is not None:
        out.result(keys.revoke_owner(owner, reason=reason), human=lambda r: f"revoked {r.revoked}")
        return
    assert key_id is not None
    out.result(keys.revoke(key_id, reason=reason), human=lambda k: f"{k.key_id} {k.status}")


@app.command()
def update(
    ctx: typer.Context,
    key_id: KeyIdArgument,
    add_permission: Annotated[
        list[str] | None, typer.Option("--add-permission", metavar="PERMISSION", help="Grant.")
    ] = None,
    remove_permission: Annotated[
        list[str] | None,
        typer.Option("--remove-permission", metavar="PERMISSION", help="Take away."),
    ] = None,
    ttl: TtlOption = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="A new name.")] = None,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Change a key's name, permissions or lifetime (counted from now).

    Example: mcpsec keys update 4fJq8Lw2Xc9a --add-permission files:write --ttl 30d
    """
    from mcpsec.core.api_keys import DEFAULT
    from mcpsec.core.durations import parse_lifetime

    state = state_of(ctx)
    changed = state.api_keys().update(
        key_id,
        name=name,
        add_permissions=add_permission or (),
        remove_permissions=remove_permission or (),
        ttl=parse_lifetime(ttl) if ttl is not None else DEFAULT,
    )
    state.output(json=json, quiet=quiet).result(changed)


def _verdict_line(verdict: Verdict) -> str:
    return "valid" if verdict.valid else f"invalid: {verdict.reason}"


def _row(key: ApiKey) -> tuple[str, ...]:
    return (
        key.key_id,
        key.name,
        key.owner or "-",
        key.status.value,
        _when(key.expires_at, "never"),
        _when(key.last_used_at, "never"),
        str(key.use_count),
    )


def _when(moment: datetime | None, missing: str) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else missing
