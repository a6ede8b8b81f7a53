"""`audit report`, `--since`/`--until` and `audit export` as pure functions over events."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import count
from typing import Any

import pytest
from mcpsec.core.audit import EVENT_FIELDS, AuditEvent, parse_moment
from mcpsec.core.audit_export import COLUMNS, write_events
from mcpsec.core.audit_report import AuditReport, Count, Flag, summarize
from mcpsec.core.clock import to_datetime
from mcpsec.core.errors import InvalidInputError

T0 = 1_800_000_000.0
_ids = count(1)


def event(type: str, outcome: str = "denied", *, at: float = T0, **fields: Any) -> AuditEvent:
    n = next(_ids)
    return AuditEvent(str(n), n, to_datetime(at), type, outcome, **fields)


def counts(rows: Iterable[Count]) -> dict[str, int]:
    return {row.name: row.count for row in rows}


def flags_of(report: AuditReport, kind: str) -> list[Flag]:
    return [f for f in report.flags if f.kind == kind]


# -- counting ------------------------------------------------------------------------------


def mixed_window() -> list[AuditEvent]:
    return [
        event("key.created", "allowed", subject="bob", key_id="K1"),
        event("key.verified", "allowed", subject="bob", key_id="K1"),
        event("key.verified", "denied", reason="malformed", credential="c0ffee"),
        event("key.verified", "denied", subject="bob", key_id="K1", reason="revoked"),
        event("token.verified", "denied", subject="alice", jti="j1", reason="expired"),
        event("token.verified", "allowed", subject="alice", jti="j2"),
        event("token.refreshed", "denied", reason="bad_signature", client="10.0.0.9"),
        event("key.verified", subject="carol", key_id="K2", reason="insufficient_permission"),
        event("authz.checked", "denied", subject="dave", reason="expired"),
        event("rate.limited", "denied", subject="alice", reason="no tokens left"),
        event("rate.limited", "denied", subject="alice", reason="no tokens left"),
        event("key.revoked", "error", key_id="K3", reason="the store is down"),
        event("rate.reset", "allowed", subject="alice"),
    ]


def test_counts_by_type_and_outcome() -> None:
    report = summarize(mixed_window())
    assert report.events == 13
    assert counts(report.by_type) == {
        "key.created": 1,
        "key.verified": 4,
        "token.verified": 2,
        "token.refreshed": 1,
        "authz.checked": 1,
        "rate.limited": 2,
        "key.revoked": 1,
        "rate.reset": 1,
    }
    assert counts(report.by_outcome) == {"allowed": 4, "denied": 8, "error": 1}
    assert report.by_type[0] == Count("key.verified", 4)  # most first


def test_failures_denials_and_rate_limit_hits() -> None:
    report = summarize(mixed_window())
    # denied key.verified, token.verified and token.refreshed, but not the verdict that was
    # only insufficient_permission: that principal did authenticate
    assert report.failed_authentications == 4
    # the insufficient_permission verdict; the authz check that repeats it is not counted twice
    assert report.permission_denials == 1
    assert report.rate_limit_hits == 2


def test_allowed_and_error_events_are_no_failures() -> None:
    report = summarize(
        [
            event("key.verified", "allowed", subject="bob", key_id="K1"),
            event("token.verified", "allowed", subject="bob"),
            event("authz.checked", "allowed", subject="bob"),
            event("key.revoked", "error", subject="bob", reason="insufficient_permission"),
        ]
    )
    assert (report.failed_authentications, report.permission_denials) == (0, 0)
    assert report.rate_limit_hits == 0
    assert (report.top_subjects, report.top_clients, report.flags) == ((), (), ())


def test_a_replayed_refresh_token_is_a_failed_authentication() -> None:
    report = summarize([event("token.reuse_detected", subject="alice", jti="j1")])
    assert report.failed_authentications == 1


def test_top_subjects_and_clients_count_denied_events_most_first() -> None:
    events = [event("key.verified", "allowed", subject="friendly") for _ in range(20)]
    events += [event("key.verified", subject="alice", client="10.0.0.1") for _ in range(3)]
    events += [event("token.verified", subject="bob", client="10.0.0.2") for _ in range(5)]
    events += [event("rate.limited", subject="bob")]
    events += [event("key.verified", client="10.0.0.3", reason="malformed")]
    report = summarize(events)
    assert report.top_subjects == (Count("bob", 6), Count("alice", 3))
    assert report.top_clients == (Count("10.0.0.2", 5), Count("10.0.0.1", 3), Count("10.0.0.3", 1))


def test_top_lists_are_capped_at_ten() -> None:
    events = [event("key.verified", subject=f"s{n:02}") for n in range(12) for _ in range(n + 1)]
    report = summarize(events)
    assert len(report.top_subjects) == 10
    assert [c.name for c in report.top_subjects] == [f"s{n:02}" for n in range(11, 1, -1)]


def test_an_empty_window() -> None:
    report = summarize([])
    assert report.events == 0 and report.by_type == () and report.flags == ()


# -- flags ----------------------------------------------------------------------------------


def failures(n: int, every: float, **fields: Any) -> list[AuditEvent]:
    return [event("key.verified", at=T0 + i * every, reason="revoked", **fields) for i in range(n)]


def test_ten_failures_within_a_minute_from_one_subject_are_a_burst() -> None:
    report = summarize(failures(10, 5.0, subject="eve"))
    assert report.flags == (Flag("failure_burst", "subject eve", "10 failures within 60s"),)


def test_ten_failures_within_exactly_sixty_seconds_are_a_burst() -> None:
    assert flags_of(summarize(failures(10, 60 / 9, subject="eve")), "failure_burst")


def test_nine_failures_are_no_burst() -> None:
    assert summarize(failures(9, 1.0, subject="eve")).flags == ()


def test_ten_failures_spread_over_more_than_a_minute_are_no_burst() -> None:
    assert summarize(failures(10, 7.0, subject="eve")).flags == ()  # 63 s first to last
    # ... and over a long quiet stretch: 5 early, 5 much later
    spread = failures(5, 1.0, subject="eve") + [
        event("key.verified", at=T0 + 600 + i, subject="eve") for i in range(5)
    ]
    assert summarize(spread).flags == ()


def test_a_burst_is_noticed_within_a_longer_slow_stream() -> None:
    slow = failures(20, 30.0, subject="eve")  # never ten in a minute
    fast = [event("token.verified", at=T0 + 2000 + i, subject="eve") for i in range(10)]
    report = summarize(slow + fast)
    assert [f.who for f in flags_of(report, "failure_burst")] == ["subject eve"]


def test_a_burst_from_one_client_address() -> None:
    events = [
        event("key.verified", at=T0 + i, client="203.0.113.7", reason="malformed")
        for i in range(10)
    ]
    assert [f.who for f in summarize(events).flags] == ["client 203.0.113.7"]


def test_failures_from_many_subjects_are_no_burst() -> None:
    events = [event("key.verified", at=T0 + i, subject=f"user{i}") for i in range(30)]
    assert summarize(events).flags == ()


def test_allowed_events_are_no_burst() -> None:
    events = [event("key.verified", "allowed", at=T0 + i, subject="eve") for i in range(30)]
    assert summarize(events).flags == ()


def test_one_key_from_five_addresses_is_flagged() -> None:
    events = [
        event("key.verified", "allowed", at=T0 + i, key_id="K1", client=f"198.51.100.{i}")
        for i in range(5)
    ]
    events += [event("key.verified", "allowed", key_id="K2", client="198.51.100.1")] * 3
    report = summarize(events)
    assert report.flags == (Flag("key_many_addresses", "key K1", "used from 5 addresses"),)


def test_one_key_from_four_addresses_or_one_address_many_times_is_not() -> None:
    four = [
        event("key.verified", "allowed", key_id="K1", client=f"198.51.100.{i % 4}")
        for i in range(40)
    ]
    assert summarize(four).flags == ()
    no_client = [event("key.verified", "allowed", key_id="K1") for _ in range(10)]
    assert summarize(no_client).flags == ()


# -- parse_moment ---------------------------------------------------------------------------

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "ago"),
    [("1h", 3600), ("90m", 5400), ("7d", 604800), ("1h30m", 5400), (" 2h ", 7200), ("30s", 30)],
)
def test_a_duration_is_that_long_ago(text: str, ago: float) -> None:
    assert parse_moment(text, NOW) == pytest.approx(NOW - ago)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-11-22T10:00:00", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("2026-11-22T10:00", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("2026-11-22 10:00:00", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("2026-11-22", datetime(2026, 11, 22, tzinfo=UTC)),
        ("2026-11-22T10:00:00Z", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("2026-11-22T10:00:00.250Z", datetime(2026, 11, 22, 10, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-22T10:00:00+00:00", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("2026-11-22T12:00:00+02:00", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("2026-11-22T05:30:00-04:30", datetime(2026, 11, 22, 10, tzinfo=UTC)),
    ],
)
def test_an_iso_time_is_utc_unless_it_names_a_zone(text: str, moment: datetime) -> None:
    assert parse_moment(text, NOW) == moment.timestamp()


@pytest.mark.parametrize(
    "text",
    ["", "   ", "yesterday", "10", "1700000000", "-1h", "0s", "1h ago", "2026-13-01",
     "2026-11-22T25:00", "now"],
)  # fmt: skip
def test_garbage_is_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_moment(text, NOW)
    assert caught.value.field == "time"
    assert "duration" in caught.value.message and "ISO" in caught.value.message


# -- export ---------------------------------------------------------------------------------


def export(events: Iterable[AuditEvent], fmt: str) -> tuple[int, list[str]]:
    lines: list[str] = []
    written = write_events(events, fmt, None, lines.append)
    return written, lines


def csv_rows(lines: list[str]) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("\n".join(lines) + "\n")))


HOSTILE = {
    "subject": '=HYPERLINK("http://evil","x")',
    "reason": "+1+cmd|' /C calc'!A0",
    "client": "-2+3",
    "tool": "@SUM(A1:A9)",
    "request_id": "\tpadded",
}


@pytest.mark.parametrize(("name", "value"), HOSTILE.items(), ids=HOSTILE.keys())
def test_csv_cells_that_a_spreadsheet_would_run_are_quoted_as_text(name: str, value: str) -> None:
    fields: dict[str, Any] = {name: value}
    written, lines = export([event("key.verified", **fields)], "csv")
    assert written == 1
    (row,) = csv_rows(lines)
    assert row[name] == "'" + value
    assert row["type"] == "key.verified" and row["outcome"] == "denied"


@pytest.mark.parametrize("value", ["alice\nforged", "alice\r9", "\r=1"])
def test_csv_cells_with_line_breaks_stay_in_their_row(value: str) -> None:
    events = [event("key.verified", subject=value), event("rate.reset", "allowed")]
    written, lines = export(events, "csv")
    assert written == 2
    rows = csv_rows(lines)
    assert [r["type"] for r in rows] == ["key.verified", "rate.reset"]
    assert rows[0]["subject"].removeprefix("'") == value


def test_csv_has_a_header_and_one_row_per_event_with_plain_values_untouched() -> None:
    events = [
        event("key.verified", subject="alice", key_id="4fJq8Lw2Xc9a", details={"n": 1}),
        event("rate.limited", subject='a, b "quoted"\nnext', reason="no tokens left"),
        event("key.verified", subject="=x", reason="revoked"),
    ]
    written, lines = export(events, "csv")
    assert written == 3
    assert lines[0] == ",".join(COLUMNS)
    assert list(COLUMNS[3:]) == list(EVENT_FIELDS)
    rows = csv_rows(lines)
    assert [r["id"] for r in rows] == [e.id for e in events]
    assert [r["seq"] for r in rows] == [str(e.seq) for e in events]
    assert rows[0]["subject"] == "alice" and rows[0]["key_id"] == "4fJq8Lw2Xc9a"
    assert json.loads(rows[0]["details"]) == {"n": 1}
    assert rows[0]["jti"] == "" and rows[0]["time"] == events[0].time.isoformat()
    assert rows[1]["subject"] == 'a, b "quoted"\nnext'
    assert rows[2]["subject"] == "'=x"


def test_jsonl_keeps_values_as_they_are() -> None:
    events = [event("key.verified", subject="=x", details={"permission": "files:read"})]
    written, lines = export(events, "jsonl")
    assert written == 1
    document = json.loads(lines[0])
    assert document["subject"] == "=x"
    assert document["details"] == {"permission": "files:read"}
    assert (document["id"], document["seq"]) == (events[0].id, events[0].seq)
    assert document["type"] == "key.verified"
    assert "jti" not in document  # empty fields are left out


def test_an_empty_export_is_a_header_only() -> None:
    assert export([], "csv") == (0, [",".join(COLUMNS)])
    assert export([], "jsonl") == (0, [])
