"""How an API key is kept in the store, and how a stored record reads back as an `ApiKey`.

The record holds metadata and the SHA-256 of the secret, never the secret. Field names are
part of the store contract: `touch_key` reads `hash`, `status`, `expires_at` and writes
`use_count` and `last_used_at` (see `mcpsec/store/scripts/key_touch.lua`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from mcpsec.core.clock import to_datetime
from mcpsec.core.durations import format_duration, parse_duration
from mcpsec.core.errors import InvalidInputError
from mcpsec.store import Record

OWNER_KIND = "key_owner"  # one empty record per (owner, key): `<owner>:<key id>`
MAX_NAME = 100
MAX_REASON = 500
_OWNER = re.compile(r"[^\s{}:\x00-\x1f\x7f]{1,100}")
_RATE = re.compile(r"(?P<capacity>\d+)/(?P<per>[0-9a-z.]+)")


class Status(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True)
class RateLimit:
    """At most `capacity` requests per `per_seconds`; enforced by the rate limiter."""

    capacity: int
    per_seconds: float

    def __str__(self) -> str:
        return f"{self.capacity}/{format_duration(self.per_seconds)}"


@dataclass(frozen=True)
class ApiKey:
    """What anyone may know about a key: never its secret, never its hash."""

    key_id: str = field(metadata={"essential": True})
    name: str
    owner: str | None
    status: Status
    roles: tuple[str, ...]
    permissions: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    use_count: int
    rate_limit: RateLimit | None
    rotated_from: str | None
    rotated_to: str | None
    revoked_at: datetime | None
    revoked_reason: str | None


def check_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise InvalidInputError("a key name cannot be empty", field="name")
    if len(cleaned) > MAX_NAME:
        raise InvalidInputError(
            f"a key name is at most {MAX_NAME} characters, this one has {len(cleaned)}",
            field="name",
        )
    return _printable(cleaned, "a key name")


def check_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    if len(reason) > MAX_REASON:
        raise InvalidInputError(
            f"a revocation reason is at most {MAX_REASON} characters", field="reason"
        )
    return _printable(reason, "a revocation reason")


def _printable(text: str, what: str) -> str:
    """No control characters (C0, C1) or bidi overrides: they would rewrite the operator's
    terminal, or make `keys list` show something other than what is stored."""
    if any(unicodedata.category(c) in {"Cc", "Cf"} for c in text):
        raise InvalidInputError(f"{what} cannot contain control or formatting characters")
    return text


def check_owner(owner: str) -> str:
    if not _OWNER.fullmatch(owner):
        raise InvalidInputError(
            f"owner {owner!r} must be 1-100 characters without spaces, braces or colons",
            field="owner",
        )
    return owner


def parse_rate_limit(text: str) -> RateLimit:
    """`CAP/PER`: `100/1m`, `10/s`, `5000/1h`. A bare unit means one of it."""
    match = _RATE.fullmatch(text.strip().lower())
    if match is None or int(match["capacity"]) <= 0:
        raise InvalidInputError(
            f"rate limit {text!r} is not CAPACITY/PERIOD", field="rate_limit", hint="e.g. 100/1m"
        )
    per = match["per"]
    seconds = parse_duration(per if per[0].isdigit() else f"1{per}", field="rate limit period")
    return RateLimit(int(match["capacity"]), seconds)


def to_fields(key: ApiKey, secret_hash: str) -> dict[str, Any]:
    """The stored form: epoch seconds for times, plain JSON for the rest, and the hash."""
    return {
        "name": key.name,
        "owner": key.owner,
        "status": key.status.value if key.status is Status.REVOKED else Status.ACTIVE.value,
        "roles": list(key.roles),
        "permissions": list(key.permissions),
        "created_at": key.created_at.timestamp(),
        "expires_at": epoch(key.expires_at),
        "last_used_at": epoch(key.last_used_at),
        "use_count": key.use_count,
        "rate_limit": _rate_fields(key.rate_limit),
        "rotated_from": key.rotated_from,
        "rotated_to": key.rotated_to,
        "revoked_at": epoch(key.revoked_at),
        "revoked_reason": key.revoked_reason,
        "grant_tokens": grant_tokens(key.roles, key.permissions),
        "hash": secret_hash,
    }


def grant_tokens(roles: Iterable[str], permissions: Iterable[str]) -> str:
    """What `touch_key` matches a required permission against: " files:read @user "."""
    tokens = [*permissions, *(f"@{role}" for role in roles)]
    return f" {' '.join(tokens)} " if tokens else ""


def from_record(record: Record, now: float) -> ApiKey:
    """The key as it stands at `now`: a stored "active" key past its expiry reads as expired."""
    f: Mapping[str, Any] = record.fields
    return ApiKey(
        key_id=record.id,
        name=str(f.get("name", "")),
        owner=f.get("owner"),
        status=status_at(f, now),
        roles=tuple(f.get("roles") or ()),
        permissions=tuple(f.get("permissions") or ()),
        created_at=to_datetime(float(f.get("created_at") or 0)),
        expires_at=_time(f.get("expires_at")),
        last_used_at=_time(f.get("last_used_at")),
        use_count=int(f.get("use_count") or 0),
        rate_limit=_rate(f.get("rate_limit")),
        rotated_from=f.get("rotated_from"),
        rotated_to=f.get("rotated_to"),
        revoked_at=_time(f.get("revoked_at")),
        revoked_reason=f.get("revoked_reason"),
    )


def status_at(fields: Mapping[str, Any], now: float) -> Status:
    if fields.get("status") != Status.ACTIVE.value:
        return Status.REVOKED
    expires_at = fields.get("expires_at")
    if expires_at is not None and float(expires_at) <= now:
        return Status.EXPIRED
    return Status.ACTIVE


def epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment else None


def _time(value: Any) -> datetime | None:
    return to_datetime(float(value)) if value is not None else None


def _rate_fields(limit: RateLimit | None) -> dict[str, Any] | None:
    return {"capacity": limit.capacity, "per_seconds": limit.per_seconds} if limit else None


def _rate(value: Any) -> RateLimit | None:
    if not isinstance(value, Mapping):
        return None
    return RateLimit(int(value["capacity"]), float(value["per_seconds"]))
