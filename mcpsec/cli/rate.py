"""`mcpsec rate`: see, test, reset and override the token buckets that limit request rates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import typer

from mcpsec.cli import errors
from mcpsec.cli.options import JsonFlag, QuietFlag
from mcpsec.cli.state import CliState, state_of

if TYPE_CHECKING:
    from mcpsec.core.ratelimit import BucketRow, Decision, Limit

app = typer.Typer(
    add_completion=False,
    help="Show, list, test, reset and override rate-limit buckets.",
    no_args_is_help=True,
)
override_app = typer.Typer(
    add_completion=False,
    help="Give one identity its own limit, or take it away.",
    no_args_is_help=True,
)
app.add_typer(override_app, name="override")

IdentityArgument = Annotated[
    str, typer.Argument(metavar="IDENTITY", help="Whose bucket: a user, key id or client.")
]
RoleOption = Annotated[
    list[str] | None,
    typer.Option("--role", "-r", metavar="ROLE", help="The identity's roles; repeatable."),
]
CapacityOption = Annotated[
    float | None, typer.Option("--capacity", metavar="C", help="Burst: tokens when full.")
]
RefillOption = Annotated[
    float | None, typer.Option("--refill", metavar="R", help="Tokens added per second.")
]
MatchOption = Annotated[
    str | None, typer.Option("--match", metavar="GLOB", help="Identities matching, like 'bot-*'.")
]


@app.command()
def show(
    ctx: typer.Context,
    identity: IdentityArgument,
    role: RoleOption = None,
    capacity: CapacityOption = None,
    refill: RefillOption = None,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """The bucket now: tokens, capacity, refill, seconds until full, override; consumes nothing.
    An identity never seen has a full bucket.

    Example: mcpsec rate show alice --role user
    """
    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    view = state.rate_limiter().show(
        identity, roles=_roles(state, role), limit=_limit(capacity, refill)
    )
    out.result(view)


@app.command("list")
def list_buckets(
    ctx: typer.Context,
    match: MatchOption = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", help="Page size, 1-1000.")] = 50,
    cursor: Annotated[
        str | None, typer.Option("--cursor", metavar="CURSOR", help="From a previous page.")
    ] = None,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Buckets that are not full, with their levels, a page at a time.

    Example: mcpsec rate list --match 'bot-*'
    """
    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    page = state.rate_limiter().list(match=match, limit=limit, cursor=cursor)
    columns = ("IDENTITY", "BUCKET", "TOKENS", "CAPACITY", "REFILL/S", "FULL IN")
    out.listing(page.buckets, columns, _row, document=page)
    if page.next_cursor:
        out.note(f"more buckets: add --cursor '{page.next_cursor}'")


@app.command()
def reset(
    ctx: typer.Context,
    identity: Annotated[
        str | None, typer.Argument(metavar="IDENTITY", help="Whose buckets to fill again.")
    ] = None,
    match: MatchOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm a reset by --match.")] = False,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Fill an identity's buckets again (or, with --match GLOB --yes, every matching one's).

    Example: mcpsec rate reset alice
    """
    from mcpsec.core.errors import InvalidInputError

    if (identity is None) == (match is None):
        raise InvalidInputError("give an IDENTITY or --match GLOB, not both and not neither")
    if match is not None and not yes:
        raise InvalidInputError("resetting by --match resets many buckets: add --yes to confirm")
    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    limiter = state.rate_limiter()
    done = limiter.reset_matching(match) if match is not None else limiter.reset(identity or "")
    out.result(done, human=lambda r: f"reset {r.reset} bucket(s)")


@app.command()
def check(
    ctx: typer.Context,
    identity: IdentityArgument,
    role: RoleOption = None,
    capacity: CapacityOption = None,
    refill: RefillOption = None,
    cost: Annotated[float, typer.Option("--cost", metavar="N", help="Tokens it takes.")] = 1.0,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Take COST tokens, as a server would for one request: exit 0 allowed, 1 limited.
    If the store cannot be reached, the answer follows rate.fail_open and says so.

    Example: mcpsec rate check alice --role user --cost 5 --json
    """
    from mcpsec.core.errors import InvalidInputError

    if role and (capacity is not None or refill is not None):
        raise InvalidInputError("give --role or --capacity with --refill, not both")
    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    decision = state.rate_limiter().check(
        identity, roles=_roles(state, role), limit=_limit(capacity, refill), cost=cost
    )
    if decision.store_unavailable:
        verdict = "allowed" if decision.allowed else "refused"
        out.warn(f"the store did not answer: {verdict} by rate.fail_open")
    out.result(_decision_document(decision), human=lambda _: _decision_line(decision))
    if not decision.allowed:
        raise typer.Exit(errors.NEGATIVE)


@app.command()
def policies(ctx: typer.Context, json: JsonFlag = False, quiet: QuietFlag = False) -> None:
    """The limit of each role, from [rate.roles.*] in config (or the built-in set).

    Example: mcpsec rate policies
    """
    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    rows = state.rate_limiter().policies()
    out.listing(
        rows,
        ("ROLE", "CAPACITY", "REFILL/S", "DEFAULT"),
        lambda p: (p.role, _num(p.capacity), _num(p.refill_per_second), "yes" if p.default else ""),
    )


@app.command()
def watch(
    ctx: typer.Context,
    match: MatchOption = None,
    top: Annotated[int, typer.Option("--top", metavar="N", help="Rows to show.")] = 20,
    interval: Annotated[
        float, typer.Option("--interval", metavar="SECONDS", help="Between refreshes.")
    ] = 1.0,
    count: Annotated[
        int | None, typer.Option("--count", metavar="N", help="Stop after N refreshes.")
    ] = None,
) -> None:
    """A live view of the busiest buckets (emptiest first), refreshing in place; Ctrl-C ends.

    Example: mcpsec rate watch --match 'bot-*'
    """
    import time

    from mcpsec.core.errors import InvalidInputError
    from mcpsec.core.ratelimit import busiest

    if not 1 <= top <= 1000 or not 0.1 <= interval <= 3600:
        raise InvalidInputError("--top is 1-1000 and --interval 0.1-3600 seconds")
    if count is not None and count < 1:
        raise InvalidInputError("--count must be at least 1")
    state = state_of(ctx)
    out = state.output()
    limiter = state.rate_limiter()
    shown = 0
    try:
        with out.live() as refresh:
            while True:
                rows = busiest(limiter, match=match, top=top)
                refresh(_WATCH_COLUMNS, [_row(r) for r in rows], f"{len(rows)} busiest bucket(s)")
                shown += 1
                if count is not None and shown >= count:
                    return
                time.sleep(interval)
    except KeyboardInterrupt:
        return  # Ctrl-C is how a watch ends: exit 0


@override_app.command("set")
def override_set(
    ctx: typer.Context,
    identity: IdentityArgument,
    capacity: Annotated[float, typer.Option("--capacity", metavar="C", help="Burst.")],
    refill: Annotated[float, typer.Option("--refill", metavar="R", help="Tokens per second.")],
    ttl: Annotated[
        str | None,
        typer.Option("--ttl", metavar="DURATION", help="Until it lapses (default never)."),
    ] = None,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Give IDENTITY its own limit, instead of its roles'; servers apply it on the next request.

    Example: mcpsec rate override set ci-bot --capacity 1000 --refill 50 --ttl 24h
    """
    from mcpsec.core.durations import parse_duration
    from mcpsec.core.ratelimit import Limit

    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    lifetime = parse_duration(ttl, field="ttl") if ttl is not None else None
    out.result(
        state.rate_limiter().set_override(identity, Limit.of(capacity, refill), ttl=lifetime)
    )


@override_app.command("unset")
def override_unset(
    ctx: typer.Context, identity: IdentityArgument, json: JsonFlag = False, quiet: QuietFlag = False
) -> None:
    """Take an identity's own limit away: its roles' limit applies again.

    Example: mcpsec rate override unset ci-bot
    """
    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    out.result(
        state.rate_limiter().unset_override(identity), human=lambda o: f"{o.identity}: removed"
    )


_WATCH_COLUMNS = ("IDENTITY", "BUCKET", "TOKENS", "CAPACITY", "REFILL/S", "FULL IN")


def _roles(state: CliState, roles: list[str] | None) -> list[str]:
    """Each role must exist (exit 2 naming it): a typo would silently get the default limit."""
    table = state.settings().roles
    return [table.check_role(r) for r in roles or ()]


def _limit(capacity: float | None, refill: float | None) -> Limit | None:
    from mcpsec.core.errors import InvalidInputError
    from mcpsec.core.ratelimit import Limit

    if capacity is None and refill is None:
        return None
    if capacity is None or refill is None:
        raise InvalidInputError("give --capacity and --refill together")
    return Limit.of(capacity, refill)


@dataclass(frozen=True)
class _CheckResult:
    """The documented `rate check --json` shape; `--quiet` prints `allowed`."""

    allowed: bool = field(metadata={"essential": True})
    limit: int
    remaining: int
    retry_after: float | None
    reset_after: float | None


def _decision_document(decision: Decision) -> _CheckResult:
    return _CheckResult(
        decision.allowed,
        decision.limit,
        decision.remaining,
        decision.retry_after,
        decision.reset_after,
    )


def _decision_line(decision: Decision) -> str:
    if decision.store_unavailable:
        verdict = "allowed" if decision.allowed else "limited"
        return f"{verdict}: the store did not answer ({decision.policy})"
    if decision.allowed:
        return f"allowed: {decision.remaining}/{decision.limit} left ({decision.policy})"
    wait = (
        "never (no refill)" if decision.retry_after is None else f"in {decision.retry_after:.2f}s"
    )
    return f"limited: retry {wait} ({decision.policy})"


def _row(row: BucketRow) -> tuple[str, ...]:
    full = "never" if row.seconds_until_full is None else f"{row.seconds_until_full:.1f}s"
    return (
        row.identity,
        row.bucket,
        f"{row.tokens:.1f}",
        _num(row.capacity),
        _num(row.refill_per_second),
        full,
    )


def _num(value: float) -> str:
    return f"{value:g}"
