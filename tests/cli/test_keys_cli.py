"""`mcpsec keys` as operators and scripts use it: shapes, exit codes, and what never prints."""

import json
import sqlite3

import pytest
from mcpsec.core.key_format import parse_key, secret_hash

CREATE_FIELDS = {
    "key_id",
    "api_key",
    "name",
    "owner",
    "roles",
    "permissions",
    "created_at",
    "expires_at",
}
VERDICT_FIELDS = {"valid", "reason", "key_id", "owner", "roles", "permissions"}


def create(mcpsec, *args):
    ran = mcpsec("keys", "create", "--json", *args)
    assert ran.exit_code == 0, ran.stderr
    return json.loads(ran.stdout)


def test_create_json_has_the_documented_fields(mcpsec):
    doc = create(
        mcpsec,
        "--name",
        "ci-bot",
        "--owner",
        "platform",
        "--role",
        "user",
        "--permission",
        "metrics:view",
        "--ttl",
        "30d",
    )
    assert set(doc) == CREATE_FIELDS
    assert parse_key(doc["api_key"]).key_id == doc["key_id"]
    assert (doc["name"], doc["owner"], doc["roles"], doc["permissions"]) == (
        "ci-bot",
        "platform",
        ["user"],
        ["metrics:view"],
    )
    assert doc["expires_at"] > doc["created_at"]


def test_quiet_create_prints_only_the_key_and_human_create_warns(mcpsec):
    quiet = mcpsec("keys", "create", "--name", "a", "--quiet")
    assert quiet.stdout.count("\n") == 1 and quiet.stdout.startswith("mcp_")
    assert quiet.stderr == ""
    human = mcpsec("keys", "create", "--name", "b")
    assert "api_key:" in human.stdout
    assert "shown once" in human.stderr


def test_never_ttl(mcpsec):
    assert create(mcpsec, "--name", "forever", "--ttl", "never")["expires_at"] is None


def test_workflow_verify_revoke_verify(mcpsec):
    doc = create(mcpsec, "--name", "bot", "--role", "user")
    ok = mcpsec("keys", "verify", "--json", "-", input=doc["api_key"] + "\n")
    assert ok.exit_code == 0
    verdict = json.loads(ok.stdout)
    assert set(verdict) == VERDICT_FIELDS
    assert verdict["valid"] is True and verdict["reason"] is None
    denied = mcpsec("keys", "verify", "--permission", "files:write", "--json", doc["api_key"])
    assert denied.exit_code == 1
    assert json.loads(denied.stdout)["reason"] == "insufficient_permission"

    revoked = mcpsec("keys", "revoke", doc["key_id"], "--reason", "leaked")
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    again = mcpsec("keys", "revoke", doc["key_id"])  # idempotent
    assert again.exit_code == 0
    after = mcpsec("keys", "verify", doc["api_key"])
    assert (after.exit_code, after.stdout.strip()) == (1, "invalid: revoked")

    shown = json.loads(mcpsec("keys", "show", "--json", doc["key_id"]).stdout)
    assert shown["status"] == "revoked" and shown["revoked_reason"] == "leaked"
    assert shown["use_count"] == 1  # a verify refused for lack of permission is not a use


def test_malformed_key_is_answered_without_a_store(mcpsec):
    doc = create(mcpsec, "--name", "bot")
    broken = doc["api_key"][:-1] + ("A" if doc["api_key"][-1] != "A" else "B")
    ran = mcpsec("--store", "redis://127.0.0.1:1/0", "keys", "verify", "--json", broken)
    assert ran.exit_code == 1  # not 5: the checksum failed before any store call
    assert json.loads(ran.stdout)["reason"] == "malformed"


def test_check_is_offline(mcpsec):
    doc = create(mcpsec, "--name", "bot")
    ok = mcpsec("--store", "redis://127.0.0.1:1/0", "keys", "check", doc["api_key"])
    assert (ok.exit_code, ok.stdout.strip()) == (0, "valid")
    bad = mcpsec("keys", "check", "--json", "mcp_nope")
    assert bad.exit_code == 1 and json.loads(bad.stdout)["reason"] == "malformed"


def test_show_never_prints_the_secret_or_its_hash(mcpsec):
    doc = create(mcpsec, "--name", "bot")
    secret = parse_key(doc["api_key"]).secret
    for args in (
        ["keys", "show", doc["key_id"]],
        ["keys", "show", "--json", doc["key_id"]],
        ["keys", "list"],
        ["keys", "list", "--json"],
    ):
        out = mcpsec(*args).stdout
        assert secret not in out and secret_hash(secret) not in out


def test_list_table_and_json_paging(mcpsec):
    ids = {create(mcpsec, "--name", f"k{i}", "--owner", "team")["key_id"] for i in range(5)}
    create(mcpsec, "--name", "other", "--owner", "team-b")
    table = mcpsec("keys", "list", "--owner", "team").stdout.splitlines()
    assert table[0].split()[:3] == ["KEY", "ID", "NAME"]
    assert len(table) == 6
    seen, cursor = [], None
    while True:
        args = ["keys", "list", "--owner", "team", "--limit", "2", "--json"]
        doc = json.loads(mcpsec(*args, *(["--cursor", cursor] if cursor else [])).stdout)
        seen += [k["key_id"] for k in doc["keys"]]
        cursor = doc["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)


def test_rotate_links_both_keys(mcpsec):
    old = create(mcpsec, "--name", "bot", "--role", "user")
    ran = mcpsec("keys", "rotate", old["key_id"], "--grace", "1h", "--json")
    assert ran.exit_code == 0, ran.stderr
    new = json.loads(ran.stdout)
    assert new["rotated_from"] == old["key_id"] and new["name"] == "bot"
    assert mcpsec("keys", "verify", old["api_key"]).exit_code == 0  # grace
    assert mcpsec("keys", "verify", new["api_key"]).exit_code == 0
    shown = json.loads(mcpsec("keys", "show", "--json", old["key_id"]).stdout)
    assert shown["rotated_to"] == new["key_id"]
    now = mcpsec("keys", "rotate", new["key_id"], "--now", "--quiet")
    assert now.exit_code == 0 and now.stdout.startswith("mcp_")
    assert mcpsec("keys", "verify", new["api_key"]).exit_code == 1


def test_revoke_by_owner_says_how_many(mcpsec):
    for i in range(3):
        create(mcpsec, "--name", f"k{i}", "--owner", "leaky")
    keep = create(mcpsec, "--name", "safe", "--owner", "careful")
    ran = mcpsec("keys", "revoke", "--owner", "leaky", "--json")
    assert json.loads(ran.stdout) == {"owner": "leaky", "revoked": 3}
    assert mcpsec("keys", "verify", keep["api_key"]).exit_code == 0


def test_update(mcpsec):
    doc = create(mcpsec, "--name", "bot", "--permission", "files:read")
    ran = mcpsec(
        "keys",
        "update",
        doc["key_id"],
        "--add-permission",
        "files:write",
        "--remove-permission",
        "files:read",
        "--name",
        "renamed",
        "--ttl",
        "never",
        "--json",
    )
    shown = json.loads(ran.stdout)
    assert (shown["name"], shown["permissions"], shown["expires_at"]) == (
        "renamed",
        ["files:write"],
        None,
    )


@pytest.mark.parametrize(
    ("args", "code", "reason"),
    [
        (["show", "AAAAAAAAAAAA"], 3, "no API key with id AAAAAAAAAAAA"),
        (["revoke", "AAAAAAAAAAAA"], 3, "no API key"),
        (["rotate", "AAAAAAAAAAAA"], 3, "no API key"),
        (["update", "AAAAAAAAAAAA", "--name", "x"], 3, "no API key"),
        (["create", "--name", ""], 2, "cannot be empty"),
        (["create", "--name", "x" * 101], 2, "at most 100"),
        (["create", "--name", "x", "--role", "wizard"], 2, "unknown role 'wizard'"),
        (["create", "--name", "x", "--ttl", "90days"], 2, "not a duration"),
        (["create", "--name", "x", "--ttl", "0s"], 2, "longer than zero"),
        (["create", "--name", "x", "--permission", "files"], 2, "resource:action"),
        (["create", "--name", "x", "--owner", "a b"], 2, "owner"),
        (["create", "--name", "x", "--rate-limit", "fast"], 2, "CAPACITY/PERIOD"),
        (["list", "--expiring-within", "soon"], 2, "not a duration"),
        (["list", "--limit", "0"], 2, "limit"),
        (["revoke", "AAAAAAAAAAAA", "--owner", "x"], 2, "not both"),
    ],
)
def test_bad_input(mcpsec, args, code, reason):
    ran = mcpsec("keys", *args)
    assert ran.exit_code == code, ran.stderr
    assert ran.stderr.count("\n") == 1 and ran.stderr.startswith("mcpsec: error:")
    assert reason in ran.stderr


def test_store_down_is_exit_5_and_writes_nothing(mcpsec, home):
    ran = mcpsec("--store", "redis://127.0.0.1:1/0", "keys", "create", "--name", "x")
    assert ran.exit_code == 5
    assert ran.stderr.count("\n") <= 2 and "Traceback" not in ran.stderr


def test_failed_create_leaves_no_key_that_can_verify(mcpsec, home):
    """A create refused half-way (unknown role) leaves no record behind in the store."""
    assert mcpsec("keys", "create", "--name", "x", "--role", "wizard").exit_code == 2
    create(mcpsec, "--name", "real")
    db = home / "data" / "mcpsec" / "mcpsec.db"
    rows = sqlite3.connect(db).execute("SELECT id FROM records WHERE kind = 'key'").fetchall()
    assert len(rows) == 1


def test_rotate_after_update_ttl_on_the_default_store(mcpsec):
    doc = create(mcpsec, "--name", "bot")
    assert mcpsec("keys", "update", doc["key_id"], "--ttl", "30d").exit_code == 0
    ran = mcpsec("keys", "rotate", doc["key_id"], "--quiet")
    assert ran.exit_code == 0, ran.stderr


def test_a_malformed_key_is_answered_without_the_store(mcpsec):
    """No lookup decides it: with the store down, the verdict is still `malformed` (exit 1),
    and the audit event that could not be written is reported, never silently dropped."""
    from tests.support.redis_servers import free_port

    down = f"redis://127.0.0.1:{free_port()}/0"
    ran = mcpsec("--store", down, "keys", "verify", "--json", "mcp_garbage",
                 env={"MCPSEC_STORE_TIMEOUT": "0.3s"})  # fmt: skip
    assert ran.exit_code == 1
    assert json.loads(ran.stdout)["reason"] == "malformed"
    assert "warning: the audit log could not record key.verified" in ran.stderr


def test_quiet_everywhere(mcpsec):
    doc = create(mcpsec, "--name", "bot", "--owner", "q")
    other = create(mcpsec, "--name", "bot2", "--owner", "q")
    assert mcpsec("keys", "show", "-q", doc["key_id"]).stdout == doc["key_id"] + "\n"
    listed = mcpsec("keys", "list", "--owner", "q", "-q").stdout.split()
    assert sorted(listed) == sorted([doc["key_id"], other["key_id"]])
    assert mcpsec("keys", "check", "-q", doc["api_key"]).stdout == "true\n"
    assert (
        mcpsec("keys", "update", doc["key_id"], "--name", "x", "-q").stdout.strip()
        == (doc["key_id"])
    )


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["create", "--name", "x", "--owner", ""], "owner"),
        (["create", "--name", "bad\u009bname"], "control"),
        (["create", "--name", "bidi\u202ename"], "control"),
        (["rotate", "AAAAAAAAAAAA", "--grace", "1h", "--now"], "not both"),
    ],
)
def test_more_bad_input(mcpsec, args, reason):
    ran = mcpsec("keys", *args)
    assert ran.exit_code == 2 and reason in ran.stderr


def test_a_reason_with_escape_sequences_is_refused(mcpsec):
    doc = create(mcpsec, "--name", "bot")
    ran = mcpsec("keys", "revoke", doc["key_id"], "--reason", "\x1b]0;pwned\x07\x1b[2J")
    assert ran.exit_code == 2 and "control" in ran.stderr
    assert mcpsec("keys", "verify", doc["api_key"]).exit_code == 0  # nothing was revoked
    long = mcpsec("keys", "revoke", "--owner", "nobody", "--reason", "x" * 501)
    assert long.exit_code == 2


def test_an_empty_key_list_prints_its_header(mcpsec):
    ran = mcpsec("keys", "list")
    assert ran.exit_code == 0 and ran.stdout.split()[:3] == ["KEY", "ID", "NAME"]
