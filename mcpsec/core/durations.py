"""Durations as people write them in runbooks: `90s`, `30m`, `24h`, `7d`, `2w`, `1h30m`.

parse_duration("1h30m")    # 5400.0
format_duration(5400)      # "1h30m"
"""

from __future__ import annotations

import re

from mcpsec.core.errors import InvalidInputError

MAX_SECONDS = 100 * 365 * 86400.0
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")


def parse_duration(text: str, *, field: str = "duration") -> float:
    """Return the seconds in `text`; a bare number is refused because its unit would be a guess."""
    cleaned = text.strip().lower()
    if not _WHOLE.fullmatch(cleaned):
        raise InvalidInputError(
            f"{field}: {text!r} is not a duration",
            field=field,
            hint="write it like 90s, 30m, 24h, 7d, 2w or 1h30m",
        )
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned))
    if seconds <= 0:
        raise InvalidInputError(f"{field}: {text!r} must be longer than zero", field=field)
    if seconds > MAX_SECONDS:  # also catches a number so long it became infinity
        raise InvalidInputError(f"{field}: {text!r} is longer than 100 years", field=field)
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of whole seconds, e.g. 90061 -> `1d1h1m1s`; `0s` for zero."""
    remaining = round(seconds)
    if remaining <= 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = int(_UNITS[unit])
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_lifetime(text: str, *, field: str = "ttl") -> float | None:
    """A duration, or `never` (None): how long something lives."""
    if text.strip().lower() == "never":
        return None
    return parse_duration(text, field=field)


def check_lifetime(seconds: float | None, *, field: str = "ttl") -> float | None:
    """How long something may live: None (never), or more than zero and at most 100 years.

    The one bound for every expiry (records, keys, grace periods); NaN and infinity fail
    both comparisons, so they are refused too.
    """
    if seconds is not None and not 0 < seconds <= MAX_SECONDS:
        raise InvalidInputError(f"{field} must be more than 0 and at most 100 years", field=field)
    return seconds
