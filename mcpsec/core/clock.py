"""One injectable clock, so that expiry and skew are testable without sleeping.

clock = SystemClock()
clock.now()            # float seconds since the epoch, UTC
ManualClock(1_700_000_000).advance(60)
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Anything that can tell the current time as epoch seconds."""

    def now(self) -> float: ...


class SystemClock:
    """The machine's wall clock."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to; for tests of expiry and refill."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


def to_datetime(epoch: float) -> datetime:
    """Epoch seconds as an aware UTC datetime (never a naive local time)."""
    return datetime.fromtimestamp(epoch, tz=UTC)
