"""`doctor`: is this installation ready? One check per concern, each with a plain verdict.

    report = diagnose(os.environ)
    report.failed_area      # None, "config" or "store": the CLI turns it into exit 0, 4 or 5

Checks run in order and a failed one does not stop the rest, except that nothing can be
checked against a config that does not parse.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from mcpsec.core.config import Settings, StoreSettings, load_settings
from mcpsec.core.errors import ConfigError, MCPSecError
from mcpsec.core.secret_files import check_strength
from mcpsec.core.token_keys import find_jwt_secret
from mcpsec.store import Store, StoreInfo

MAX_SKEW_SECONDS = 5.0
EARLIEST_SANE_TIME = 1_735_689_600  # 2025-01-01: a clock before this was never set


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


class Area(StrEnum):
    CONFIG = "config"
    STORE = "store"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    area: Area


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]

    @property
    def failed_area(self) -> Area | None:
        """Config failures outrank store failures: a bad config explains a bad store."""
        failed = {c.area for c in self.checks if c.status is Status.FAIL}
        for area in (Area.CONFIG, Area.STORE):
            if area in failed:
                return area
        return None


StoreOpener = Callable[[Settings], Store]


def diagnose(
    environ: Mapping[str, str],
    *,
    config_path: Path | None = None,
    flags: Mapping[str, str] | None = None,
    opener: StoreOpener | None = None,
    now: Callable[[], float] = time.time,
) -> DoctorReport:
    try:
        settings = load_settings(environ, config_path=config_path, flags=flags)
    except ConfigError as e:
        return DoctorReport(
            (
                Check("config", Status.FAIL, str(e), Area.CONFIG),
                Check("jwt secret", Status.SKIP, "config does not parse", Area.CONFIG),
                Check("signing keys", Status.SKIP, "config does not parse", Area.CONFIG),
                Check("store", Status.SKIP, "config does not parse", Area.STORE),
                Check("clock", Status.SKIP, "config does not parse", Area.STORE),
            )
        )
    checks = [_config_check(settings), _secret_check(settings), _signing_check(settings)]
    checks += _store_checks(settings, opener or _open, now)
    return DoctorReport(tuple(checks))


def _open(settings: Settings) -> Store:
    return settings.store.open()


def _config_check(settings: Settings) -> Check:
    if settings.config_found:
        return Check("config", Status.OK, f"{settings.config_path} parses", Area.CONFIG)
    return Check(
        "config",
        Status.OK,
        f"no file at {settings.config_path}; using defaults (`mcpsec config init` writes one)",
        Area.CONFIG,
    )


def _secret_check(settings: Settings) -> Check:
    try:
        secret = find_jwt_secret(settings)
        if secret is None:
            return Check(
                "jwt secret",
                Status.WARN,
                "none configured; token commands will need one (`mcpsec config init` creates it)",
                Area.CONFIG,
            )
        check_strength(secret)
    except ConfigError as e:
        return Check("jwt secret", Status.FAIL, str(e), Area.CONFIG)
    return Check(
        "jwt secret", Status.OK, f"{len(secret.value)} bytes from {secret.source}", Area.CONFIG
    )


def _signing_check(settings: Settings) -> Check:
    """The key that will sign tokens loads, matches its kid, and is of an accepted algorithm."""
    from mcpsec.core.tokens import load_keys

    try:
        keys = load_keys(settings)
    except ConfigError as e:
        return Check("signing keys", Status.FAIL, str(e), Area.CONFIG)
    signer = keys.signing
    if signer is None:
        return Check(
            "signing keys",
            Status.WARN,
            "none; `mcpsec config init` or `mcpsec signing-key generate` makes one",
            Area.CONFIG,
        )
    if signer.alg.value not in settings.tokens.algorithms:
        return Check(
            "signing keys",
            Status.FAIL,
            f"the signer {signer.kid} uses {signer.alg}, which tokens.algorithms does not accept",
            Area.CONFIG,
        )
    return Check(
        "signing keys",
        Status.OK,
        f"{signer.alg} key {signer.kid} signs; {len(keys.verifying)} key(s) verify",
        Area.CONFIG,
    )


def _store_checks(settings: Settings, opener: StoreOpener, now: Callable[[], float]) -> list[Check]:
    try:
        store = opener(settings)
        try:
            info = store.info()
            store_now = _store_clock(store)
        finally:
            store.close()
    except MCPSecError as e:  # a bad URL is a config problem; anything else is the store's
        area = Area.CONFIG if isinstance(e, ConfigError) else Area.STORE
        return [Check("store", Status.FAIL, str(e), area), _clock_check(now(), None)]
    shared_clock = info.backend == "sqlite"  # the embedded store reads this machine's clock
    if isinstance(store_now, MCPSecError):  # e.g. TIME refused by an ACL rule
        clock = Check(
            "clock", Status.FAIL, f"cannot read the store's clock: {store_now}", Area.STORE
        )
    else:
        clock = _clock_check(now(), None if shared_clock else store_now)
    return [_store_ok(info), *_store_warnings(info, settings.store), clock]


def _store_clock(store: Store) -> float | MCPSecError:
    """The store's time, or why it cannot be read, without hiding what `info` found."""
    try:
        return store.now()
    except MCPSecError as e:
        return e


def _store_ok(info: StoreInfo) -> Check:
    return Check("store", Status.OK, f"{info.backend} {info.version} at {info.url}", Area.STORE)


def _store_warnings(info: StoreInfo, store: StoreSettings) -> list[Check]:
    """Each rule judges the facts the store reported; a rule without its facts says nothing."""
    facts = info.details
    checks = [
        _file_mode_check(facts),
        _info_check(facts),
        _eviction_check(facts),
        _replica_check(facts),
        _persistence_check(facts),
        _cluster_check(facts),
        _acl_check(facts, store.prefix),
        _replicas_check(facts, store.wait_replicas),
    ]
    return [check for check in checks if check is not None]


def _file_mode_check(facts: Mapping[str, str]) -> Check | None:
    file_mode = int(facts.get("file_mode", "0"), 8)
    if not file_mode & 0o077:
        return None
    return Check(
        "store file",
        Status.WARN,
        f"{facts.get('path')} has mode {file_mode:04o}: others can read "
        f"keys and the audit log; run `chmod 600 {facts.get('path')}`",
        Area.STORE,
    )


def _info_check(facts: Mapping[str, str]) -> Check | None:
    if facts.get("info") != "unavailable":
        return None
    return Check(
        "server settings",
        Status.SKIP,
        "the server does not answer INFO (refused to this ACL user, or not supported): "
        "eviction, persistence and replication were not checked",
        Area.STORE,
    )


def _eviction_check(facts: Mapping[str, str]) -> Check | None:
    policy = facts.get("maxmemory_policy")
    if policy is None or policy in {"noeviction", "unknown"}:
        return None
    return Check(
        "eviction",
        Status.WARN,
        f"maxmemory-policy is {policy}: Redis may silently evict revocations and keys; "
        "set it to noeviction",
        Area.STORE,
    )


def _replica_check(facts: Mapping[str, str]) -> Check | None:
    """A replica as the store: its writes fail (read-only) or vanish at the next sync."""
    if facts.get("role") != "slave":
        return None
    if facts.get("replica_read_only") == "no":
        what = "a writable replica: what mcpsec writes there (keys, revocations) is lost at "
        what += "its next sync with the primary"
    else:
        what = "a read-only replica: writes (keys create, token revoke, rate decisions) will fail"
    return Check(
        "replica",
        Status.FAIL,
        f"the store is {what}; point the store URL at the primary, or use redis+sentinel:// "
        "to follow it through failovers",
        Area.STORE,
    )


def _replicas_check(facts: Mapping[str, str], wait_replicas: int) -> Check | None:
    """With `store.wait_replicas`, a primary with fewer replicas fails every change (after
    waiting half the timeout): said here rather than at the first revocation."""
    connected = facts.get("connected_replicas")
    if not wait_replicas or connected is None or facts.get("role") == "slave":
        return None
    if int(connected) >= wait_replicas:
        return Check(
            "replicas",
            Status.OK,
            f"{connected} replica(s) connected; store.wait_replicas is {wait_replicas}",
            Area.STORE,
        )
    return Check(
        "replicas",
        Status.FAIL,
        f"store.wait_replicas is {wait_replicas} but the primary has {connected} replica(s) "
        "connected: every change (keys create, token revoke) will fail",
        Area.STORE,
    )


def _persistence_check(facts: Mapping[str, str]) -> Check | None:
    """Only a primary's persistence matters here (a replica is judged by `_replica_check`)."""
    if facts.get("role") == "slave" or "aof_enabled" not in facts:
        return None
    schedule = facts.get("rdb_save")
    if facts["aof_enabled"] == "1":
        return Check("persistence", Status.OK, "AOF is on (appendonly yes)", Area.STORE)
    if schedule:
        return Check(
            "persistence",
            Status.OK,
            f"RDB snapshots (save {schedule}); a crash loses the changes since the last one, "
            "AOF (appendonly yes) at most a second's",
            Area.STORE,
        )
    if schedule is None:
        return Check(
            "persistence",
            Status.SKIP,
            "AOF is off and the RDB schedule cannot be read (CONFIG GET is not allowed): make "
            "sure snapshots are on, or turn on appendonly",
            Area.STORE,
        )
    return Check(
        "persistence",
        Status.WARN,
        "persistence is off (no RDB save schedule, appendonly no): keys, revocations and the "
        "audit log are lost when Redis restarts; turn on appendonly yes (or RDB snapshots)",
        Area.STORE,
    )


def _cluster_check(facts: Mapping[str, str]) -> Check | None:
    state = facts.get("cluster_state")
    if state is None:
        return None
    if state == "ok":
        return Check("cluster", Status.OK, "cluster_state ok", Area.STORE)
    return Check(
        "cluster",
        Status.FAIL,
        f"cluster_state is {state}: some slots are not served, so keys, revocations and "
        "buckets in them can be neither read nor written; repair it (redis-cli --cluster check)",
        Area.STORE,
    )


def _acl_check(facts: Mapping[str, str], prefix: str) -> Check | None:
    """Name exactly what the ACL user lacks: a script that calls a denied command fails
    only when a request happens to need it, so find out now."""
    if "acl_denied" not in facts:
        return None
    user = facts.get("acl_user", "")
    who = f"the ACL user '{user}'" if user else "the ACL user of this connection"
    denied, on_keys = facts["acl_denied"], facts.get("acl_denied_keys", "")
    if not denied and not on_keys:
        return Check("acl", Status.OK, f"{who} may run every command mcpsec uses", Area.STORE)
    missing = [f"may not run: {denied}"] if denied else []
    if on_keys:
        missing.append(f"may not use keys under {prefix} with: {on_keys}")
    grants = " ".join(f"+{name.replace(' ', '|')}" for name in denied.split(", ") if name)
    return Check(
        "acl",
        Status.FAIL,
        f"{who} {'; and '.join(missing)}; grant them, e.g. ACL SETUSER {user or '<user>'} "
        f"{grants + ' ' if grants else ''}~{prefix}*",
        Area.STORE,
    )


def _clock_check(local: float, store_time: float | None) -> Check:
    if local < EARLIEST_SANE_TIME:
        return Check("clock", Status.FAIL, "the system clock is before 2025; set it", Area.CONFIG)
    if store_time is None:
        return Check("clock", Status.OK, "system clock set; no store clock to compare", Area.STORE)
    skew = local - store_time
    if abs(skew) > MAX_SKEW_SECONDS:
        return Check(
            "clock",
            Status.WARN,
            f"this machine's clock is {skew:+.1f}s off the store's; token expiry will disagree",
            Area.STORE,
        )
    return Check("clock", Status.OK, f"within {abs(skew):.2f}s of the store", Area.STORE)
