from pathlib import Path

import pytest
from mcpsec.core.errors import ConfigError
from mcpsec.store.url import parse_store_url, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://ops:hunter2@db:6379/0", "redis://ops:***@db:6379/0"),
        ("redis://:hunter2@db", "redis://:***@db"),
        ("rediss://ops@db:6380", "rediss://ops@db:6380"),
        ("redis+cluster://:hunter2@h1:7000,h2:7001", "redis+cluster://:***@h1:7000,h2:7001"),
        (
            "unix:///run/redis.sock?password=hunter2&db=2",
            "unix:///run/redis.sock?password=***&db=2",
        ),
        ("sqlite:///var/lib/mcpsec.db", "sqlite:///var/lib/mcpsec.db"),
    ],
)
def test_redact(url, shown):
    assert redact_url(url) == shown
    assert "hunter2" not in redact_url(url)


def test_parse_backends():
    assert parse_store_url("sqlite:///var/lib/x.db").path == Path("/var/lib/x.db")
    assert parse_store_url("sqlite:////var/lib/x.db").path == Path("/var/lib/x.db")
    assert parse_store_url("redis://localhost").backend == "redis"
    assert parse_store_url("rediss://localhost").tls
    assert parse_store_url("unix:///tmp/r.sock").backend == "redis"
    cluster = parse_store_url("redis+cluster://u:p%40ss@h1:7000,[::1]:7001")
    assert cluster.backend == "redis-cluster"
    assert cluster.nodes == (("h1", 7000), ("::1", 7001))
    assert (cluster.username, cluster.password) == ("u", "p@ss")
    assert "p@ss" not in repr(cluster)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db", "not one mcpsec knows"),
        ("localhost:6379", "not one mcpsec knows"),
        ("sqlite:relative.db", "absolute path"),
        ("redis+cluster://h1", "not host:port"),
        ("redis+cluster://h1:99999", "not host:port"),
        ("redis+sentinel://:hunter2@h:26379/main", "Sentinel"),
    ],
)
def test_refuse(url, message):
    with pytest.raises(ConfigError, match=message) as caught:
        parse_store_url(url)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "REDIS://:hunter2@h:1/0",
        "Redis+Cluster://:hunter2@localhost:1",
        "redis://u:hunter2@ss@h:1/0",  # an unencoded @ in the password
        "redis://u:hunt/er2@h:1/0",  # an unencoded / in the password
        "rediss://u:hunter2@h?password=hunter2",
    ],
)
def test_redaction_errs_on_the_side_of_hiding(url):
    shown = redact_url(url)
    assert "hunter2" not in shown and "er2" not in shown
    assert "***" in shown
