"""doctor: each check's verdict, and which area (config or store) a failure belongs to."""

from typing import cast

import pytest
from mcpsec.core.config_file import init_config
from mcpsec.core.doctor import Area, Status, diagnose
from mcpsec.core.errors import StoreUnavailableError
from mcpsec.store import Store, StoreInfo


@pytest.fixture
def env(tmp_path):
    return {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }


def by_name(report):
    return {c.name: c for c in report.checks}


class FakeStore:
    def __init__(self, info, now):
        self._info, self._now = info, now
        self.closed = False

    def info(self):
        return self._info

    def now(self):
        return self._now

    def close(self):
        self.closed = True


def test_fresh_install_after_init_is_healthy(env):
    init_config(env)
    report = diagnose(env)
    checks = by_name(report)
    assert report.failed_area is None
    assert checks["config"].status is Status.OK
    assert checks["jwt secret"].status is Status.OK
    assert checks["store"].status is Status.OK and "sqlite" in checks["store"].detail
    assert checks["clock"].status is Status.OK


def test_no_config_no_secret_is_a_warning_not_a_failure(env):
    report = diagnose(env)
    assert by_name(report)["jwt secret"].status is Status.WARN
    assert report.failed_area is None


def test_weak_secret_fails_config(env):
    env["MCPSEC_JWT_SECRET"] = "short"
    report = diagnose(env)
    assert by_name(report)["jwt secret"].status is Status.FAIL
    assert report.failed_area is Area.CONFIG


def test_loose_secret_file_fails_config(env):
    result = init_config(env)
    result.secret_file.chmod(0o640)
    check = by_name(diagnose(env))["jwt secret"]
    assert check.status is Status.FAIL
    assert "readable by others" in check.detail


def test_unparseable_config_fails_config_and_skips_the_rest(env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[store\n")
    report = diagnose(env, config_path=bad)
    assert report.failed_area is Area.CONFIG
    assert [c.status for c in report.checks][1:] == [Status.SKIP] * 4


def test_unreachable_store_fails_store_and_hides_the_password(env):
    report = diagnose(env, flags={"store.url": "redis://:hunter2@127.0.0.1:1/0"})
    check = by_name(report)["store"]
    assert check.status is Status.FAIL
    assert report.failed_area is Area.STORE
    assert "hunter2" not in check.detail


def test_unknown_store_url_is_a_config_failure(env):
    report = diagnose(env, flags={"store.url": "mysql://db"})
    assert report.failed_area is Area.CONFIG


def test_store_error_from_opener_is_store_area(env):
    def opener(settings):
        raise StoreUnavailableError("down")

    assert diagnose(env, opener=opener).failed_area is Area.STORE


def test_eviction_policy_and_skew_warn(env):
    store = FakeStore(
        StoreInfo("redis", "redis://x", "7.0", {"maxmemory_policy": "allkeys-lru"}),
        now=2_000_000_000.0,
    )
    report = diagnose(env, opener=lambda s: cast(Store, store), now=lambda: 2_000_000_030.0)
    checks = by_name(report)
    assert checks["eviction"].status is Status.WARN
    assert "allkeys-lru" in checks["eviction"].detail
    assert checks["clock"].status is Status.WARN and "+30.0s" in checks["clock"].detail
    assert report.failed_area is None
    assert store.closed


def test_unset_clock_fails(env):
    report = diagnose(env, now=lambda: 0.0)
    assert by_name(report)["clock"].status is Status.FAIL
