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
        (
            "redis+sentinel://ops:hunter2@s1:26379,s2:26380/main?db=2",
            "redis+sentinel://ops:***@s1:26379,s2:26380/main?db=2",
        ),
        (
            "rediss+sentinel://s1:26379/main?sentinel_username=sent&sentinel_password=hunter2",
            "rediss+sentinel://s1:26379/main?sentinel_username=sent&sentinel_password=***",
        ),
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


def test_parse_sentinel():
    url = "redis+sentinel://ops:p%40ss@s1:26379,[::1]:26380/main?db=3"
    sentinel = parse_store_url(url)
    assert sentinel.backend == "redis-sentinel"
    assert sentinel.nodes == (("s1", 26379), ("::1", 26380))
    assert (sentinel.service, sentinel.db, sentinel.tls) == ("main", 3, False)
    assert (sentinel.username, sentinel.password) == ("ops", "p@ss")
    assert (sentinel.sentinel_username, sentinel.sentinel_password) == (None, None)
    assert "p@ss" not in repr(sentinel)


def test_parse_sentinel_with_tls_and_sentinel_credentials():
    url = "REDISS+SENTINEL://s1:26379/my%2Dmain?sentinel_username=watch&sentinel_password=s%26cret"
    sentinel = parse_store_url(url)
    assert (sentinel.backend, sentinel.tls, sentinel.db) == ("redis-sentinel", True, 0)
    assert sentinel.service == "my-main"
    assert (sentinel.username, sentinel.password) == (None, None)  # the data nodes': none
    assert (sentinel.sentinel_username, sentinel.sentinel_password) == ("watch", "s&cret")
    assert "s&cret" not in repr(sentinel)
    assert "s%26cret" not in sentinel.redacted


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://:hunter2@/main", "names no sentinels"),
        ("redis+sentinel://:hunter2@s1:26379", "must name one Sentinel service"),
        ("redis+sentinel://:hunter2@s1:26379/", "must name one Sentinel service"),
        ("redis+sentinel://:hunter2@s1:26379/main/2", "must name one Sentinel service"),
        ("redis+sentinel://:hunter2@s1/main", "'s1' is not host:port"),
        ("redis+sentinel://:hunter2@s1:0/main", "is not host:port"),
        ("redis+sentinel://:hunter2@s1:26379/main?db=two", "db='two' is not a database"),
        ("redis+sentinel://:hunter2@s1:26379/main?db=-1", "is not a database"),
        ("redis+sentinel://:hunter2@s1:26379/main?db=1&db=2", "gives a parameter twice"),
        ("redis+sentinel://:hunter2@s1:26379/main?password=hunter2", "does not use: .password."),
        ("redis+sentinel://:hunter2@[::1:26379/main", "cannot be parsed"),
    ],
)
def test_refuse_sentinel(url, message):
    """One line that says what is wrong and shows the form to write, never the password."""
    with pytest.raises(ConfigError, match=message) as caught:
        parse_store_url(url)
    text = str(caught.value)
    assert "hunter2" not in text
    assert "\n" not in text
    assert "redis+sentinel://[user:password@]host:26379,host:26380/service" in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # A query password with an unencoded @ and : (redis-py accepts the URL as written).
        (
            "redis://127.0.0.1:6391/0?username=qp&password=x@y:hunter2",
            "redis://127.0.0.1:6391/0?username=qp&password=***",
        ),
        (
            "rediss+sentinel://u:p@h:1/svc?sentinel_password=a@b:hunter2",
            "rediss+sentinel://u:***@h:1/svc?sentinel_password=***",
        ),
        ("redis://u:pa?hunter2@h/0", "redis://***@h/0"),  # an unencoded ? in the password
        ("redis://u:a#hunter2@h:1/0", "redis://u:***@h:1/0"),  # an unencoded #
        ("redis:/mcp:p@hunter2/rd@h", "redis:/mcp:***@h"),  # one slash only
        ("redis://h/0?sentinel_pasword=hunter2&db=2", "redis://h/0?sentinel_pasword=***&db=2"),
        ("redis://h/0?x@hunter2=1", "redis://h/0?***"),  # a name that may be a password's piece
        ("sqlite://u:hunter2@h/x", "sqlite://u:***@h/x"),
    ],
)
def test_redaction_of_passwords_that_break_the_url_syntax(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://h/0?foo=1", "does not use: 'foo'"),
        ("redis://h/0?ssl_cert_reqs=none", "does not use: 'ssl_cert_reqs'"),  # TLS checks stay on
        ("redis://h/0?retry_on_timeout=true", "does not use"),  # a take must never run twice
        ("redis://h/0?socket_timeout=60", "does not use"),  # store.timeout is the one timeout
        ("redis+cluster://h:7000?password=hunter2", "does not use: 'password'"),
        ("redis+cluster://u:hunter2@[::1:7000", "cannot be parsed"),
        ("redis+sentinel://u:abc/hunter2@127.0.0.1:1/svc", "a node is not host:port"),
        ("redis+cluster://u:p@ss:w/hunter2@h:1", "a node is not host:port"),
        ("sqlite://u:hunter2@h/x", "absolute path"),
    ],
)
def test_refused_urls_never_echo_a_password(url, message):
    with pytest.raises(ConfigError, match=message) as caught:
        parse_store_url(url)
    assert "hunter2" not in f"{caught.value} {caught.value.hint}"


def test_a_parsed_url_keeps_its_password_out_of_repr():
    assert "hunter2" not in repr(parse_store_url("redis://u:hunter2@h:6379/0"))
    assert parse_store_url("redis://h/0?db=2&client_name=mcp&username=u&password=p")
