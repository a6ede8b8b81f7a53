"""The rules a JWT must pass before anything it claims is believed (revocation comes after).

    keys = {kid: VerifyKey(kid, Algorithm.EDDSA, public_key)}
    check = check_token(token, keys, Policy(issuer="mcpsec", audience="https://mcp.example"),
                        now=clock.now(), expected=TokenType.ACCESS)
    check.valid, check.reason, check.claims

PyJWT does the signature; everything it would let by is checked here first or instead:
the size is capped before parsing; duplicate JSON members are refused (PyJWT keeps the last);
the algorithm is never taken from the token: the `kid` selects one configured key and that
key's own algorithm is the only one allowed, so an HS256 token "signed" with a public key
fails; `crit` headers are refused, since none is understood; `exp`, `iat`, `nbf` must be
numbers (not digit strings) and are checked against the injectable clock.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from mcpsec.core.signing_keys import Algorithm

MAX_TOKEN_BYTES: Final = 8192
REQUIRED_CLAIMS: Final = ("sub", "iss", "iat", "nbf", "exp", "jti", "type")


class TokenType(StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"


class Reason(StrEnum):
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    ALGORITHM_NOT_ALLOWED = "algorithm_not_allowed"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_TYPE = "wrong_type"
    REVOKED = "revoked"
    INSUFFICIENT_PERMISSION = "insufficient_permission"
    UNKNOWN_KEY = "unknown_key"


@dataclass(frozen=True)
class VerifyKey:
    kid: str
    alg: Algorithm
    key: Any = field(repr=False)  # a public key object, or the HS256 secret bytes


@dataclass(frozen=True)
class Policy:
    issuer: str
    audience: str | None = None  # None: `aud` is not checked (a server should set it)
    algorithms: frozenset[Algorithm] = frozenset(Algorithm)
    leeway: float = 0.0  # seconds of clock skew forgiven on exp and nbf


@dataclass(frozen=True)
class TokenCheck:
    valid: bool
    reason: Reason | None
    claims: Mapping[str, Any] = field(default_factory=dict)


def check_token(  # noqa: PLR0911 - one early return per rule, in the order they apply
    token: str,
    keys: Mapping[str, VerifyKey],
    policy: Policy,
    *,
    now: float,
    expected: TokenType = TokenType.ACCESS,
) -> TokenCheck:
    """Signature and claims; no store involved. Never raises on a hostile token."""
    parts = _parts(token)
    if parts is None:
        return _no(Reason.MALFORMED)
    header, claims = parts
    if header.get("crit"):
        return _no(Reason.MALFORMED)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in {a.value for a in policy.algorithms}:
        return _no(Reason.ALGORITHM_NOT_ALLOWED)
    kid = header.get("kid")
    chosen = keys.get(kid) if isinstance(kid, str) else None
    if chosen is None:
        return _no(Reason.UNKNOWN_KEY)
    if chosen.alg.value != alg:  # the key decides the algorithm, never the token
        return _no(Reason.ALGORITHM_NOT_ALLOWED)
    if not _signature_ok(token, chosen):
        return _no(Reason.BAD_SIGNATURE)
    return _claims(claims, policy, now, expected)


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Header and claims, decoded strictly; None for anything that is not a clean JWS."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
        return None
    pieces = token.split(".")
    if len(pieces) != 3 or not all(pieces[:2]):
        return None
    try:
        header = _json(_b64(pieces[0]))
        claims = _json(_b64(pieces[1]))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    return header, claims


def _b64(segment: str) -> bytes:
    if not all(c.isalnum() or c in "-_" for c in segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json(raw: bytes) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, value in pairs:
            if name in result:
                raise ValueError(f"duplicate member {name!r}")
            result[name] = value
        return result

    return json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)


def _signature_ok(token: str, key: VerifyKey) -> bool:
    import jwt

    try:
        jwt.decode(
            token,
            key.key,
            algorithms=[key.alg.value],
            options={
                "verify_signature": True,
                "verify_exp": False,  # checked below, against the injectable clock
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
                "require": [],
            },
        )
    except jwt.InvalidTokenError:
        return False
    return True


def _claims(  # noqa: PLR0911 - one early return per rule, in the order they apply
    claims: dict[str, Any], policy: Policy, now: float, expected: TokenType
) -> TokenCheck:
    if any(name not in claims for name in REQUIRED_CLAIMS):
        return _no(Reason.MALFORMED)
    times = [claims[name] for name in ("iat", "nbf", "exp")]
    if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in times):
        return _no(Reason.MALFORMED)  # "exp": "1700000000" is not a time
    if not isinstance(claims["sub"], str) or not isinstance(claims["jti"], str):
        return _no(Reason.MALFORMED)
    if claims["iss"] != policy.issuer:
        return _no(Reason.WRONG_ISSUER)
    if policy.audience is not None and not _audience_ok(claims.get("aud"), policy.audience):
        return _no(Reason.WRONG_AUDIENCE)
    if claims["type"] != expected.value:
        return _no(Reason.WRONG_TYPE)
    if now >= claims["exp"] + policy.leeway:
        return _no(Reason.EXPIRED)
    if now + policy.leeway < claims["nbf"]:
        return _no(Reason.NOT_YET_VALID)
    return TokenCheck(True, None, claims)


def _audience_ok(aud: Any, expected: str) -> bool:
    if isinstance(aud, str):
        return aud == expected
    return isinstance(aud, list) and expected in aud and all(isinstance(a, str) for a in aud)


def _no(reason: Reason) -> TokenCheck:
    return TokenCheck(False, reason)
