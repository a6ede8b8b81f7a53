"""`mcpsec audit` and the events every command leaves behind: one test per event type, what
`tail` filters, `verify` catching an edited file, `hash`, `export`, `report`, a log that
never holds a secret, and what happens when an event cannot be recorded."""

from __future__ import annotations

import csv
import getpass
import io
import json
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
from mcpsec.core.audit import AuditLog, Outcome
from mcpsec.core.audit_export import COLUMNS
from mcpsec.core.key_format import (
    SECRET_LENGTH,
    KeyParts,
    format_key,
    parse_key,
    random_base62,
)

from tests.support.cli import Cli, Ran
from tests.support.redis_servers import free_port

ACTOR = getpass.getuser()
AUDIT_FIELDS = {
    "id",
    "seq",
    "time",
    "type",
    "outcome",
    "actor",
    "subject",
    "key_id",
    "jti",
    "reason",
    "client",
    "tool",
    "request_id",
    "credential",
    "details",
}


class Runner(Protocol):
    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> Ran: ...


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def configured(mcpsec: Runner) -> Runner:
    """`mcpsec config init`: a JWT secret and an audit key next to the config."""
    ran = mcpsec("config", "init")
    assert ran.exit_code == 0, ran.stderr
    return mcpsec


def db_path(home: Path) -> Path:
    return home / "data" / "mcpsec" / "mcpsec.db"


def ok(ran: Ran) -> Ran:
    assert ran.exit_code == 0, (ran.stdout, ran.stderr)
    return ran


def events(mcpsec: Runner, *args: str) -> list[dict[str, Any]]:
    """The log as `audit tail --json` prints it, oldest first."""
    ran = ok(mcpsec("audit", "tail", "--json", "-n", "1000", *args))
    assert ran.stderr == ""
    found = [json.loads(line) for line in ran.stdout.splitlines()]
    for event in found:
        assert set(event) == AUDIT_FIELDS
    return found


def of_type(mcpsec: Runner, type: str) -> list[dict[str, Any]]:
    return [e for e in events(mcpsec, "-n", "50") if e["type"] == type]


def last_of(mcpsec: Runner, type: str) -> dict[str, Any]:
    found = of_type(mcpsec, type)
    assert found, f"no {type} event"
    event = found[-1]
    assert event["actor"] == ACTOR
    return event


def create_key(mcpsec: Runner, *args: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(ok(mcpsec("keys", "create", "--json", *args)).stdout)
    return doc


def mint(mcpsec: Runner, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    ran = ok(mcpsec("token", "mint", "--json", *args, env=env))
    doc: dict[str, Any] = json.loads(ran.stdout)
    return doc


def refresh(mcpsec: Runner, token: str, env: dict[str, str] | None = None) -> Ran:
    return mcpsec("token", "refresh", "--json", "-", input=token + "\n", env=env)


def one_error_line(ran: Ran) -> bool:
    return (
        ran.stderr.count("\n") == 1
        and ran.stderr.startswith("mcpsec: error: ")
        and "Traceback" not in ran.stderr
    )


def tamper(home: Path, seq: int, old: str, new: str) -> None:
    with closing(sqlite3.connect(db_path(home), isolation_level=None)) as db:
        (data,) = db.execute("SELECT data FROM log WHERE seq = ?", (seq,)).fetchone()
        assert old in data
        db.execute("UPDATE log SET data = ? WHERE seq = ?", (data.replace(old, new), seq))


# -- one test per event type -------------------------------------------------------------


def test_key_created(mcpsec: Runner) -> None:
    doc = create_key(mcpsec, "--name", "ci-bot", "--owner", "bob", "--role", "user")
    event = last_of(mcpsec, "key.created")
    assert (event["outcome"], event["subject"], event["key_id"]) == (
        "allowed",
        "bob",
        doc["key_id"],
    )
    assert event["details"] == {"name": "ci-bot", "roles": ["user"], "rotated_from": None}
    assert event["seq"] == 1 and event["credential"] is None


def test_key_verified_allowed(mcpsec: Runner) -> None:
    doc = create_key(mcpsec, "--name", "bot", "--owner", "bob")
    ok(mcpsec("keys", "verify", "-", input=doc["api_key"] + "\n"))
    event = last_of(mcpsec, "key.verified")
    assert (event["outcome"], event["key_id"], event["subject"]) == (
        "allowed",
        doc["key_id"],
        "bob",
    )
    assert event["reason"] is None and event["credential"] is None


@pytest.mark.parametrize("reason", ["revoked", "insufficient_permission", "invalid"])
def test_key_verified_denied_with_its_reason(mcpsec: Runner, reason: str) -> None:
    doc = create_key(mcpsec, "--name", "bot", "--owner", "bob", "--role", "guest")
    args: list[str] = []
    key = doc["api_key"]
    if reason == "revoked":
        ok(mcpsec("keys", "revoke", doc["key_id"]))
    elif reason == "insufficient_permission":
        args = ["--permission", "files:write"]
    else:  # the right key id and a valid checksum, but not its secret
        parts = parse_key(key)
        key = format_key(KeyParts(parts.prefix, parts.key_id, random_base62(SECRET_LENGTH)))
    ran = mcpsec("keys", "verify", "--json", *args, "-", input=key + "\n")
    assert ran.exit_code == 1
    event = last_of(mcpsec, "key.verified")
    assert (event["outcome"], event["key_id"]) == ("denied", doc["key_id"])
    assert event["reason"] == json.loads(ran.stdout)["reason"]
    if reason != "invalid":
        assert event["reason"] == reason
    if args:
        assert event["details"] == {"permission": "files:write"}


def test_a_malformed_key_is_recorded_by_its_keyed_hash(mcpsec: Runner) -> None:
    malformed = "mcp_notakey_" + "x" * 40
    ran = mcpsec("keys", "verify", "--json", "-", input=malformed + "\n")
    assert ran.exit_code == 1 and json.loads(ran.stdout)["reason"] == "malformed"
    event = last_of(mcpsec, "key.verified")
    assert (event["outcome"], event["reason"], event["key_id"]) == ("denied", "malformed", None)
    assert event["credential"] and malformed not in json.dumps(event)

    hashed = ok(mcpsec("audit", "hash", "-", input=malformed + "\n")).stdout.strip()
    assert hashed == event["credential"]
    assert ok(mcpsec("audit", "hash", malformed)).stdout.strip() == hashed
    assert ok(mcpsec("audit", "hash", malformed + "y")).stdout.strip() != hashed
    found = events(mcpsec, "--type", "key.verified")
    assert [e["credential"] for e in found] == [hashed]


def test_key_revoked(mcpsec: Runner) -> None:
    doc = create_key(mcpsec, "--name", "bot")
    ok(mcpsec("keys", "revoke", doc["key_id"], "--reason", "leaked"))
    event = last_of(mcpsec, "key.revoked")
    assert (event["outcome"], event["key_id"], event["reason"]) == (
        "allowed",
        doc["key_id"],
        "leaked",
    )


def test_key_revoked_by_owner(mcpsec: Runner) -> None:
    for name in ("a", "b"):
        create_key(mcpsec, "--name", name, "--owner", "bob")
    ok(mcpsec("keys", "revoke", "--owner", "bob", "--reason", "left"))
    event = last_of(mcpsec, "key.revoked")
    assert (event["outcome"], event["subject"], event["reason"]) == ("allowed", "bob", "left")
    assert event["key_id"] is None
    assert len(of_type(mcpsec, "key.revoked")) == 1  # one event for the whole owner


def test_key_rotated(mcpsec: Runner) -> None:
    doc = create_key(mcpsec, "--name", "bot", "--owner", "bob")
    rotated = json.loads(ok(mcpsec("keys", "rotate", doc["key_id"], "--json")).stdout)
    event = last_of(mcpsec, "key.rotated")
    assert (event["outcome"], event["key_id"]) == ("allowed", doc["key_id"])
    assert "grace" in event["details"]
    successor = last_of(mcpsec, "key.created")
    assert successor["key_id"] == rotated["key_id"] != doc["key_id"]
    assert successor["details"]["rotated_from"] == doc["key_id"]
    assert successor["seq"] == event["seq"] + 1


def test_key_updated(mcpsec: Runner) -> None:
    doc = create_key(mcpsec, "--name", "bot")
    ok(mcpsec("keys", "update", doc["key_id"], "--name", "renamed"))
    event = last_of(mcpsec, "key.updated")
    assert (event["outcome"], event["key_id"]) == ("allowed", doc["key_id"])
    assert event["details"]["name"] == "renamed"


def test_token_minted(configured: Runner) -> None:
    minted = mint(configured, "--subject", "alice", "--role", "user")
    event = last_of(configured, "token.minted")
    assert (event["outcome"], event["subject"], event["jti"]) == ("allowed", "alice", minted["jti"])
    assert event["details"]["roles"] == ["user"]


def test_token_verified_allowed_and_denied(configured: Runner) -> None:
    minted = mint(configured, "--subject", "alice")
    ok(configured("token", "verify", "-", input=minted["access_token"] + "\n"))
    allowed = last_of(configured, "token.verified")
    assert (allowed["outcome"], allowed["subject"], allowed["jti"], allowed["reason"]) == (
        "allowed",
        "alice",
        minted["jti"],
        None,
    )
    ok(configured("token", "revoke", "--jti", minted["jti"]))
    ran = configured("token", "verify", "-", input=minted["access_token"] + "\n")
    assert ran.exit_code == 1
    denied = last_of(configured, "token.verified")
    assert (denied["outcome"], denied["reason"], denied["jti"]) == (
        "denied",
        "revoked",
        minted["jti"],
    )
    assert denied["seq"] > allowed["seq"]


def test_a_malformed_token_is_recorded_by_its_keyed_hash(configured: Runner) -> None:
    garbage = "not.a.jwt"
    assert configured("token", "verify", "-", input=garbage + "\n").exit_code == 1
    event = last_of(configured, "token.verified")
    assert (event["outcome"], event["reason"], event["jti"]) == ("denied", "malformed", None)
    hashed = ok(configured("audit", "hash", "-", input=garbage + "\n")).stdout.strip()
    assert event["credential"] == hashed


@pytest.mark.parametrize("by", ["token", "jti", "subject"])
def test_token_revoked(configured: Runner, by: str) -> None:
    minted = mint(configured, "--subject", "alice")
    args = {
        "token": ["-"],
        "jti": ["--jti", minted["jti"]],
        "subject": ["--subject", "alice"],
    }[by]
    ok(configured("token", "revoke", *args, input=minted["access_token"] + "\n"))
    event = last_of(configured, "token.revoked")
    assert event["outcome"] == "allowed" and event["details"] == {"by": by}
    if by == "subject":
        assert (event["subject"], event["jti"]) == ("alice", None)
    else:
        assert event["jti"] == minted["jti"]


def test_token_refreshed(configured: Runner) -> None:
    minted = mint(configured, "--subject", "alice")
    pair = json.loads(ok(refresh(configured, minted["refresh_token"])).stdout)
    event = last_of(configured, "token.refreshed")
    assert (event["outcome"], event["subject"], event["jti"]) == ("allowed", "alice", pair["jti"])
    assert event["details"]["refreshed"] not in (None, pair["jti"])
    # An access token presented for refresh is denied, by its keyed hash.
    assert refresh(configured, minted["access_token"]).exit_code == 1
    denied = last_of(configured, "token.refreshed")
    assert (denied["outcome"], denied["reason"]) == ("denied", "wrong_type")
    hashed = ok(configured("audit", "hash", minted["access_token"])).stdout.strip()
    assert denied["credential"] == hashed


def test_token_reuse_detected(configured: Runner) -> None:
    env = {"MCPSEC_JWT_REUSE_LEEWAY": "0s"}
    minted = mint(configured, "--subject", "alice", env=env)
    ok(refresh(configured, minted["refresh_token"], env=env))
    again = refresh(configured, minted["refresh_token"], env=env)
    assert again.exit_code == 1 and json.loads(again.stdout)["reason"] == "reuse_detected"
    event = last_of(configured, "token.reuse_detected")
    assert (event["outcome"], event["subject"]) == ("denied", "alice")
    assert event["jti"] and event["details"]["family"]


def test_authz_checked(configured: Runner) -> None:
    key = create_key(configured, "--name", "bot", "--owner", "bob", "--role", "user")
    ok(configured("authz", "check", "-p", "files:read", "-", input=key["api_key"] + "\n"))
    allowed = last_of(configured, "authz.checked")
    assert (allowed["outcome"], allowed["subject"]) == ("allowed", "bob")
    assert allowed["details"] == {"permission": "files:read", "credential": "key"}

    token = mint(configured, "--subject", "alice", "--role", "user")["access_token"]
    denied_run = configured("authz", "check", "-p", "files:write", "-", input=token + "\n")
    assert denied_run.exit_code == 1
    denied = last_of(configured, "authz.checked")
    assert (denied["outcome"], denied["reason"]) == ("denied", "insufficient_permission")
    assert denied["details"] == {"permission": "files:write", "credential": "token"}


def test_rate_limited(mcpsec: Runner) -> None:
    limit = ("--capacity", "1", "--refill", "0")
    ok(mcpsec("rate", "check", "alice", *limit))
    assert of_type(mcpsec, "rate.limited") == []  # an allowed request is no event here
    assert mcpsec("rate", "check", "alice", *limit).exit_code == 1
    event = last_of(mcpsec, "rate.limited")
    assert (event["outcome"], event["subject"]) == ("denied", "alice")
    assert event["details"]["limit"] == 1 and event["details"]["cost"] == 1


def test_rate_reset(mcpsec: Runner) -> None:
    ok(mcpsec("rate", "reset", "alice"))
    event = last_of(mcpsec, "rate.reset")
    assert (event["outcome"], event["subject"]) == ("allowed", "alice")
    ok(mcpsec("rate", "reset", "--match", "bot-*", "--yes"))
    matched = last_of(mcpsec, "rate.reset")
    assert matched["subject"] is None and matched["details"] == {"match": "bot-*"}


def test_rate_override_set_and_unset(mcpsec: Runner) -> None:
    ok(mcpsec("rate", "override", "set", "ci-bot", "--capacity", "5", "--refill", "0.5"))
    event = last_of(mcpsec, "rate.override_set")
    assert (event["outcome"], event["subject"]) == ("allowed", "ci-bot")
    assert event["details"] == {"capacity": 5.0, "refill": 0.5, "ttl": None}
    ok(mcpsec("rate", "override", "unset", "ci-bot"))
    gone = last_of(mcpsec, "rate.override_unset")
    assert (gone["outcome"], gone["subject"]) == ("allowed", "ci-bot")
    # Unsetting what is not there changes nothing: no event.
    assert mcpsec("rate", "override", "unset", "ci-bot").exit_code == 3
    assert len(of_type(mcpsec, "rate.override_unset")) == 1


def test_a_failed_change_leaves_an_error_event(mcpsec: Runner) -> None:
    ran = mcpsec("keys", "rotate", "AAAAAAAAAAAA")
    assert ran.exit_code == 3
    attempted, failed = of_type(mcpsec, "key.rotated")
    assert attempted["outcome"] == "allowed" and failed["outcome"] == "error"
    assert failed["key_id"] == "AAAAAAAAAAAA" and "no API key" in failed["reason"]


# -- verify ------------------------------------------------------------------------------


def busy_log(mcpsec: Runner) -> int:
    doc = create_key(mcpsec, "--name", "bot", "--owner", "bob")
    ok(mcpsec("keys", "verify", doc["api_key"]))
    ok(mcpsec("keys", "revoke", doc["key_id"]))
    assert mcpsec("keys", "verify", doc["api_key"]).exit_code == 1
    return len(events(mcpsec))


def test_verify_an_intact_log(mcpsec: Runner) -> None:
    total = busy_log(mcpsec)
    assert total == 4
    ran = ok(mcpsec("audit", "verify"))
    assert ran.stdout == f"{total}/{total} events valid\n"
    doc = json.loads(ok(mcpsec("audit", "verify", "--json")).stdout)
    assert doc == {"total": 4, "valid": 4, "trimmed": 0, "problem": None, "event_id": None}


def test_verify_since_counts_the_window_only(mcpsec: Runner) -> None:
    busy_log(mcpsec)
    assert ok(mcpsec("audit", "verify", "--since", "1h")).stdout == "4/4 events valid\n"
    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert ok(mcpsec("audit", "verify", "--since", future)).stdout == "0/0 events valid\n"


def test_verify_an_edited_sqlite_file_exits_1(mcpsec: Runner, home: Path) -> None:
    busy_log(mcpsec)
    tamper(home, 3, '"outcome":"allowed"', '"outcome":"denied"')
    ran = mcpsec("audit", "verify")
    assert ran.exit_code == 1
    assert ran.stdout.splitlines()[0] == "2/3 events valid"
    assert "event 3:" in ran.stdout and "MAC" in ran.stdout
    doc = json.loads(mcpsec("audit", "verify", "--json").stdout)
    assert (doc["valid"], doc["event_id"]) == (2, "3") and doc["problem"]


def test_verify_a_deleted_row_exits_1(mcpsec: Runner, home: Path) -> None:
    busy_log(mcpsec)
    with closing(sqlite3.connect(db_path(home), isolation_level=None)) as db:
        db.execute("DELETE FROM log WHERE seq = 2")
    ran = mcpsec("audit", "verify", "--json")
    assert ran.exit_code == 1
    doc = json.loads(ran.stdout)
    assert doc["event_id"] == "3" and "missing" in doc["problem"]


def test_verify_with_another_audit_key_exits_1(mcpsec: Runner) -> None:
    busy_log(mcpsec)
    ran = mcpsec("audit", "verify", env={"MCPSEC_AUDIT_KEY": "k" * 48})
    assert ran.exit_code == 1 and ran.stdout.startswith("0/1 events valid")


# -- tail and its filters ----------------------------------------------------------------


@pytest.fixture
def varied(configured: Runner) -> Runner:
    """A log of 8 events: config init; key created, verified (allowed, denied, malformed);
    rate limited, reset, override set."""
    doc = create_key(configured, "--name", "bot", "--owner", "bob", "--role", "guest")
    ok(configured("keys", "verify", doc["api_key"]))
    assert configured("keys", "verify", "-p", "files:write", doc["api_key"]).exit_code == 1
    assert configured("keys", "verify", "mcp_garbage").exit_code == 1
    limit = ("--capacity", "1", "--refill", "0")
    ok(configured("rate", "check", "alice", *limit))
    assert configured("rate", "check", "alice", *limit).exit_code == 1
    ok(configured("rate", "reset", "alice"))
    ok(configured("rate", "override", "set", "bob", "--capacity", "5", "--refill", "1"))
    assert len(events(configured)) == 8
    return configured


def test_tail_shows_the_newest_oldest_first(varied: Runner) -> None:
    everything = events(varied)
    assert [e["seq"] for e in everything] == list(range(1, 9))
    assert events(varied, "-n", "3") == everything[-3:]
    assert len(ok(varied("audit", "tail")).stdout.splitlines()) == 8  # default 10
    human = ok(varied("audit", "tail", "-n", "2")).stdout.splitlines()
    assert len(human) == 2
    assert " rate.reset allowed " in human[0] and "subject=alice" in human[0]
    assert f"actor={ACTOR}" in human[1]


def test_tail_by_type(varied: Runner) -> None:
    found = events(varied, "--type", "key.verified")
    assert [e["type"] for e in found] == ["key.verified"] * 3
    two = events(varied, "--type", "rate.limited", "-t", "rate.reset")
    assert [e["type"] for e in two] == ["rate.limited", "rate.reset"]
    assert events(varied, "--type", "no.such") == []
    assert len(events(varied, "--type", "key.verified", "-n", "2")) == 2


def test_tail_by_subject(varied: Runner) -> None:
    found = events(varied, "--subject", "bob")
    assert [e["type"] for e in found] == [
        "key.created",
        "key.verified",
        "key.verified",
        "rate.override_set",
    ]
    assert {e["subject"] for e in events(varied, "--subject", "alice")} == {"alice"}


def test_tail_by_outcome(varied: Runner) -> None:
    denied = events(varied, "--outcome", "denied")
    assert [(e["type"], e["reason"]) for e in denied] == [
        ("key.verified", "insufficient_permission"),
        ("key.verified", "malformed"),
        ("rate.limited", "quota spent"),
    ]
    assert events(varied, "--outcome", "DENIED") == denied
    assert len(events(varied, "--outcome", "allowed")) == 5
    assert events(varied, "--outcome", "error") == []
    both = events(varied, "--outcome", "denied", "--subject", "bob", "--type", "key.verified")
    assert [e["reason"] for e in both] == ["insufficient_permission"]


def test_tail_since_and_until(varied: Runner) -> None:
    everything = events(varied)
    assert events(varied, "--since", "1h") == everything
    past = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert events(varied, "--since", past) == everything
    assert events(varied, "--since", past + "Z") == everything
    assert events(varied, "--since", future) == []
    assert events(varied, "--until", past) == []
    assert events(varied, "--until", future) == everything
    middle = everything[4]["time"]
    assert events(varied, "--since", middle) == everything[4:]
    assert events(varied, "--until", middle) == everything[:5]


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (["--outcome", "maybe"], "outcome"),
        (["--since", "yesterday-ish"], "yesterday-ish"),
        (["--since", "-1h"], "-1h"),
        (["--until", "soon"], "soon"),
        (["-n", "0"], "-n"),
        (["-n", "100001"], "-n"),
    ],
)
def test_tail_bad_input_is_a_usage_error(varied: Runner, args: list[str], word: str) -> None:
    ran = varied("audit", "tail", *args)
    assert ran.exit_code == 2 and one_error_line(ran) and word in ran.stderr
    assert ran.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "--since", "soon"],
        ["export", "--since", "1h", "--format", "xml"],
        ["export", "--since", "later"],
        ["export"],
        ["report", "--since", "soon"],
    ],
)
def test_other_bad_input_is_a_usage_error(varied: Runner, args: list[str]) -> None:
    ran = varied("audit", *args)
    assert ran.exit_code == 2, (ran.stdout, ran.stderr)
    assert ran.stdout == ""


def test_tail_follow_misses_nothing_appended_as_it_starts(
    mcpsec: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(mcpsec("rate", "reset", "first"))
    original_last, original_follow = AuditLog.last, AuditLog.follow
    writers: list[threading.Thread] = []

    def last(self: AuditLog, count: int, where: Any = None) -> Any:
        shown = original_last(self, count, where)
        # Another process appends right after the newest were read ...
        self.record("rate.reset", Outcome.ALLOWED, subject="in-between")
        # ... and one more a moment later, once following has surely begun.
        fields = {"subject": "later"}
        later = threading.Timer(0.5, self.record, ("rate.reset", Outcome.ALLOWED), fields)
        later.start()
        writers.append(later)
        return shown

    def follow(self: AuditLog, where: Any = None, **kwargs: Any) -> Iterator[Any]:
        for event in original_follow(self, where, **kwargs):
            yield event
            if event.subject == "later":
                raise KeyboardInterrupt  # Ctrl-C

    monkeypatch.setattr(AuditLog, "last", last)
    monkeypatch.setattr(AuditLog, "follow", follow)
    ran = ok(mcpsec("audit", "tail", "-f", "--json"))
    for writer in writers:
        writer.join(timeout=10)
    subjects = [json.loads(line)["subject"] for line in ran.stdout.splitlines()]
    assert subjects == ["first", "in-between", "later"]


# -- export ------------------------------------------------------------------------------


def test_export_csv_has_a_header_and_one_row_per_event(varied: Runner) -> None:
    everything = events(varied)
    ran = ok(varied("audit", "export", "--since", "1h", "--format", "csv"))
    lines = ran.stdout.splitlines()
    assert lines[0] == ",".join(COLUMNS)
    rows = list(csv.DictReader(io.StringIO(ran.stdout)))
    assert len(rows) == len(everything) == 8
    assert [r["id"] for r in rows] == [e["id"] for e in everything]
    assert [r["type"] for r in rows] == [e["type"] for e in everything]
    assert rows[1]["subject"] == "bob" and rows[1]["actor"] == ACTOR


def test_export_jsonl_to_a_private_file(varied: Runner, home: Path) -> None:
    out = home / "audit.jsonl"
    ran = ok(varied("audit", "export", "--since", "1h", "--format", "jsonl", "--output", str(out)))
    assert ran.stdout == "" and "wrote 8 event(s)" in ran.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    documents = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["id"] for d in documents] == [e["id"] for e in events(varied)]
    window = ok(varied("audit", "export", "--since", "1h", "--until", "2000-01-01")).stdout
    assert window == ""


def test_export_over_an_existing_file_makes_it_private(varied: Runner, home: Path) -> None:
    out = home / "audit.jsonl"
    out.write_text("old\n")
    out.chmod(0o644)
    ok(varied("audit", "export", "--since", "1h", "--output", str(out)))
    assert "old" not in out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


# -- report ------------------------------------------------------------------------------


def test_report_counts_failures_and_rate_limit_hits(varied: Runner) -> None:
    doc = json.loads(ok(varied("audit", "report", "--json")).stdout)
    assert doc["events"] == 8
    assert doc["failed_authentications"] == 1  # the malformed key (a permission denial is not)
    assert doc["permission_denials"] == 1
    assert doc["rate_limit_hits"] == 1
    assert {c["name"]: c["count"] for c in doc["by_outcome"]} == {"allowed": 5, "denied": 3}
    assert {c["name"]: c["count"] for c in doc["top_subjects"]} == {"bob": 1, "alice": 1}
    assert doc["flags"] == []
    human = ok(varied("audit", "report")).stdout
    assert human.startswith("8 events; 1 failed authentications, 1 permission denials, ")
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (
        json.loads(ok(varied("audit", "report", "--since", future, "--json")).stdout)["events"] == 0
    )


def test_report_flags_a_burst_of_failures(mcpsec: Runner) -> None:
    for _ in range(10):
        assert mcpsec("rate", "check", "bot-7", "--capacity", "1", "--refill", "0").exit_code in (
            0,
            1,
        )
    doc = json.loads(ok(mcpsec("audit", "report", "--json")).stdout)
    assert doc["rate_limit_hits"] == 9
    assert doc["flags"] == []  # nine failures
    assert mcpsec("rate", "check", "bot-7", "--capacity", "1", "--refill", "0").exit_code == 1
    doc = json.loads(ok(mcpsec("audit", "report", "--json")).stdout)
    assert [(f["kind"], f["who"]) for f in doc["flags"]] == [("failure_burst", "subject bot-7")]


def test_report_counts_one_denied_authz_check_once(mcpsec: Runner) -> None:
    key = create_key(mcpsec, "--name", "bot", "--owner", "bob", "--role", "guest")
    ran = mcpsec("authz", "check", "-p", "files:write", key["api_key"])
    assert ran.exit_code == 1
    doc = json.loads(ok(mcpsec("audit", "report", "--json")).stdout)
    assert doc["permission_denials"] == 1
    assert doc["top_subjects"] == [{"name": "bob", "count": 1}]


# -- no secrets, anywhere ----------------------------------------------------------------


def jwt_segments(token: str) -> list[str]:
    segments = token.split(".")
    assert len(segments) == 3
    return [token, *segments]


def test_no_secret_reaches_the_log_or_the_store(configured: Cli, home: Path) -> None:
    sink = home / "audit.sink.jsonl"
    configured.env["MCPSEC_AUDIT_SINK"] = str(sink)
    mcpsec = configured
    secrets: list[str] = []

    # API keys: created, verified (valid, denied, malformed), rotated, revoked
    first = create_key(mcpsec, "--name", "a", "--owner", "bob", "--role", "user")
    second = create_key(mcpsec, "--name", "b")
    for doc in (first, second):
        secrets += [doc["api_key"], parse_key(doc["api_key"]).secret]
    ok(mcpsec("keys", "verify", "-", input=first["api_key"] + "\n"))
    assert mcpsec("keys", "verify", "-p", "admin:all", first["api_key"]).exit_code == 1
    mistyped = first["api_key"][:-1] + ("A" if first["api_key"][-1] != "A" else "B")
    assert mcpsec("keys", "verify", "-", input=mistyped + "\n").exit_code == 1
    secrets += [mistyped]
    ok(mcpsec("authz", "check", "-p", "files:read", "-", input=first["api_key"] + "\n"))
    rotated = json.loads(ok(mcpsec("keys", "rotate", second["key_id"], "--json")).stdout)
    secrets += [rotated["api_key"], parse_key(rotated["api_key"]).secret]
    ok(mcpsec("keys", "revoke", second["key_id"]))
    assert mcpsec("keys", "verify", "-", input=second["api_key"] + "\n").exit_code == 1

    # Tokens: minted, verified, refreshed, presented wrongly, tampered, revoked
    minted = mint(mcpsec, "--subject", "alice", "--role", "user")
    pair = json.loads(ok(refresh(mcpsec, minted["refresh_token"])).stdout)
    tokens = [minted["access_token"], minted["refresh_token"]]
    tokens += [pair["access_token"], pair["refresh_token"]]
    for token in tokens:
        mcpsec("token", "verify", "-", input=token + "\n")
    ok(mcpsec("authz", "check", "-p", "files:read", "-", input=pair["access_token"] + "\n"))
    assert refresh(mcpsec, minted["access_token"]).exit_code == 1
    head, body, signature = minted["access_token"].split(".")
    tampered = f"{head}.{body}.{signature[::-1]}"
    assert mcpsec("token", "verify", "-", input=tampered + "\n").exit_code == 1
    ok(mcpsec("token", "revoke", "-", input=pair["refresh_token"] + "\n"))
    for token in [*tokens, tampered]:
        secrets += jwt_segments(token)

    config = home / "cfg" / "mcpsec"
    for name in ("jwt.secret", "audit.key"):
        secrets.append((config / name).read_text().strip())
    assert all(len(s) >= 16 for s in secrets)

    # Every place an event lives: tail, export, the sink, and every row and byte of the store.
    logged = events(mcpsec)
    assert len(logged) >= 20
    assert {e["type"] for e in logged} >= {
        "key.created",
        "key.verified",
        "key.rotated",
        "key.revoked",
        "token.minted",
        "token.refreshed",
        "token.verified",
        "token.revoked",
        "authz.checked",
    }
    places = {
        "tail": json.dumps(logged),
        "export": ok(mcpsec("audit", "export", "--since", "1h")).stdout,
        "sink": sink.read_text(),
        "store rows": store_rows(db_path(home)),
    }
    assert len(places["sink"].splitlines()) == len(logged) - 1  # all but config init
    for path in db_path(home).parent.iterdir():
        places[f"file {path.name}"] = path.read_bytes().decode("latin-1")
    # The search does see what the log holds: names of credentials, never the credentials.
    everywhere = "\n".join(places.values())
    for named in (first["key_id"], rotated["key_id"], minted["jti"], pair["jti"]):
        assert named in places["tail"] and named in places["store rows"]
    assert everywhere.count(first["key_id"]) > 5
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a secret ({len(secret)} chars) is in the {where}"


def store_rows(path: Path) -> str:
    """Every row of every table of the SQLite store, as text."""
    with closing(sqlite3.connect(path)) as db:
        tables = [
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        assert "log" in tables and "records" in tables
        rows = [repr(row) for table in tables for row in db.execute(f'SELECT * FROM "{table}"')]
        (logged,) = db.execute("SELECT count(*) FROM log").fetchone()
        assert logged >= 20
    return "\n".join(rows)


# -- when an event cannot be recorded ----------------------------------------------------


def test_a_store_that_is_down_stops_the_change(mcpsec: Runner) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    ran = mcpsec("--store", down, "keys", "revoke", "AAAAAAAAAAAA",
                 env={"MCPSEC_STORE_TIMEOUT": "0.3s"})  # fmt: skip
    assert ran.exit_code == 5 and one_error_line(ran)
    assert ran.stdout == ""


def block_log_inserts(home: Path) -> None:
    """The log table refuses every insert, while records can still be written."""
    with closing(sqlite3.connect(db_path(home), isolation_level=None)) as db:
        db.execute(
            "CREATE TRIGGER no_audit BEFORE INSERT ON log BEGIN SELECT RAISE(ABORT, 'no'); END"
        )


def key_status(mcpsec: Runner, key_id: str) -> str:
    status: str = json.loads(ok(mcpsec("keys", "show", "--json", key_id)).stdout)["status"]
    return status


def test_a_required_log_that_cannot_append_stops_the_change(mcpsec: Runner, home: Path) -> None:
    doc = create_key(mcpsec, "--name", "bot")
    before = events(mcpsec)
    block_log_inserts(home)
    ran = mcpsec("keys", "revoke", doc["key_id"])
    assert ran.exit_code == 5 and one_error_line(ran)
    assert "audit log could not record key.revoked" in ran.stderr
    assert key_status(mcpsec, doc["key_id"]) == "active"
    assert mcpsec("keys", "create", "--name", "other").exit_code == 5
    assert events(mcpsec) == before


def test_an_optional_log_that_cannot_append_warns_and_the_change_happens(
    mcpsec: Runner, home: Path
) -> None:
    doc = create_key(mcpsec, "--name", "bot")
    before = events(mcpsec)
    block_log_inserts(home)
    env = {"MCPSEC_AUDIT_REQUIRED": "false"}
    ran = mcpsec("keys", "revoke", doc["key_id"], env=env)
    assert ran.exit_code == 0, ran.stderr
    assert "warning: the audit log could not record key.revoked" in ran.stderr
    assert key_status(mcpsec, doc["key_id"]) == "revoked"
    assert events(mcpsec) == before


def test_an_optional_log_whose_sink_fails_warns_and_the_change_happens(
    mcpsec: Runner, home: Path
) -> None:
    doc = create_key(mcpsec, "--name", "bot")
    sink = home / "sink-is-a-folder"
    sink.mkdir()
    env = {"MCPSEC_AUDIT_REQUIRED": "false", "MCPSEC_AUDIT_SINK": str(sink)}
    ran = mcpsec("keys", "revoke", doc["key_id"], env=env)
    assert ran.exit_code == 0, ran.stderr
    assert "the audit log could not record key.revoked" in ran.stderr
    assert "sink" in ran.stderr
    assert key_status(mcpsec, doc["key_id"]) == "revoked"
    assert ok(mcpsec("audit", "verify")).stdout == "2/2 events valid\n"


def test_the_sink_gets_every_event_as_a_private_json_line(mcpsec: Runner, home: Path) -> None:
    sink = home / "audit.sink.jsonl"
    env = {"MCPSEC_AUDIT_SINK": str(sink)}
    doc = create_key(mcpsec, "--name", "bot")
    ok(mcpsec("keys", "revoke", doc["key_id"], env=env))
    ok(mcpsec("rate", "reset", "alice", env=env))
    assert stat.S_IMODE(sink.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    logged = events(mcpsec)
    assert [(d["id"], d["seq"], d["type"]) for d in lines] == [
        (e["id"], e["seq"], e["type"]) for e in logged[1:]
    ]
    assert all(len(d["mac"]) == 64 and d["prev"] for d in lines)


def test_a_required_log_whose_sink_fails_never_records_a_change_not_made(
    mcpsec: Runner, home: Path
) -> None:
    doc = create_key(mcpsec, "--name", "bot")
    sink = home / "sink-is-a-folder"
    sink.mkdir()
    ran = mcpsec("keys", "revoke", doc["key_id"], env={"MCPSEC_AUDIT_SINK": str(sink)})
    if ran.exit_code != 0:
        assert key_status(mcpsec, doc["key_id"]) == "active"
        revoked = [e["outcome"] for e in events(mcpsec, "--type", "key.revoked")]
        assert "allowed" not in revoked or "error" in revoked
    else:
        assert key_status(mcpsec, doc["key_id"]) == "revoked"
