"""PKCE (RFC 7636): code verifiers, their challenges, and constant-time verification.

pair = generate(length=64)                       # S256 unless asked otherwise
verify(pair.code_verifier, pair.code_challenge)  # True
challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")  # "E9Melhoa2Owv…" (App. B)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass, field
from enum import StrEnum

from mcpsec.core.errors import InvalidInputError

MIN_LENGTH = 43
MAX_LENGTH = 128
DEFAULT_LENGTH = 64
# RFC 7636 section 4.1: unreserved characters of RFC 3986.
ALPHABET = string.ascii_letters + string.digits + "-._~"
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")


class Method(StrEnum):
    S256 = "S256"
    PLAIN = "plain"

    @property
    def warning(self) -> str | None:
        """Why an operator should think twice (RFC 7636 section 7.2), or None."""
        if self is Method.PLAIN:
            return (
                "the plain method sends the verifier itself as the challenge; "
                "an intercepted authorization request is enough to redeem the code. Use S256."
            )
        return None


@dataclass(frozen=True)
class PkcePair:
    """A verifier and its challenge; the verifier is the secret half and never shown by repr."""

    code_verifier: str = field(repr=False, metadata={"essential": True})
    code_challenge: str = field(metadata={"essential": True})
    code_challenge_method: Method


def parse_method(text: str) -> Method:
    """Accept the RFC's spellings (`S256`, `plain`), case-insensitively, and nothing else."""
    for method in Method:
        if text.lower() == method.value.lower():
            return method
    raise InvalidInputError(
        f"unknown PKCE method {text!r}; use S256 (or plain, only for clients that cannot hash)",
        field="method",
    )


def validate_verifier(verifier: str) -> str:
    """Return the verifier unchanged, or say which RFC 7636 rule it breaks."""
    if not MIN_LENGTH <= len(verifier) <= MAX_LENGTH:
        raise InvalidInputError(
            f"code verifier is {len(verifier)} characters; "
            f"RFC 7636 requires {MIN_LENGTH} to {MAX_LENGTH}",
            field="verifier",
        )
    if not _VERIFIER.fullmatch(verifier):
        raise InvalidInputError(
            "code verifier may only contain A-Z a-z 0-9 - . _ ~ (RFC 7636 section 4.1)",
            field="verifier",
        )
    return verifier


def challenge_of(verifier: str, method: Method = Method.S256) -> str:
    """The code challenge the client sends in its authorization request."""
    validate_verifier(verifier)
    if method is Method.PLAIN:
        return verifier
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def generate(length: int = DEFAULT_LENGTH, method: Method = Method.S256) -> PkcePair:
    """A fresh verifier drawn by `secrets` from the whole unreserved alphabet, and its challenge."""
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise InvalidInputError(
            f"length {length} is outside {MIN_LENGTH}..{MAX_LENGTH} (RFC 7636 section 4.1)",
            field="length",
        )
    verifier = "".join(secrets.choice(ALPHABET) for _ in range(length))
    return PkcePair(verifier, challenge_of(verifier, method), method)


def verify(verifier: str, challenge: str, method: Method = Method.S256) -> bool:
    """True when `verifier` answers `challenge`; compared in constant time."""
    validate_challenge(challenge, method)
    expected = challenge_of(verifier, method)
    return hmac.compare_digest(expected.encode("ascii"), challenge.encode("ascii"))


def validate_challenge(challenge: str, method: Method = Method.S256) -> str:
    """An S256 challenge is 43 base64url characters; a plain one is shaped like a verifier."""
    if method is Method.PLAIN:
        try:
            return validate_verifier(challenge)
        except InvalidInputError as e:
            raise InvalidInputError(
                f"code challenge: {e.message.replace('code verifier', 'a plain challenge')}",
                field="challenge",
            ) from e
    if not _S256_CHALLENGE.fullmatch(challenge):
        raise InvalidInputError(
            "code challenge is not an S256 challenge (43 characters of base64url, no padding)",
            field="challenge",
        )
    return challenge
