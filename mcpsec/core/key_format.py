"""The API key format: `<prefix>_<key id>_<secret><checksum>`, e.g. `mcp_4fJq8Lw2Xc9a_…`.

    key, parts = new_key("mcp")
    parse_key(key).key_id            # names the key without its secret: lookup is one read
    secret_hash(parts.secret)        # the only form of the secret that is ever stored

The key id makes lookup one read and lets people talk about a key without its secret. The
6-character base62 CRC32 checksum of everything before it rejects a mistyped or forged key
before any store call, and lets secret scanners recognise our keys (as GitHub's do).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import zlib
from dataclasses import dataclass, field

from mcpsec.core.errors import InvalidInputError

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
KEY_ID_LENGTH = 12  # 71 bits: collisions are checked at creation anyway
SECRET_LENGTH = 43  # 43 base62 characters carry 256 bits: at least 32 random bytes
CHECKSUM_LENGTH = 6  # 62^6 > 2^32, so any CRC32 fits
DEFAULT_PREFIX = "mcp"
_PREFIX = re.compile(r"[a-z][a-z0-9]{0,15}")
_KEY = re.compile(
    rf"(?P<prefix>[a-z][a-z0-9]{{0,15}})_(?P<key_id>[0-9A-Za-z]{{{KEY_ID_LENGTH}}})_"
    rf"(?P<secret>[0-9A-Za-z]{{{SECRET_LENGTH}}})(?P<checksum>[0-9A-Za-z]{{{CHECKSUM_LENGTH}}})"
)
_KEY_ID = re.compile(rf"[0-9A-Za-z]{{{KEY_ID_LENGTH}}}")


class MalformedKeyError(InvalidInputError):
    """Not an mcpsec API key: wrong shape, or a checksum that does not match."""


@dataclass(frozen=True)
class KeyParts:
    prefix: str
    key_id: str
    secret: str = field(repr=False)


def check_prefix(prefix: str) -> str:
    if not _PREFIX.fullmatch(prefix):
        raise InvalidInputError(
            f"key prefix {prefix!r} must be 1-16 lowercase letters and digits, letter first",
            field="prefix",
        )
    return prefix


def check_key_id(key_id: str) -> str:
    if not _KEY_ID.fullmatch(key_id):
        raise InvalidInputError(
            f"{key_id!r} is not a key id ({KEY_ID_LENGTH} letters and digits)", field="key_id"
        )
    return key_id


def random_base62(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def checksum(body: str) -> str:
    """CRC32 of `body` as 6 base62 digits, zero-padded."""
    value = zlib.crc32(body.encode("ascii"))
    digits = []
    for _ in range(CHECKSUM_LENGTH):
        value, digit = divmod(value, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def format_key(parts: KeyParts) -> str:
    body = f"{parts.prefix}_{parts.key_id}_{parts.secret}"
    return body + checksum(body)


def new_key(prefix: str = DEFAULT_PREFIX) -> tuple[str, KeyParts]:
    parts = KeyParts(
        check_prefix(prefix), random_base62(KEY_ID_LENGTH), random_base62(SECRET_LENGTH)
    )
    return format_key(parts), parts


def parse_key(text: str) -> KeyParts:
    """Split a key and prove its checksum; says what is wrong without repeating the key."""
    match = _KEY.fullmatch(text)
    if match is None:
        raise MalformedKeyError(
            "not an mcpsec API key (expected <prefix>_<key id>_<secret><checksum>)", field="key"
        )
    body = text[:-CHECKSUM_LENGTH]
    if not secrets.compare_digest(checksum(body), match["checksum"]):
        raise MalformedKeyError("the API key's checksum does not match: it was mistyped or forged")
    return KeyParts(match["prefix"], match["key_id"], match["secret"])


def secret_hash(secret: str) -> str:
    """SHA-256 of the secret, hex. A 256-bit random secret needs no salt or slow hash."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()
