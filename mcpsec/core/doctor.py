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

from mcpsec.core.config import Settings, load_settings
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
            store_now = store.now()
        finally:
            store.close()
    except MCPSecError as e:  # a bad URL is a config problem; anything else is the store's
        area = Area.CONFIG if isinstance(e, ConfigError) else Area.STORE
        return [Check("store", Status.FAIL, str(e), area), _clock_check(now(), None)]
    shared_clock = info.backend == "sqlite"  # the embedded store reads this machine's clock
    return [
        _store_ok(info),
        *_store_warnings(info),
        _clock_check(now(), None if shared_clock else store_now),
    ]


def _store_ok(info: StoreInfo) -> Check:
    return Check("store", Status.OK, f"{info.backend} {info.version} at {info.url}", Area.STORE)


def _store_warnings(info: StoreInfo) -> list[Check]:
    file_mode = int(info.details.get("file_mode", "0"), 8)
    if file_mode & 0o077:
        return [
            Check(
                "store file",
                Status.WARN,
                f"{info.details.get('path')} has mode {file_mode:04o}: others can read "
                f"keys and the audit log; run `chmod 600 {info.details.get('path')}`",
                Area.STORE,
            )
        ]
    policy = info.details.get("maxmemory_policy")
    if policy is None or policy in {"noeviction", "unknown"}:
        return []
    return [
        Check(
            "eviction",
            Status.WARN,
            f"maxmemory-policy is {policy}: Redis may silently evict revocations and keys; "
            "set it to noeviction",
            Area.STORE,
        )
    ]


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
