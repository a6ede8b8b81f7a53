"""`mcpsec token` as operators and scripts use it: the README flow, where tokens come from,
hostile tokens, revocation, refresh with reuse detection, and a store that is down."""

import base64
import hashlib
import hmac
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from mcpsec.core.token_ids import new_jti
from mcpsec.core.token_keys import CONFIG_SECRET_KID

from tests.support.redis_servers import free_port

MINT_FIELDS = {"access_token", "refresh_token", "token_type", "expires_in", "jti"}
UNVERIFIED = "UNVERIFIED"


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def configured(mcpsec):
    """`mcpsec config init`: an HS256 secret (kid config-secret) next to the config."""
    ran = mcpsec("config", "init")
    assert ran.exit_code == 0, ran.stderr
    return mcpsec


def mint(mcpsec, *args, env=None):
    ran = mcpsec("token", "mint", "--json", *args, env=env)
    assert ran.exit_code == 0, ran.stderr
    return json.loads(ran.stdout)


def verify(mcpsec, token, *args, env=None):
    """(exit code, the --json verdict) for a token given on stdin."""
    ran = mcpsec("token", "verify", "--json", *args, "-", input=token + "\n", env=env)
    assert "Traceback" not in ran.stderr
    return ran.exit_code, json.loads(ran.stdout)


def refresh(mcpsec, token, env=None):
    ran = mcpsec("token", "refresh", "--json", "-", input=token, env=env)
    assert "Traceback" not in ran.stderr
    return ran.exit_code, json.loads(ran.stdout)


def one_error_line(ran):
    return (
        ran.stderr.count("\n") == 1
        and ran.stderr.startswith("mcpsec: error: ")
        and "Traceback" not in ran.stderr
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_secret(home: Path) -> bytes:
    return (home / "cfg" / "mcpsec" / "jwt.secret").read_bytes().strip()


def claims_for(**changes):
    """Claims mcpsec would accept for an access token, with `changes` applied; the jti is
    made for the final sub and exp unless given."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "alice",
        "iss": "mcpsec",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "type": "access",
        "roles": ["user"],
        "permissions": ["files:read"],
    }
    claims.update(changes)
    claims.setdefault("jti", new_jti(claims["sub"], claims["exp"]))
    return claims


def craft(home, kid=CONFIG_SECRET_KID, **changes):
    """A token signed with the real config secret."""
    return jwt.encode(claims_for(**changes), jwt_secret(home), "HS256", headers={"kid": kid})


def write_file(path, text, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(mode)
    return path


# -- the README flow -------------------------------------------------------------------


def test_readme_flow_mint_verify_revoke_verify(configured):
    mcpsec = configured
    minted = mint(mcpsec, "--subject", "alice", "--role", "user")
    assert set(minted) == MINT_FIELDS
    assert minted["token_type"] == "bearer"
    assert minted["expires_in"] == 1800  # tokens.access_ttl default
    assert minted["access_token"].count(".") == 2 and minted["refresh_token"].count(".") == 2
    assert minted["access_token"] != minted["refresh_token"]
    assert jwt.get_unverified_header(minted["access_token"])["kid"] == CONFIG_SECRET_KID

    code, verdict = verify(mcpsec, minted["access_token"])
    assert code == 0
    assert verdict["valid"] is True and verdict["reason"] is None
    assert verdict["claims"]["sub"] == "alice" and verdict["claims"]["jti"] == minted["jti"]

    revoked = mcpsec("token", "revoke", "-", input=minted["access_token"] + "\n")
    assert revoked.exit_code == 0, revoked.stderr
    assert minted["jti"] in revoked.stdout

    code, verdict = verify(mcpsec, minted["access_token"])
    assert code == 1
    assert set(verdict) == {"valid", "reason", "claims"}
    assert (verdict["valid"], verdict["reason"]) == (False, "revoked")
    assert verdict["claims"]["sub"] == "alice"


def test_quiet_mint_prints_only_the_access_token(configured):
    ran = configured("token", "mint", "--subject", "alice", "--quiet")
    assert ran.exit_code == 0
    assert ran.stdout.count("\n") == 1
    token = ran.stdout.strip()
    assert jwt.decode(token, options={"verify_signature": False})["type"] == "access"
    assert configured("token", "verify", token).exit_code == 0


def test_human_mint_and_verify(configured):
    mcpsec = configured
    human = mcpsec("token", "mint", "--subject", "alice")
    assert human.exit_code == 0
    assert "access_token:" in human.stdout and "refresh_token:" in human.stdout
    assert "refresh token like a password" in human.stderr
    minted = mint(mcpsec, "--subject", "alice", "--no-refresh")
    assert minted["refresh_token"] is None
    ran = mcpsec("token", "verify", minted["access_token"])
    assert ran.exit_code == 0 and ran.stdout.startswith("valid: alice (expires in ")


def test_mint_with_an_eddsa_signing_key(mcpsec):
    kid = mcpsec("signing-key", "generate", "--alg", "EdDSA", "-q").stdout.strip()
    minted = mint(mcpsec, "--subject", "alice")
    header = jwt.get_unverified_header(minted["access_token"])
    assert (header["alg"], header["kid"]) == ("EdDSA", kid)
    assert verify(mcpsec, minted["access_token"])[0] == 0


def test_a_jwt_secret_readable_by_others_is_refused(configured, home):
    token = mint(configured, "--subject", "alice")["access_token"]
    (home / "cfg" / "mcpsec" / "jwt.secret").chmod(0o644)
    for args in (["token", "mint", "-s", "alice"], ["token", "verify", token]):
        ran = configured(*args)
        assert ran.exit_code == 4 and one_error_line(ran) and "readable by others" in ran.stderr
        assert ran.stdout == ""


def test_mint_without_any_key_is_a_config_error(mcpsec):
    ran = mcpsec("token", "mint", "--subject", "alice")
    assert ran.exit_code == 4 and one_error_line(ran)
    assert "config init" in ran.stderr


# -- where the token comes from ---------------------------------------------------------


def test_token_as_argument_dash_and_piped_stdin(configured):
    token = mint(configured, "--subject", "alice")["access_token"]
    assert configured("token", "verify", token).exit_code == 0
    assert configured("token", "verify", "-", input=token + "\n").exit_code == 0
    assert configured("token", "verify", input=token).exit_code == 0  # nothing: piped stdin
    bad = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert configured("token", "verify", input=bad).exit_code == 1  # stdin is really read


def test_empty_stdin_is_a_usage_error(configured):
    ran = configured("token", "verify", "-", input="")
    assert ran.exit_code == 2 and one_error_line(ran)


def test_token_from_a_private_file(configured, home):
    token = mint(configured, "--subject", "alice")["access_token"]
    path = write_file(home / "access.jwt", token + "\n", 0o600)
    ran = configured("token", "verify", "--json", "--file", str(path))
    assert ran.exit_code == 0 and json.loads(ran.stdout)["valid"] is True
    assert configured("token", "inspect", "-f", str(path)).exit_code == 0
    assert configured("token", "revoke", "--file", str(path)).exit_code == 0
    assert verify(configured, token)[1]["reason"] == "revoked"


def test_a_token_file_readable_by_others_is_refused(configured, home):
    token = mint(configured, "--subject", "alice")["access_token"]
    path = write_file(home / "access.jwt", token, 0o644)
    for command in ("verify", "inspect", "revoke", "refresh"):
        ran = configured("token", command, "--file", str(path))
        assert ran.exit_code == 4, (command, ran.stderr)
        assert one_error_line(ran) and "readable by others" in ran.stderr
        assert token not in ran.stderr and token not in ran.stdout
    assert verify(configured, token)[0] == 0  # `revoke --file` refused: nothing was revoked


def test_argument_and_file_together_is_a_usage_error(configured, home):
    token = mint(configured, "--subject", "alice")["access_token"]
    path = write_file(home / "access.jwt", token, 0o600)
    ran = configured("token", "verify", "--file", str(path), token)
    assert ran.exit_code == 2 and one_error_line(ran) and "not both" in ran.stderr
    assert token not in ran.stderr


def test_a_missing_token_file(configured, home):
    ran = configured("token", "verify", "--file", str(home / "nope.jwt"))
    assert ran.exit_code == 4 and one_error_line(ran) and "does not exist" in ran.stderr


# -- hostile and wrong tokens ------------------------------------------------------------


def test_a_crafted_token_with_the_real_secret_verifies(configured, home):
    """The baseline for the crafted tokens below: with nothing wrong, it is valid."""
    code, verdict = verify(configured, craft(home))
    assert (code, verdict["valid"]) == (0, True)


def _alg_none(home, mcpsec):
    header = {"alg": "none", "typ": "JWT", "kid": CONFIG_SECRET_KID}
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims_for()).encode())}."


def _refresh_token(home, mcpsec):
    return mint(mcpsec, "--subject", "alice")["refresh_token"]


def _tampered(home, mcpsec):
    token = mint(mcpsec, "--subject", "alice", "--role", "guest")["access_token"]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["permissions"] = ["*"]
    return f"{header}.{b64(json.dumps(claims).encode())}.{signature}"


def _unknown_kid(home, mcpsec):
    return craft(home, kid="no-such-kid")


def _huge(home, mcpsec):
    header = b64(json.dumps({"alg": "HS256", "kid": CONFIG_SECRET_KID}).encode())
    return f"{header}.{'A' * (1 << 20)}.{'B' * 43}"


def _garbage(home, mcpsec):
    return "!!not@base64.%%%.***"


def _expired(home, mcpsec):
    now = int(time.time())
    return craft(home, iat=now - 120, nbf=now - 120, exp=now - 60)


def _wrong_issuer(home, mcpsec):
    return craft(home, iss="evil")


def _not_yet_valid(home, mcpsec):
    now = int(time.time())
    return craft(home, nbf=now + 600, exp=now + 1200)


def _jti_of_another_subject(home, mcpsec):
    claims = claims_for()
    return craft(home, jti=new_jti("mallory", claims["exp"]))


def _digit_string_exp(home, mcpsec):
    now = int(time.time())
    return craft(home, exp=str(now + 600), jti=new_jti("alice", now + 600))


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (_alg_none, "algorithm_not_allowed"),
        (_refresh_token, "wrong_type"),
        (_tampered, "bad_signature"),
        (_unknown_kid, "unknown_key"),
        (_huge, "malformed"),
        (_garbage, "malformed"),
        (_expired, "expired"),
        (_wrong_issuer, "wrong_issuer"),
        (_not_yet_valid, "not_yet_valid"),
        (_jti_of_another_subject, "malformed"),
        (_digit_string_exp, "malformed"),
    ],
    ids=lambda v: getattr(v, "__name__", v).lstrip("_"),
)
def test_crafted_tokens_are_refused_with_their_reason(configured, home, build, reason):
    token = build(home, configured)
    ran = configured("token", "verify", "--json", input=token)
    assert ran.exit_code == 1, ran.stderr
    assert "Traceback" not in ran.stderr
    verdict = json.loads(ran.stdout)
    assert (verdict["valid"], verdict["reason"]) == (False, reason)
    human = configured("token", "verify", input=token)
    assert (human.exit_code, human.stdout.strip()) == (1, f"invalid: {reason}")
    assert token not in human.stdout + human.stderr


def test_hs256_signed_with_the_eddsa_public_key_is_refused(mcpsec, home):
    """The classic key-confusion attack: the public key PEM used as an HMAC secret."""
    kid = mcpsec("signing-key", "generate", "--alg", "EdDSA", "-q").stdout.strip()
    good = mint(mcpsec, "--subject", "alice")["access_token"]
    assert verify(mcpsec, good)[0] == 0
    pem = (home / "cfg" / "mcpsec" / "signing-keys" / f"{kid}.pem").read_bytes()
    public_pem = (
        serialization.load_pem_private_key(pem, password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps(claims_for(roles=["admin"], permissions=["*"])).encode())
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{b64(signature)}"

    code, verdict = verify(mcpsec, forged)
    assert code == 1 and verdict["valid"] is False
    assert verdict["reason"] in {"algorithm_not_allowed", "bad_signature"}


def test_tokens_algorithms_pins_what_verifies(configured):
    """A key we hold does not make its algorithm acceptable: tokens.algorithms decides."""
    token = mint(configured, "--subject", "alice")["access_token"]
    code, verdict = verify(configured, token, env={"MCPSEC_JWT_ALGORITHMS": "EdDSA"})
    assert (code, verdict["reason"]) == (1, "algorithm_not_allowed")
    ran = configured("token", "mint", "-s", "alice", env={"MCPSEC_JWT_ALGORITHMS": "EdDSA"})
    assert ran.exit_code == 4 and one_error_line(ran)  # it would mint what never verifies
    assert verify(configured, token, env={"MCPSEC_JWT_ALGORITHMS": "EdDSA,HS256"})[0] == 0


def test_wrong_audience(configured):
    token = mint(configured, "--subject", "alice", "--audience", "https://a.example")
    token = token["access_token"]
    assert verify(configured, token, "--audience", "https://a.example")[0] == 0
    code, verdict = verify(configured, token, "--audience", "https://b.example")
    assert (code, verdict["reason"]) == (1, "wrong_audience")
    env = {"MCPSEC_JWT_AUDIENCE": "https://b.example"}
    code, verdict = verify(configured, token, env=env)
    assert (code, verdict["reason"]) == (1, "wrong_audience")


def test_a_short_ttl_token_expires(configured, home):
    """`--ttl 1s` is honoured; the expiry itself is checked without sleeping (exp is read)."""
    minted = mint(configured, "--subject", "alice", "--ttl", "1s")
    assert minted["expires_in"] == 1
    claims = jwt.decode(minted["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 1


def test_malformed_tokens_are_answered_without_the_store(configured):
    """No revocation lookup decides it: with the store down the verdict is still
    `malformed`, and the audit event that could not be written is reported."""
    down = f"redis://127.0.0.1:{free_port()}/0"
    ran = configured(
        "--store", down, "token", "verify", "--json", "not.a.jwt",
        env={"MCPSEC_STORE_TIMEOUT": "0.3s"},
    )  # fmt: skip
    assert ran.exit_code == 1 and json.loads(ran.stdout)["reason"] == "malformed"
    assert "warning: the audit log could not record token.verified" in ran.stderr


# -- --permission ------------------------------------------------------------------------


def test_permission(configured):
    token = mint(configured, "--subject", "alice", "--role", "user")["access_token"]
    code, verdict = verify(configured, token, "--permission", "files:read")
    assert (code, verdict["valid"]) == (0, True)
    code, verdict = verify(configured, token, "-p", "files:write")
    assert (code, verdict["reason"]) == (1, "insufficient_permission")
    extra = mint(configured, "--subject", "bob", "--permission", "files:write")["access_token"]
    assert verify(configured, extra, "-p", "files:write")[0] == 0
    bad = configured("token", "verify", "--permission", "files", token)
    assert bad.exit_code == 2 and one_error_line(bad) and "resource:action" in bad.stderr


# -- inspect -----------------------------------------------------------------------------


def test_inspect_human_shows_relative_times_and_revocation(configured):
    minted = mint(configured, "--subject", "alice", "--role", "user")
    ran = configured("token", "inspect", minted["access_token"])
    assert ran.exit_code == 0
    lines = ran.stdout.splitlines()
    assert lines[0].startswith(UNVERIFIED)
    assert "header.kid: config-secret" in lines and "sub: alice" in lines
    assert re.search(r"^exp: .*\(expires in \S+\)$", ran.stdout, re.MULTILINE)
    assert re.search(r"^iat: .*\(issued \S+ ago\)$", ran.stdout, re.MULTILINE)
    assert lines[-1] == "revocation: not revoked"

    assert configured("token", "revoke", "--jti", minted["jti"]).exit_code == 0
    after = configured("token", "inspect", "-", input=minted["access_token"])
    assert after.stdout.splitlines()[-1] == "revocation: REVOKED"


def test_inspect_json(configured):
    minted = mint(configured, "--subject", "alice")
    doc = json.loads(configured("token", "inspect", "--json", minted["access_token"]).stdout)
    assert {"verified", "header", "claims", "times", "revoked"} <= set(doc)
    assert doc["verified"] is False and doc["revoked"] is False
    assert doc["header"]["alg"] == "HS256" and doc["claims"]["jti"] == minted["jti"]
    assert set(doc["times"]) == {"iat", "nbf", "exp"}
    assert doc["times"]["exp"]["relative"].startswith("expires in ")
    configured("token", "revoke", "--subject", "alice")
    doc = json.loads(configured("token", "inspect", "--json", minted["access_token"]).stdout)
    assert doc["revoked"] is True and doc["verified"] is False


def test_inspect_shows_what_verify_refuses(configured, home):
    """Inspect believes nothing but shows even an expired, foreign-signed token."""
    now = int(time.time())
    foreign = jwt.encode(
        claims_for(iat=now - 7200, nbf=now - 7200, exp=now - 3600), "x" * 40, "HS256"
    )
    ran = configured("token", "inspect", "--json", foreign)
    assert ran.exit_code == 0
    doc = json.loads(ran.stdout)
    assert doc["verified"] is False and doc["times"]["exp"]["relative"].startswith("expired ")
    assert verify(configured, foreign)[0] == 1


@pytest.mark.parametrize("garbage", ["garbage", "a.b.c", "!!.??.##", "x" * 10000])
def test_inspect_garbage_is_a_usage_error(configured, garbage):
    ran = configured("token", "inspect", "-", input=garbage)
    assert ran.exit_code == 2 and one_error_line(ran) and "not a JWT" in ran.stderr
    assert garbage not in ran.stderr


def test_inspect_a_token_with_a_far_future_exp(configured):
    hostile = jwt.encode(claims_for(exp=10**15), "x" * 40, "HS256")
    ran = configured("token", "inspect", "--json", hostile)
    assert ran.exit_code == 0
    assert json.loads(ran.stdout)["claims"]["exp"] == 10**15


def test_inspect_a_token_with_a_list_of_numbers(configured):
    hostile = jwt.encode(claims_for(roles=[1, 2], aud=[None]), "x" * 40, "HS256")
    ran = configured("token", "inspect", hostile)
    assert ran.exit_code == 0
    assert re.search(r"^roles: .*1.*2", ran.stdout, re.MULTILINE)


def test_inspect_never_writes_a_tokens_control_characters_to_the_terminal(configured):
    fake = "\x1b[1A\x1b[2Krevocation: not revoked\x07\u202e"
    hostile = jwt.encode(claims_for(sub=fake), "x" * 40, "HS256", headers={"kid": fake})
    ran = configured("token", "inspect", hostile)
    assert ran.exit_code == 0
    assert ran.stdout.startswith(UNVERIFIED)
    for dangerous in ("\x1b", "\x07", "\u202e"):
        assert dangerous not in ran.stdout
    assert "sub: " in ran.stdout and "header.kid: " in ran.stdout
    as_json = configured("token", "inspect", "--json", hostile)  # JSON escapes them already
    assert json.loads(as_json.stdout)["claims"]["sub"] == fake


def test_inspect_with_the_store_down_still_answers(configured):
    token = mint(configured, "--subject", "alice")["access_token"]
    ran = configured(
        "--store",
        f"redis://127.0.0.1:{free_port()}/0",
        "token",
        "inspect",
        "--json",
        token,
        env={"MCPSEC_STORE_TIMEOUT": "1s"},
    )
    assert ran.exit_code == 0, ran.stderr
    doc = json.loads(ran.stdout)
    assert doc["revoked"] is None and doc["revocation_note"].startswith("revocation status unknown")


# -- revoke ------------------------------------------------------------------------------


def test_revoke_by_jti(configured):
    minted = mint(configured, "--subject", "alice")
    ran = configured("token", "revoke", "--jti", minted["jti"], "--json")
    assert ran.exit_code == 0
    doc = json.loads(ran.stdout)
    assert (doc["target"], doc["jti"], doc["revoked"]) == ("jti", minted["jti"], True)
    assert verify(configured, minted["access_token"])[1]["reason"] == "revoked"
    again = configured("token", "revoke", "--jti", minted["jti"])  # idempotent
    assert again.exit_code == 0
    assert verify(configured, minted["access_token"])[1]["reason"] == "revoked"
    assert refresh(configured, minted["refresh_token"])[0] == 0  # only the access token


def test_revoke_by_token_twice(configured):
    minted = mint(configured, "--subject", "alice")
    assert configured("token", "revoke", minted["access_token"]).exit_code == 0
    assert configured("token", "revoke", minted["access_token"]).exit_code == 0
    assert verify(configured, minted["access_token"])[1]["reason"] == "revoked"


def test_revoke_a_refresh_token(configured):
    minted = mint(configured, "--subject", "alice")
    assert configured("token", "revoke", input=minted["refresh_token"]).exit_code == 0
    code, doc = refresh(configured, minted["refresh_token"])
    assert (code, doc) == (1, {"valid": False, "reason": "revoked"})
    assert verify(configured, minted["access_token"])[0] == 0


def test_revoke_by_subject(configured):
    alice = mint(configured, "--subject", "alice")
    bob = mint(configured, "--subject", "bob")
    ran = configured("token", "revoke", "--subject", "alice", "--json")
    assert ran.exit_code == 0 and json.loads(ran.stdout)["target"] == "subject"
    assert verify(configured, alice["access_token"])[1]["reason"] == "revoked"
    code, doc = refresh(configured, alice["refresh_token"])
    assert (code, doc["reason"]) == (1, "revoked")
    assert verify(configured, bob["access_token"])[0] == 0
    assert refresh(configured, bob["refresh_token"])[0] == 0
    assert configured("token", "revoke", "--subject", "alice").exit_code == 0  # idempotent


def test_revoke_a_token_that_is_not_ours(configured, home):
    forged = jwt.encode(claims_for(), "y" * 40, "HS256", headers={"kid": CONFIG_SECRET_KID})
    ran = configured("token", "revoke", forged)
    assert ran.exit_code == 2 and one_error_line(ran) and "bad_signature" in ran.stderr
    assert forged not in ran.stderr and forged.split(".")[2] not in ran.stderr


def test_revoke_an_expired_token_is_not_an_error(configured, home):
    now = int(time.time())
    expired = craft(home, iat=now - 120, nbf=now - 120, exp=now - 60)
    ran = configured("token", "revoke", "--json", expired)
    assert ran.exit_code == 0 and json.loads(ran.stdout)["revoked"] is False


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--jti", "garbage"], "not a token id"),
        (["--subject", "alice", "--jti", new_jti("alice", 2_000_000_000)], "give one of"),
        (["--subject", ""], "cannot be empty"),
        ([], "no token"),
    ],
)
def test_revoke_bad_input(configured, args, reason):
    ran = configured("token", "revoke", *args, input="")
    assert ran.exit_code == 2 and one_error_line(ran) and reason in ran.stderr


def test_revoke_token_and_subject_together(configured):
    token = mint(configured, "--subject", "alice")["access_token"]
    ran = configured("token", "revoke", token, "--subject", "alice")
    assert ran.exit_code == 2 and one_error_line(ran) and token not in ran.stderr
    assert verify(configured, token)[0] == 0  # nothing was revoked


# -- refresh -----------------------------------------------------------------------------


def test_refresh_rotates_and_tolerates_a_quick_second_presentation(configured):
    minted = mint(configured, "--subject", "alice", "--role", "user")
    code, pair = refresh(configured, minted["refresh_token"])
    assert code == 0 and set(pair) == MINT_FIELDS and pair["token_type"] == "bearer"
    assert pair["refresh_token"] != minted["refresh_token"] and pair["jti"] != minted["jti"]
    code, verdict = verify(configured, pair["access_token"], "-p", "files:read")
    assert (code, verdict["claims"]["roles"]) == (0, ["user"])  # the grants carry over
    # within tokens.reuse_leeway (2 s): two concurrent refreshes of one client both work
    code, again = refresh(configured, minted["refresh_token"])
    assert code == 0 and again["refresh_token"] != pair["refresh_token"]
    assert refresh(configured, pair["refresh_token"])[0] == 0


def test_quiet_and_human_refresh(configured):
    minted = mint(configured, "--subject", "alice")
    quiet = configured("token", "refresh", "-q", minted["refresh_token"])
    assert quiet.exit_code == 0 and quiet.stdout.count("\n") == 1
    assert verify(configured, quiet.stdout.strip())[0] == 0
    wrong = configured("token", "refresh", minted["access_token"])
    assert (wrong.exit_code, wrong.stdout.strip()) == (1, "invalid: wrong_type")


def test_refresh_reuse_revokes_the_family(configured):
    env = {"MCPSEC_JWT_REUSE_LEEWAY": "0s"}
    minted = mint(configured, "--subject", "alice", env=env)
    code, first = refresh(configured, minted["refresh_token"], env=env)
    assert code == 0
    assert verify(configured, first["access_token"], env=env)[0] == 0

    code, doc = refresh(configured, minted["refresh_token"], env=env)
    assert (code, doc) == (1, {"valid": False, "reason": "reuse_detected"})
    assert verify(configured, first["access_token"], env=env)[1]["reason"] == "revoked"
    assert verify(configured, minted["access_token"], env=env)[1]["reason"] == "revoked"
    code, doc = refresh(configured, first["refresh_token"], env=env)
    assert code == 1 and doc["reason"] in {"reuse_detected", "revoked"}


# -- the store is down -------------------------------------------------------------------


def test_a_store_that_is_down_fails_closed(configured):
    minted = mint(configured, "--subject", "alice")
    token, refresh_token = minted["access_token"], minted["refresh_token"]
    down = ["--store", f"redis://127.0.0.1:{free_port()}/0"]
    env = {"MCPSEC_STORE_TIMEOUT": "1s"}
    for args in (["token", "verify", token], ["token", "verify", "--json", token]):
        ran = configured(*down, *args, env=env)
        assert ran.exit_code == 5 and one_error_line(ran)
        assert ran.stdout == ""  # never "valid"
        assert token not in ran.stderr
    ran = configured(*down, "token", "mint", "--subject", "alice", env=env)
    assert ran.exit_code == 5 and one_error_line(ran) and ran.stdout == ""
    for args in (
        ["token", "revoke", "--subject", "alice"],
        ["token", "revoke", token],
        ["token", "refresh", refresh_token],
    ):
        ran = configured(*down, *args, env=env)
        assert ran.exit_code == 5 and one_error_line(ran), args
        assert ran.stdout == "" and token not in ran.stderr and refresh_token not in ran.stderr
    assert verify(configured, token)[0] == 0  # nothing was revoked on the real store


# -- a real process ----------------------------------------------------------------------


def test_mint_verify_revoke_through_pipes(mcpsec_process):
    assert mcpsec_process("config", "init").exit_code == 0
    minted = mcpsec_process("token", "mint", "--subject", "alice", "--quiet")
    assert minted.exit_code == 0 and minted.stderr == ""
    ok = mcpsec_process("token", "verify", "--json", input=minted.stdout)
    assert ok.exit_code == 0 and json.loads(ok.stdout)["valid"] is True
    assert mcpsec_process("token", "revoke", "-", input=minted.stdout).exit_code == 0
    after = mcpsec_process("token", "verify", input=minted.stdout)
    assert (after.exit_code, after.stdout.strip()) == (1, "invalid: revoked")
    bad = mcpsec_process("token", "inspect", input="garbage\n")
    assert bad.exit_code == 2 and one_error_line(bad)
