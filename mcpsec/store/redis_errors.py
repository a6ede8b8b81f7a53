"""Every redis-py failure becomes one mcpsec error with a sentence an operator can act on.

Catching only `ConnectionError` would miss timeouts, read-only replicas, OOM, ACL refusals and
cluster errors; this maps the whole family, and never lets a password into the message.
"""

from __future__ import annotations

import redis
from redis.exceptions import RedisClusterException

from mcpsec.core.errors import StoreError, StoreReadOnlyError, StoreUnavailableError

_HINT = "check that Redis is running and reachable, or point --store / MCPSEC_STORE_URL elsewhere"


def translate(  # noqa: PLR0911 - one return per error family reads best as a table
    error: redis.RedisError | RedisClusterException, where: str
) -> StoreError:
    """`where` is the redacted store URL."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, redis.AuthenticationError):
        return StoreUnavailableError(
            f"the store at {where} refused the credentials: {text}",
            hint="check the user and password in the store URL or MCPSEC_STORE_URL",
        )
    if isinstance(error, redis.TimeoutError):
        return StoreUnavailableError(f"the store at {where} did not answer in time", hint=_HINT)
    if isinstance(error, redis.ReadOnlyError):
        return StoreReadOnlyError(
            f"the store at {where} is a read-only replica and refused a write",
            hint="point the store URL at the primary",
        )
    if isinstance(error, redis.exceptions.NoPermissionError):
        return StoreError(
            f"the store at {where} denied a command to this ACL user: {text}",
            hint="grant the user the commands mcpsec needs (see `mcpsec doctor`)",
        )
    if isinstance(error, redis.ConnectionError | redis.exceptions.ClusterDownError):
        return StoreUnavailableError(f"the store at {where} is unreachable: {text}", hint=_HINT)
    if isinstance(error, RedisClusterException):
        return StoreUnavailableError(f"the cluster at {where} cannot serve: {text}", hint=_HINT)
    if text.startswith("OOM"):
        return StoreError(
            f"the store at {where} is out of memory and refused a write",
            hint="raise maxmemory or free space; mcpsec needs maxmemory-policy noeviction",
        )
    return StoreError(f"the store at {where} failed: {text}")
