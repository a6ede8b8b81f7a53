"""doctor: each check's verdict, and which area (config or store) a failure belongs to."""

from typing import cast

import pytest
from mcpsec.core.config_file import init_config
from mcpsec.core.doctor import Area, Status, diagnose
from mcpsec.core.errors import StoreError, StoreUnavailableError
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


def redis_report(env, details, *, now=2_000_000_000.0, clock=None):
    """doctor over a fake Redis store reporting `details`; `clock`: what its now() does."""
    store = FakeStore(StoreInfo("redis", "redis://x", "7.0", details), now=now)
    if clock is not None:
        store.now = clock  # type: ignore[method-assign]
    return diagnose(env, opener=lambda s: cast(Store, store), now=lambda: now)


HEALTHY = {
    "maxmemory_policy": "noeviction",
    "role": "master",
    "aof_enabled": "1",
    "rdb_save": "3600 1",
    "acl_user": "mcp",
    "acl_denied": "",
    "acl_denied_keys": "",
}


def test_a_healthy_primary_passes_every_production_check(env):
    report = redis_report(env, HEALTHY)
    checks = by_name(report)
    assert report.failed_area is None
    assert checks["persistence"].status is Status.OK and "AOF" in checks["persistence"].detail
    assert checks["acl"].status is Status.OK and "'mcp'" in checks["acl"].detail
    assert {"eviction", "replica", "cluster", "server settings"}.isdisjoint(checks)


@pytest.mark.parametrize(
    ("read_only", "words"),
    [("yes", "read-only replica: writes"), (None, "read-only replica"), ("no", "lost at")],
)
def test_a_replica_as_the_store_fails(env, read_only, words):
    details = HEALTHY | {"role": "slave", "aof_enabled": "0", "rdb_save": ""}
    if read_only is not None:
        details["replica_read_only"] = read_only
    report = redis_report(env, details)
    check = by_name(report)["replica"]
    assert check.status is Status.FAIL and check.area is Area.STORE
    assert words in check.detail and "primary" in check.detail and "sentinel" in check.detail
    assert "persistence" not in by_name(report)
    assert report.failed_area is Area.STORE


@pytest.mark.parametrize(
    ("aof", "save", "status", "words"),
    [
        ("0", "", Status.WARN, "lost when Redis restarts"),
        ("0", "900 1", Status.OK, "RDB snapshots (save 900 1)"),
        ("1", "", Status.OK, "AOF is on"),
        ("0", None, Status.SKIP, "cannot be read"),
    ],
)
def test_persistence_on_a_primary(env, aof, save, status, words):
    details = HEALTHY | {"aof_enabled": aof}
    del details["rdb_save"]
    if save is not None:
        details["rdb_save"] = save
    report = redis_report(env, details)
    check = by_name(report)["persistence"]
    assert (check.status, words in check.detail) == (status, True)
    assert report.failed_area is None  # a warning, not a failure


def test_cluster_state_not_ok_fails(env):
    report = redis_report(env, HEALTHY | {"cluster_state": "fail"})
    check = by_name(report)["cluster"]
    assert check.status is Status.FAIL and "cluster_state is fail" in check.detail
    assert report.failed_area is Area.STORE
    assert by_name(redis_report(env, HEALTHY | {"cluster_state": "ok"}))["cluster"].status is (
        Status.OK
    )


def test_acl_names_what_the_user_may_not_do(env):
    details = HEALTHY | {"acl_denied": "evalsha, script load", "acl_denied_keys": "hset"}
    report = redis_report(env, details)
    check = by_name(report)["acl"]
    assert check.status is Status.FAIL and report.failed_area is Area.STORE
    assert "the ACL user 'mcp' may not run: evalsha, script load" in check.detail
    assert "may not use keys under mcpsec: with: hset" in check.detail
    assert "ACL SETUSER mcp +evalsha +script|load ~mcpsec:*" in check.detail


def test_acl_of_an_unnamed_user(env):
    check = by_name(redis_report(env, HEALTHY | {"acl_user": "", "acl_denied": "xadd"}))["acl"]
    assert "the ACL user of this connection may not run: xadd" in check.detail
    assert "ACL SETUSER <user> +xadd" in check.detail


def test_info_refused_is_a_skip_not_a_failure(env):
    details = {"info": "unavailable", "maxmemory_policy": "unknown", "acl_denied": ""}
    report = redis_report(env, details)
    assert by_name(report)["server settings"].status is Status.SKIP
    assert "eviction" not in by_name(report)
    assert report.failed_area is None


def test_a_clock_the_store_refuses_fails_but_keeps_the_other_checks(env):
    def refused():
        raise StoreError("the store denied a command to this ACL user: 'time'")

    report = redis_report(env, HEALTHY | {"acl_denied": "time"}, clock=refused)
    checks = by_name(report)
    assert checks["clock"].status is Status.FAIL and "'time'" in checks["clock"].detail
    assert checks["acl"].status is Status.FAIL and "time" in checks["acl"].detail
    assert checks["store"].status is Status.OK


@pytest.mark.parametrize(("connected", "status"), [("0", Status.FAIL), ("1", Status.OK)])
def test_wait_replicas_needs_that_many_connected_replicas(env, connected, status):
    env = env | {"MCPSEC_STORE_WAIT_REPLICAS": "1"}
    report = redis_report(env, HEALTHY | {"connected_replicas": connected})
    check = by_name(report)["replicas"]
    assert check.status is status
    if status is Status.FAIL:
        assert "store.wait_replicas is 1 but the primary has 0 replica(s)" in check.detail
        assert report.failed_area is Area.STORE


def test_without_wait_replicas_the_replica_count_is_not_judged(env):
    assert "replicas" not in by_name(redis_report(env, HEALTHY | {"connected_replicas": "0"}))
