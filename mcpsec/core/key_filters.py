"""Which keys `keys list` shows: by status, by coming expiry, by lack of use."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mcpsec.core.durations import parse_duration
from mcpsec.core.errors import InvalidInputError
from mcpsec.core.key_records import ApiKey, Status


class StatusChoice(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"
    ALL = "all"


@dataclass(frozen=True)
class KeyFilter:
    status: StatusChoice = StatusChoice.ALL
    expiring_within: float | None = None  # seconds: active keys that expire that soon
    unused_for: float | None = None  # seconds: keys not used for that long (or never)

    def matches(self, key: ApiKey, now: float) -> bool:
        if self.status is not StatusChoice.ALL and key.status != Status(self.status.value):
            return False
        if self.expiring_within is not None and (
            key.status is not Status.ACTIVE
            or key.expires_at is None
            or key.expires_at.timestamp() > now + self.expiring_within
        ):
            return False
        if self.unused_for is not None:
            last = key.last_used_at or key.created_at
            if last.timestamp() > now - self.unused_for:
                return False
        return True


def parse_filter(status: str, expiring_within: str | None, unused_for: str | None) -> KeyFilter:
    """The filter as the command line spells it."""
    try:
        chosen = StatusChoice(status.lower())
    except ValueError:
        choices = ", ".join(s.value for s in StatusChoice)
        raise InvalidInputError(
            f"status {status!r} is not one of {choices}", field="status"
        ) from None
    return KeyFilter(
        chosen,
        parse_duration(expiring_within, field="--expiring-within") if expiring_within else None,
        parse_duration(unused_for, field="--unused-for") if unused_for else None,
    )
