"""`mcpsec authz check`: one question, "may this credential do that?", answered by exit code."""

import json

import pytest
from mcpsec.core.key_format import parse_key

from tests.support.redis_servers import free_port

DECISION_FIELDS = {"allowed", "reason", "kind", "principal", "permission"}


@pytest.fixture
def configured(mcpsec):
    ran = mcpsec("config", "init")
    assert ran.exit_code == 0, ran.stderr
    return mcpsec


@pytest.fixture
def token(configured):
    """An access token for alice, role user (files:read, weather:read; not files:write)."""
    ran = configured("token", "mint", "--subject", "alice", "--role", "user", "--json")
    assert ran.exit_code == 0, ran.stderr
    return json.loads(ran.stdout)["access_token"]


def api_key(mcpsec, role):
    ran = mcpsec("keys", "create", "--name", "ci", "--role", role, "--quiet")
    assert ran.exit_code == 0, ran.stderr
    return ran.stdout.strip()


def check(mcpsec, permission, *args, input=None, env=None):
    """(exit code, the --json decision)."""
    ran = mcpsec(
        "authz", "check", "--permission", permission, "--json", *args, input=input, env=env
    )
    assert "Traceback" not in ran.stderr
    return ran.exit_code, json.loads(ran.stdout)


def one_error_line(ran):
    return (
        ran.stderr.count("\n") == 1
        and ran.stderr.startswith("mcpsec: error: ")
        and "Traceback" not in ran.stderr
    )


@pytest.mark.parametrize(
    "how",
    ["positional", "--token", "--token -", "piped", "positional -"],
)
def test_a_token_given_every_way_is_allowed(configured, token, how):
    args, stdin = {
        "positional": ([token], None),
        "--token": (["--token", token], None),
        "--token -": (["--token", "-"], token + "\n"),
        "piped": ([], token),
        "positional -": (["-"], token + "\n"),
    }[how]
    code, decision = check(configured, "files:read", *args, input=stdin)
    assert code == 0
    assert decision == {
        "allowed": True,
        "reason": None,
        "kind": "token",
        "principal": "alice",
        "permission": "files:read",
    }


def test_a_token_without_the_permission_is_denied(configured, token):
    code, decision = check(configured, "files:write", "--token", "-", input=token)
    assert code == 1
    assert set(decision) == DECISION_FIELDS
    assert decision["allowed"] is False and decision["reason"] == "insufficient_permission"
    assert (decision["kind"], decision["permission"]) == ("token", "files:write")


def test_human_answers(configured, token):
    ok = configured("authz", "check", "-p", "weather:read", token)
    assert (ok.exit_code, ok.stdout.strip()) == (0, "allowed: alice may weather:read")
    no = configured("authz", "check", "-p", "files:write", token)
    assert (no.exit_code, no.stdout.strip()) == (1, "denied: insufficient_permission")
    quiet = configured("authz", "check", "-p", "files:write", "-q", token)
    assert (quiet.exit_code, quiet.stdout.strip()) == (1, "false")


def test_a_revoked_token_is_denied(configured, token):
    assert configured("token", "revoke", "-", input=token).exit_code == 0
    code, decision = check(configured, "files:read", token)
    assert (code, decision["allowed"], decision["reason"]) == (1, False, "revoked")


def test_a_forged_token_is_denied(configured, token):
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    code, decision = check(configured, "files:read", "--token", forged)
    assert code == 1 and decision["allowed"] is False
    assert decision["reason"] in {"bad_signature", "malformed"}


def test_audience(configured):
    ran = configured(
        "token", "mint", "-s", "alice", "-r", "user", "--audience", "https://a.example", "-q"
    )
    aud_token = ran.stdout.strip()
    assert check(configured, "files:read", aud_token, "--audience", "https://a.example")[0] == 0
    code, decision = check(configured, "files:read", aud_token, "--audience", "https://b.example")
    assert (code, decision["reason"]) == (1, "wrong_audience")


def test_an_api_key(configured):
    admin = api_key(configured, "admin")
    code, decision = check(configured, "files:write", "--key", "-", input=admin + "\n")
    assert code == 0
    assert decision == {
        "allowed": True,
        "reason": None,
        "kind": "key",
        "principal": parse_key(admin).key_id,  # no owner: the key id
        "permission": "files:write",
    }
    code, decision = check(configured, "files:write", admin)  # told apart by shape
    assert (code, decision["kind"]) == (0, "key")
    guest = api_key(configured, "guest")
    code, decision = check(configured, "files:write", "--key", guest)
    assert (code, decision["reason"], decision["kind"]) == (1, "insufficient_permission", "key")


def test_a_revoked_api_key_is_denied(configured):
    key = api_key(configured, "admin")
    assert configured("keys", "revoke", parse_key(key).key_id).exit_code == 0
    code, decision = check(configured, "files:read", "--key", "-", input=key)
    assert (code, decision["reason"]) == (1, "revoked")


def test_an_api_key_given_as_a_token_is_malformed(configured):
    key = api_key(configured, "admin")
    code, decision = check(configured, "files:read", "--token", key)
    assert code == 1
    assert (decision["allowed"], decision["reason"], decision["kind"]) == (
        False,
        "malformed",
        "token",
    )


def test_a_token_given_as_a_key_is_malformed(configured, token):
    code, decision = check(configured, "files:read", "--key", token)
    assert code == 1 and (decision["reason"], decision["kind"]) == ("malformed", "key")


def test_a_credential_from_a_private_file(configured, token, home):
    path = home / "access.jwt"
    path.write_text(token)
    path.chmod(0o600)
    assert check(configured, "files:read", "--file", str(path))[0] == 0
    path.chmod(0o644)
    ran = configured("authz", "check", "-p", "files:read", "--file", str(path))
    assert ran.exit_code == 4 and one_error_line(ran) and token not in ran.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["TOKEN", "--token", "TOKEN"],
        ["--token", "TOKEN", "--key", "KEY"],
        ["TOKEN", "--key", "KEY"],
        ["--token", "TOKEN", "--file", "FILE"],
    ],
)
def test_two_credentials_at_once_is_a_usage_error(configured, token, home, args):
    key = api_key(configured, "admin")
    path = home / "cred"
    path.write_text(token)
    path.chmod(0o600)
    values = {"TOKEN": token, "KEY": key, "FILE": str(path)}
    ran = configured("authz", "check", "-p", "files:read", *[values.get(a, a) for a in args])
    assert ran.exit_code == 2 and one_error_line(ran) and "one credential" in ran.stderr
    assert token not in ran.stderr and key not in ran.stderr


def test_missing_or_bad_permission_is_a_usage_error(configured, token):
    missing = configured("authz", "check", token)
    assert missing.exit_code == 2 and one_error_line(missing) and "--permission" in missing.stderr
    assert token not in missing.stderr
    bad = configured("authz", "check", "-p", "files", token)
    assert bad.exit_code == 2 and one_error_line(bad) and "resource:action" in bad.stderr


def test_no_credential_at_all(configured):
    ran = configured("authz", "check", "-p", "files:read", input="")
    assert ran.exit_code == 2 and one_error_line(ran)


def test_a_store_that_is_down_is_exit_5(configured, token):
    key = api_key(configured, "admin")
    down = ["--store", f"redis://127.0.0.1:{free_port()}/0"]
    env = {"MCPSEC_STORE_TIMEOUT": "1s"}
    for credential in (["--token", token], ["--key", key], [token]):
        ran = configured(*down, "authz", "check", "-p", "files:read", *credential, env=env)
        assert ran.exit_code == 5 and one_error_line(ran), ran.stderr
        assert ran.stdout == ""  # never "allowed"
        assert token not in ran.stderr and key not in ran.stderr
