"""Crafted tokens against the verification rules: each attack gets its reason, none raises."""

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from mcpsec.core.errors import ConfigError
from mcpsec.core.signing_keys import Algorithm
from mcpsec.core.token_rules import (
    MAX_TOKEN_BYTES,
    Policy,
    Reason,
    TokenType,
    VerifyKey,
    check_token,
)

NOW = 1_800_000_000.0
ED = ed25519.Ed25519PrivateKey.generate()
RS = rsa.generate_private_key(public_exponent=65537, key_size=2048)
HS_SECRET = b"s" * 48
KEYS = {
    "ed": VerifyKey("ed", Algorithm.EDDSA, ED.public_key()),
    "rs": VerifyKey("rs", Algorithm.RS256, RS.public_key()),
    "hs": VerifyKey("hs", Algorithm.HS256, HS_SECRET),
}
POLICY = Policy(issuer="mcpsec", audience="https://mcp.example")


def claims(**changes):
    base = {
        "sub": "alice",
        "iss": "mcpsec",
        "aud": "https://mcp.example",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 600,
        "jti": "j1",
        "type": "access",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(payload=None, kid="ed", key=ED, alg="EdDSA", headers=None):
    return jwt.encode(
        payload or claims(), key, algorithm=alg, headers={"kid": kid, **(headers or {})}
    )


def check(token, expected=TokenType.ACCESS, policy=POLICY, now=NOW):
    return check_token(token, KEYS, policy, now=now, expected=expected)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header, payload, signature=b"x"):
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)]
    )


@pytest.mark.parametrize(
    ("kid", "key", "alg"), [("ed", ED, "EdDSA"), ("rs", RS, "RS256"), ("hs", HS_SECRET, "HS256")]
)
def test_valid_tokens(kid, key, alg):
    result = check(signed(kid=kid, key=key, alg=alg))
    assert result.valid and result.reason is None and result.claims["sub"] == "alice"


def test_alg_none_is_refused():
    token = forge({"alg": "none", "kid": "ed", "typ": "JWT"}, claims(), b"")
    assert check(token).reason is Reason.ALGORITHM_NOT_ALLOWED


def test_hs256_signed_with_the_public_key_as_secret():
    """The classic confusion: an HS256 token whose HMAC key is the server's public key."""
    for kid, public in (("rs", RS.public_key()), ("ed", ED.public_key())):
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = {"alg": "HS256", "kid": kid, "typ": "JWT"}
        unsigned = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}"
        import hashlib
        import hmac

        mac = hmac.new(pem, unsigned.encode(), hashlib.sha256).digest()
        assert check(f"{unsigned}.{b64(mac)}").reason is Reason.ALGORITHM_NOT_ALLOWED


def test_an_algorithm_the_policy_does_not_allow():
    policy = Policy(issuer="mcpsec", algorithms=frozenset({Algorithm.EDDSA}))
    assert check(signed(kid="hs", key=HS_SECRET, alg="HS256"), policy=policy).reason is (
        Reason.ALGORITHM_NOT_ALLOWED
    )


def test_refresh_token_where_an_access_token_is_expected():
    token = signed(claims(type="refresh"))
    assert check(token).reason is Reason.WRONG_TYPE
    assert check(token, expected=TokenType.REFRESH).valid


def test_tampered_payload_with_the_original_signature():
    header, _, signature = signed().split(".")
    evil = b64(json.dumps(claims(sub="admin")).encode())
    assert check(f"{header}.{evil}.{signature}").reason is Reason.BAD_SIGNATURE


def test_unknown_or_missing_kid():
    assert check(signed(kid="nobody")).reason is Reason.UNKNOWN_KEY
    token = jwt.encode(claims(), ED, algorithm="EdDSA")  # no kid at all
    assert check(token).reason is Reason.UNKNOWN_KEY


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c.d",
        "!!!.???.***",
        "eyJ.eyJ.x",
        "\x00.\x00.\x00",
        "é.é.é",
        "." * 2,
    ],
)
def test_garbage_is_malformed(token):
    assert check(token).reason is Reason.MALFORMED


def test_a_huge_token_is_refused_before_parsing():
    token = signed(claims(pad="x" * 1_000_000))
    assert len(token) > MAX_TOKEN_BYTES
    assert check(token).reason is Reason.MALFORMED


def test_duplicate_claims_are_refused():
    header = b64(json.dumps({"alg": "EdDSA", "kid": "ed", "typ": "JWT"}).encode())
    body = json.dumps(claims())[:-1] + ', "sub": "admin"}'
    unsigned = f"{header}.{b64(body.encode())}"
    signature = ED.sign(unsigned.encode())
    assert check(f"{unsigned}.{b64(signature)}").reason is Reason.MALFORMED


@pytest.mark.parametrize(
    "changes",
    [{"exp": str(int(NOW + 600))}, {"exp": None}, {"jti": None}, {"type": None}, {"iat": True}],
)
def test_missing_or_mistyped_claims(changes):
    assert check(signed(claims(**changes))).reason is Reason.MALFORMED


def test_crit_headers_are_refused():
    assert check(signed(headers={"crit": ["exp"]})).reason is Reason.MALFORMED


def test_times_use_the_given_clock():
    token = signed()
    assert check(token, now=NOW + 599).valid
    assert check(token, now=NOW + 600).reason is Reason.EXPIRED
    assert check(signed(claims(nbf=NOW + 30))).reason is Reason.NOT_YET_VALID
    lenient = Policy(issuer="mcpsec", audience="https://mcp.example", leeway=5)
    assert check(token, now=NOW + 603, policy=lenient).valid


def test_issuer_and_audience():
    assert check(signed(claims(iss="evil"))).reason is Reason.WRONG_ISSUER
    assert check(signed(claims(aud="https://other"))).reason is Reason.WRONG_AUDIENCE
    assert check(signed(claims(aud=["https://other", "https://mcp.example"]))).valid
    assert check(signed(claims(aud=None))).reason is Reason.WRONG_AUDIENCE
    no_audience = Policy(issuer="mcpsec")
    assert check(signed(claims(aud=None)), policy=no_audience).valid


@settings(max_examples=60, deadline=None)
@given(
    sub=st.text(min_size=1, max_size=40),
    extra=st.dictionaries(
        st.text(min_size=1, max_size=10).filter(lambda k: k not in claims()),
        st.one_of(st.integers(), st.text(max_size=20), st.booleans()),
        max_size=5,
    ),
    kid=st.sampled_from(["ed", "rs", "hs"]),
)
def test_round_trip_random_claims(sub, extra, kid):
    key, alg = {"ed": (ED, "EdDSA"), "rs": (RS, "RS256"), "hs": (HS_SECRET, "HS256")}[kid]
    payload = {**claims(sub=sub), **extra}
    result = check(signed(payload, kid=kid, key=key, alg=alg))
    assert result.valid and result.claims == json.loads(json.dumps(payload))


def test_real_clock_smoke():
    assert check(
        signed(claims(iat=time.time(), nbf=time.time(), exp=time.time() + 60)), now=time.time()
    ).valid


def nested(depth):
    return b'{"alg":"EdDSA","kid":"ed","x":' + b"[" * depth + b"]" * depth + b"}"


def test_deeply_nested_json_is_malformed_even_deep_in_a_call_stack():
    payload = b"{" + b'"x":' + b"[" * 1500 + b"]" * 1500 + b"}"
    for token in (
        f"{b64(nested(1500))}.{b64(b'{}')}.AAAA",
        f"{b64(nested(1))}.{b64(payload)}.AAAA",
    ):
        assert check(token).reason is Reason.MALFORMED

        def deep(n, token=token):
            return deep(n - 1, token) if n else check(token)

        assert deep(600).reason is Reason.MALFORMED


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1, 10**309, 2**53])
def test_times_that_are_not_real_times_are_malformed(bad):
    for name in ("exp", "nbf", "iat"):
        assert check(signed(claims(**{name: bad}))).reason is Reason.MALFORMED


def test_nan_in_the_clock_or_policy_fails_closed():
    assert not check(signed(), now=float("nan")).valid
    with pytest.raises(ConfigError, match="leeway"):
        Policy(issuer="mcpsec", leeway=float("nan"))


@pytest.mark.parametrize("crit", [[], None, "", 0, {}])
def test_any_crit_header_is_malformed(crit):
    assert check(signed(headers={"crit": crit})).reason is Reason.MALFORMED


@pytest.mark.parametrize(
    "changes", [{"sub": 5}, {"sub": ""}, {"jti": ""}, {"jti": ["a"]}, {"sub": "\ud800"}]
)
def test_subject_and_jti_must_be_real_names(changes):
    assert check(signed(claims(**changes))).reason is Reason.MALFORMED


def test_one_spelling_per_token():
    token = signed()
    assert check(token).valid
    assert check(token + "=").reason is Reason.MALFORMED
    assert check(token + "==").reason is Reason.MALFORMED


def test_issued_in_the_future_is_not_yet_valid():
    assert check(signed(claims(iat=NOW + 60))).reason is Reason.NOT_YET_VALID


def test_es256():
    key = ec.generate_private_key(ec.SECP256R1())
    keys = {**KEYS, "es": VerifyKey("es", Algorithm.ES256, key.public_key())}
    token = signed(kid="es", key=key, alg="ES256")
    assert check_token(token, keys, POLICY, now=NOW).valid


@pytest.mark.parametrize(
    ("alg", "key"),
    [
        (Algorithm.HS256, b"short"),
        (Algorithm.HS256, b"-----BEGIN PUBLIC KEY-----" + b"x" * 40),
        (Algorithm.EDDSA, RS.public_key()),
        (Algorithm.RS256, "not a key"),
    ],
)
def test_a_key_that_cannot_verify_its_algorithm_is_refused_at_load(alg, key):
    with pytest.raises(ConfigError, match="not a usable"):
        VerifyKey("k", alg, key)
