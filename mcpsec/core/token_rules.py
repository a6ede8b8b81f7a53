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
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from mcpsec.core.errors import ConfigError
from mcpsec.core.secret_files import MIN_SECRET_BYTES
from mcpsec.core.signing_keys import Algorithm

MAX_TOKEN_BYTES: Final = 8192
MAX_HEADER_BYTES: Final = 1024
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
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
    REUSE_DETECTED = "reuse_detected"  # a spent refresh token, presented again


@dataclass(frozen=True)
class VerifyKey:
    kid: str
    alg: Algorithm
    key: Any = field(repr=False)  # a public key object, or the HS256 secret bytes

    def __post_init__(self) -> None:
        """A key that cannot verify its algorithm is a configuration error at load time,
        not an exception on every token."""
        if not _key_fits(self.alg, self.key):
            raise ConfigError(f"verification key {self.kid} is not a usable {self.alg} key")


@dataclass(frozen=True)
class Policy:
    issuer: str
    audience: str | None = None  # None: `aud` is not checked (a server should set it)
    algorithms: frozenset[Algorithm] = frozenset(Algorithm)
    leeway: float = 0.0  # seconds of clock skew forgiven on exp and nbf

    def __post_init__(self) -> None:
        if not 0 <= self.leeway <= 300:  # also refuses NaN
            raise ConfigError(f"token leeway must be 0 to 300 seconds, got {self.leeway}")


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
    check_times: bool = True,
) -> TokenCheck:
    """Signature and claims; no store involved. Never raises on a hostile token.

    `check_times=False` skips only `exp`/`nbf`/`iat`: revoking an expired token is allowed.
    """
    parts = _parts(token)
    if parts is None:
        return _no(Reason.MALFORMED)
    header, claims, signed, signature = parts
    if "crit" in header:
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
    if not _signature_ok(signed, signature, chosen):
        return _no(Reason.BAD_SIGNATURE)
    return _claims(claims, policy, now, expected, check_times)


def read_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Header and claims, parsed as strictly as for verification but trusted for nothing:
    what `token inspect` shows. None when the token is not a clean JWS."""
    parts = _parts(token)
    return (parts[0], parts[1]) if parts else None


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes] | None:
    """Header, claims, signing input and signature, decoded strictly; None for anything that
    is not a clean JWS."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
        return None
    pieces = token.split(".")
    if len(pieces) != 3 or not all(pieces[:2]):
        return None
    if len(pieces[0]) > MAX_HEADER_BYTES:
        return None
    try:
        header = _json(_b64(pieces[0]))
        claims = _json(_b64(pieces[1]))
        signature = _b64(pieces[2])  # one spelling per signature: no '=' padding, no spare bits
    except (ValueError, RecursionError):  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    return header, claims, f"{pieces[0]}.{pieces[1]}".encode("ascii"), signature


def _b64(segment: str) -> bytes:
    """Canonical base64url only, so that one token has exactly one spelling."""
    if not _B64URL.fullmatch(segment):
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != segment:
        raise ValueError("non-canonical base64url")
    return raw


def _json(raw: bytes) -> Any:
    return _DECODER.decode(raw.decode("utf-8"))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """PyJWT would keep the last of two `exp` members; we refuse the object. (The dict is
    built in C; only a size mismatch needs a closer look.)"""
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder, built once: this runs twice on every token verified.
_DECODER: Final = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def _signature_ok(signed: bytes, signature: bytes, key: VerifyKey) -> bool:
    """PyJWT's algorithm alone, on what was already parsed: the header and claims are not
    decoded a second time, and PyJWT's lenient claim handling never runs."""
    return bool(_verifiers()[key.alg.value].verify(signed, key.key, signature))


@functools.cache
def _verifiers() -> dict[str, Any]:
    from jwt.algorithms import get_default_algorithms

    return dict(get_default_algorithms())


def _claims(  # noqa: PLR0911 - one early return per rule, in the order they apply
    claims: dict[str, Any], policy: Policy, now: float, expected: TokenType, check_times: bool
) -> TokenCheck:
    if any(name not in claims for name in REQUIRED_CLAIMS):
        return _no(Reason.MALFORMED)
    times = [claims[name] for name in ("iat", "nbf", "exp")]
    if not all(is_time(t) for t in times):
        return _no(Reason.MALFORMED)  # "exp": "1700000000", NaN or 1e400 is not a time
    if not all(_is_name(claims[name]) for name in ("sub", "jti")):
        return _no(Reason.MALFORMED)
    if claims["iss"] != policy.issuer:
        return _no(Reason.WRONG_ISSUER)
    if policy.audience is not None and not _audience_ok(claims.get("aud"), policy.audience):
        return _no(Reason.WRONG_AUDIENCE)
    if claims["type"] != expected.value:
        return _no(Reason.WRONG_TYPE)
    if not check_times:
        return TokenCheck(True, None, claims)
    # Written so that a NaN anywhere fails closed: every comparison with NaN is false.
    if not now - policy.leeway < claims["exp"]:
        return _no(Reason.EXPIRED)
    if not (claims["nbf"] <= now + policy.leeway and claims["iat"] <= now + policy.leeway):
        return _no(Reason.NOT_YET_VALID)  # issued "in the future" would dodge a subject cut-off
    return TokenCheck(True, None, claims)


def is_time(value: Any) -> bool:
    """A JWT NumericDate we accept: a non-negative number below 2**53, never a bool or NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 <= value < 2**53  # also false for NaN and infinity; no int-to-float overflow


def _is_name(value: Any) -> bool:
    """A non-empty string that encodes as UTF-8 (no lone surrogates)."""
    if not isinstance(value, str) or not value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _audience_ok(aud: Any, expected: str) -> bool:
    if isinstance(aud, str):
        return aud == expected
    return isinstance(aud, list) and expected in aud and all(isinstance(a, str) for a in aud)


def _key_fits(alg: Algorithm, key: Any) -> bool:
    if alg is Algorithm.HS256:
        return (
            isinstance(key, bytes)
            and len(key) >= MIN_SECRET_BYTES
            and not key.lstrip().startswith(b"-----")  # a PEM is never an HMAC secret
        )
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if alg is Algorithm.EDDSA:
        return isinstance(key, ed25519.Ed25519PublicKey)
    if alg is Algorithm.ES256:
        return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    return isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048


def _no(reason: Reason) -> TokenCheck:
    return TokenCheck(False, reason)
