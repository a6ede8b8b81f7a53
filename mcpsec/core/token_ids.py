"""Token ids (`jti`) that say where their revocation lives and until when it must.

    jti = new_jti("alice", exp=1_800_000_000)   # "2bd806c97f0e00af.1800000000.Xq3…"
    parse_jti(jti)                               # JtiParts(tag="2bd8…", exp=1800000000)

A `jti` is `<subject tag>.<exp>.<random>`. The subject tag (a digest of `sub`) is the hash tag
that every revocation mark of the subject shares, so checking a token's own revocation, its
subject's cut-off and its family is one read of one cluster slot; and `revoke --jti` alone
knows both that slot and how long the revocation has to live, with no lookup. Verification
refuses a token whose `jti` disagrees with its own `sub` or `exp`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Final

from mcpsec.core.errors import InvalidInputError

_JTI: Final = re.compile(r"(?P<tag>[0-9a-f]{16})\.(?P<exp>[0-9]{1,16})\.[A-Za-z0-9_-]{22}")
_SUBJECT_FORBIDDEN: Final = re.compile(r"[\x00-\x1f\x7f]")
MAX_SUBJECT: Final = 200


@dataclass(frozen=True)
class JtiParts:
    tag: str
    exp: int


def subject_tag(subject: str) -> str:
    """16 hex digits of SHA-256: any subject (braces, spaces, Unicode) makes a safe hash tag."""
    return hashlib.sha256(subject.encode("utf-8")).hexdigest()[:16]


def new_jti(subject: str, exp: int) -> str:
    return f"{subject_tag(subject)}.{exp}.{secrets.token_urlsafe(16)}"


def parse_jti(jti: str) -> JtiParts:
    match = _JTI.fullmatch(jti)
    if match is None:
        raise InvalidInputError(
            f"{jti[:80]!r} is not a token id mcpsec issued (<tag>.<exp>.<random>)", field="jti"
        )
    return JtiParts(match["tag"], int(match["exp"]))


def jti_matches(jti: str, subject: str, exp: float) -> bool:
    """True when the id was made for this subject and expiry, as every id mcpsec mints is."""
    try:
        parts = parse_jti(jti)
    except InvalidInputError:
        return False
    return parts.tag == subject_tag(subject) and parts.exp == exp


def check_subject(subject: str) -> str:
    if not subject or not subject.strip():
        raise InvalidInputError("a subject cannot be empty", field="subject")
    if len(subject) > MAX_SUBJECT:
        raise InvalidInputError(
            f"a subject is at most {MAX_SUBJECT} characters, this one has {len(subject)}",
            field="subject",
        )
    if _SUBJECT_FORBIDDEN.search(subject):
        raise InvalidInputError("a subject cannot contain control characters", field="subject")
    _must_be_utf8(subject, "a subject", "subject")
    return subject


def check_audience(audience: str) -> str:
    """A resource URI (RFC 8707), or any name without spaces: what `aud` must equal."""
    if not audience or len(audience) > 2000 or any(c.isspace() for c in audience):
        raise InvalidInputError(
            "an audience is 1-2000 characters without spaces, like https://mcp.example.com",
            field="audience",
        )
    if _SUBJECT_FORBIDDEN.search(audience):
        raise InvalidInputError("an audience cannot contain control characters", field="audience")
    _must_be_utf8(audience, "an audience", "audience")
    return audience


def _must_be_utf8(text: str, what: str, field: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: argv bytes that were not UTF-8
        raise InvalidInputError(f"{what} must be valid UTF-8 text", field=field) from None
