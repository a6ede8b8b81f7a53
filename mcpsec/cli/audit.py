"""`mcpsec audit`: read, follow, search, export, summarise and verify the audit log."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mcpsec.cli import errors
from mcpsec.cli.options import JsonFlag, QuietFlag, read_value
from mcpsec.cli.output import escape_unprintable, jsonable
from mcpsec.cli.state import state_of

if TYPE_CHECKING:
    from mcpsec.core.audit import AuditEvent, EventFilter

app = typer.Typer(
    add_completion=False,
    help="Read, follow, verify and report on the tamper-evident audit log.",
    no_args_is_help=True,
)

SinceOption = Annotated[
    str | None,
    typer.Option("--since", metavar="1h|ISO", help="From this long ago, or this time (UTC)."),
]
UntilOption = Annotated[
    str | None, typer.Option("--until", metavar="1h|ISO", help="Up to this long ago, or time.")
]


@app.command()
def tail(
    ctx: typer.Context,
    lines: Annotated[int, typer.Option("-n", "--lines", metavar="N", help="How many.")] = 10,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new events; Ctrl-C ends.")
    ] = False,
    type_: Annotated[
        list[str] | None,
        typer.Option("--type", "-t", metavar="TYPE", help="Only this type, like key.revoked."),
    ] = None,
    subject: Annotated[
        str | None, typer.Option("--subject", metavar="S", help="Only this subject.")
    ] = None,
    outcome: Annotated[
        str | None, typer.Option("--outcome", metavar="allowed|denied|error", help="Only these.")
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    json_: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """The newest events, newest last; with -f, keep following as they come.

    Example: mcpsec audit tail -f --type key.verified --outcome denied
    """
    from mcpsec.core.errors import InvalidInputError

    if not 1 <= lines <= 100_000:
        raise InvalidInputError("-n must be between 1 and 100000")
    state = state_of(ctx)
    out = state.output()
    log = state.audit_log()
    where = _filter(type_, subject, outcome, since, until)
    show = _line_json if json_ or state.json else _line
    shown = log.last(lines, where)
    for event in shown:
        out.line(show(event))
    if not follow:
        return
    # Follow from where the read above ended, so nothing appended in between is missed.
    position = log.newest_id() if not shown else max(shown, key=lambda e: e.seq).id
    try:
        for event in log.follow(where, after=position):
            out.line(show(event))
    except KeyboardInterrupt:
        return  # Ctrl-C is how a follow ends: exit 0


@app.command()
def verify(
    ctx: typer.Context,
    since: SinceOption = None,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Walk the chain and check every event's MAC and its link to the one before: exit 0 if
    intact, 1 naming the first event that was edited, reordered, inserted or deleted.

    Example: mcpsec audit verify --since 7d
    """
    from mcpsec.core.audit import parse_moment

    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    start = parse_moment(since, time.time()) if since else None
    result = state.audit_log().verify(since=start)

    def human(r: Any) -> str:
        line = f"{r.valid}/{r.total} events valid"
        if r.trimmed:
            line += f"; {r.trimmed} earlier event(s) were trimmed by retention (not tampering)"
        if r.problem:
            line += f"\nevent {r.event_id}: {r.problem}"
        return line

    out.result(result, human=human)
    if not result.intact:
        raise typer.Exit(errors.NEGATIVE)


@app.command("hash")
def hash_value(
    ctx: typer.Context,
    value: Annotated[
        str | None,
        typer.Argument(
            metavar="VALUE|-", help="A key or token; `-` (or nothing, piped) reads stdin."
        ),
    ] = None,
) -> None:
    """The keyed HMAC under which events name a credential they could not name otherwise
    (a malformed key or token): search for it with `audit tail --json | grep`.

    Example: mcpsec audit hash - < leaked.key
    """
    state = state_of(ctx)
    state.output().line(state.audit_log().credential(read_value(value, "value")))


@app.command()
def export(
    ctx: typer.Context,
    since: Annotated[str, typer.Option("--since", metavar="1h|ISO", help="From when.")],
    until: UntilOption = None,
    format_: Annotated[
        str, typer.Option("--format", metavar="jsonl|csv", help="Output format.")
    ] = "jsonl",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write here (0600).")
    ] = None,
) -> None:
    """Events of a window as JSON lines or CSV, to stdout or a file.

    Example: mcpsec audit export --since 24h --format csv -o audit.csv
    """
    from mcpsec.core.audit_export import write_events
    from mcpsec.core.errors import InvalidInputError

    if format_ not in ("jsonl", "csv"):
        raise InvalidInputError(f"unknown format {format_!r}; use jsonl or csv", field="format")
    state = state_of(ctx)
    where = _filter(None, None, None, since, until)
    events = state.audit_log().events(where)
    written = write_events(events, format_, output, state.output().line)
    if output is not None:
        state.output().note(f"wrote {written} event(s) to {output}")


@app.command()
def report(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option("--since", metavar="1h|ISO", help="The window (default 24h).")
    ] = "24h",
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Counts by type and outcome, failed authentications, permission denials, rate-limit
    hits, top offenders, and flags for bursts of failures or a key used from many places.

    Example: mcpsec audit report --since 7d
    """
    from mcpsec.core.audit_report import summarize

    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    where = _filter(None, None, None, since, None)
    summary = summarize(state.audit_log().events(where))
    if out.mode.value != "human":
        out.result(summary)
        return
    out.line(
        f"{summary.events} events; {summary.failed_authentications} failed authentications, "
        f"{summary.permission_denials} permission denials, "
        f"{summary.rate_limit_hits} rate-limit hits"
    )
    for title, rows in (
        ("BY TYPE", summary.by_type),
        ("BY OUTCOME", summary.by_outcome),
        ("TOP SUBJECTS (denied)", summary.top_subjects),
        ("TOP CLIENTS (denied)", summary.top_clients),
    ):
        if rows:
            out.line()
            out.table((title, "COUNT"), [(escape_unprintable(r.name), str(r.count)) for r in rows])
    if summary.flags:
        out.line()
        out.table(
            ("FLAG", "WHO", "DETAIL"),
            [(f.kind, escape_unprintable(f.who), f.detail) for f in summary.flags],
        )


def _filter(
    types: list[str] | None,
    subject: str | None,
    outcome: str | None,
    since: str | None,
    until: str | None,
) -> EventFilter:
    from mcpsec.core.audit import EventFilter, parse_moment, parse_outcome

    now = time.time()
    return EventFilter(
        tuple(types or ()),
        subject,
        parse_outcome(outcome) if outcome else None,
        parse_moment(since, now) if since else None,
        parse_moment(until, now) if until else None,
    )


def _line(event: AuditEvent) -> str:
    """One event per line, journalctl-like; the values are escaped (they may be hostile)."""
    parts = [event.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), event.type, event.outcome]
    for name in ("actor", "subject", "key_id", "jti", "reason", "client", "tool", "request_id"):
        value = getattr(event, name)
        if value:
            parts.append(f"{name}={value}")
    if event.credential:
        parts.append(f"credential={event.credential}")
    if event.details:
        parts.append(json.dumps(event.details, sort_keys=True, separators=(",", ":")))
    return escape_unprintable(" ".join(parts))


def _line_json(event: AuditEvent) -> str:
    return json.dumps(jsonable(event), separators=(",", ":"), sort_keys=False)
