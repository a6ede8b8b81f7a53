"""The store: where keys, revocations, buckets and the audit log live; one protocol, any backend.

    store = open_store("sqlite:///var/lib/mcpsec/mcpsec.db")
    store = open_store("redis://localhost:6379/0", prefix="mcpsec:", timeout=2.0)

Backends are imported when opened, so a command that never touches the store never pays
for importing redis.
"""

from __future__ import annotations

from mcpsec.core.clock import Clock
from mcpsec.store.interface import (
    KEEP_TTL,
    KEY_GRANT_FIELDS,
    KEY_KIND,
    BucketEntry,
    BucketLevel,
    BucketPage,
    BucketReply,
    BucketRequest,
    KeyOutcome,
    KeyTouch,
    LogEntry,
    Page,
    Record,
    Store,
    StoreInfo,
    UpdateResult,
    UpdateStatus,
)
from mcpsec.store.redis_options import RedisOptions
from mcpsec.store.url import parse_store_url, redact_url

__all__ = [
    "KEEP_TTL",
    "KEY_GRANT_FIELDS",
    "KEY_KIND",
    "BucketEntry",
    "BucketLevel",
    "BucketPage",
    "BucketReply",
    "BucketRequest",
    "KeyOutcome",
    "KeyTouch",
    "LogEntry",
    "Page",
    "Record",
    "RedisOptions",
    "Store",
    "StoreInfo",
    "UpdateResult",
    "UpdateStatus",
    "open_store",
    "redact_url",
]


def open_store(
    url: str,
    *,
    prefix: str = "mcpsec:",
    timeout: float = 2.0,
    clock: Clock | None = None,
    options: RedisOptions | None = None,
    wait_replicas: int = 0,
) -> Store:
    """Open the backend the URL names. Redis connects lazily, on the first operation, with
    `options` (TLS files, ACL credentials given apart from the URL), and waits for
    `wait_replicas` replicas to acknowledge each change (SQLite has none: ignored)."""
    parsed = parse_store_url(url)
    if parsed.backend == "sqlite":
        from mcpsec.store.sqlite import SqliteStore

        assert parsed.path is not None
        return SqliteStore(parsed.path, url=url, timeout=timeout, clock=clock)
    from mcpsec.store.redis_store import RedisStore

    return RedisStore.from_url(
        parsed, prefix=prefix, timeout=timeout, options=options, wait_replicas=wait_replicas
    )
