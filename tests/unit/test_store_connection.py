"""TLS files and ACL credentials: settings, checks before connecting, the redis-py arguments
every flavour gets, and TLS failures as one sentence (no server needed here)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import redis
from mcpsec.core.config import load_settings, redacted
from mcpsec.core.errors import ConfigError, SecretError, StoreUnavailableError
from mcpsec.core.secret_files import check_secret_file
from mcpsec.core.store_connection import check_tls_files, redis_options
from mcpsec.store.redis_errors import translate
from mcpsec.store.redis_options import RedisOptions, apply_options
from mcpsec.store.url import parse_store_url, url_credentials
from redis.exceptions import RedisClusterException

from tests.support.tls_certs import Pki, make_pki

PASSWORD = "pw-that-must-never-print"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def env_of(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"), **extra}


# -- settings ---------------------------------------------------------------------------------


def test_store_settings_from_the_environment(tmp_path):
    settings = load_settings(
        env_of(
            tmp_path,
            MCPSEC_STORE_TLS_CA_FILE="/etc/ca.pem",
            MCPSEC_STORE_TLS_CHECK_HOSTNAME="false",
            MCPSEC_STORE_USERNAME="mcp",
            MCPSEC_STORE_PASSWORD=PASSWORD,
        )
    )
    store = settings.store
    assert store.tls_ca_file == Path("/etc/ca.pem")
    assert store.tls_check_hostname is False
    assert store.username == "mcp"
    assert store.password is not None and store.password.reveal() == PASSWORD.encode()
    assert PASSWORD not in repr(settings)


def test_store_files_in_the_config_file_are_relative_to_it(tmp_path):
    config = tmp_path / "etc" / "config.toml"
    config.parent.mkdir()
    config.write_text(
        '[store]\ntls_ca_file = "ca.pem"\ntls_cert_file = "/abs/c.pem"\n'
        'tls_key_file = "keys/c.key"\npassword_file = "redis.pw"\ntls_check_hostname = true\n'
    )
    store = load_settings(env_of(tmp_path), config_path=config).store
    assert store.tls_ca_file == config.parent / "ca.pem"
    assert store.tls_cert_file == Path("/abs/c.pem")
    assert store.tls_key_file == config.parent / "keys" / "c.key"
    assert store.password_file == config.parent / "redis.pw"
    assert store.tls_check_hostname is True


def test_a_password_is_never_read_from_the_config_file(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[store]\npassword = "{PASSWORD}"\n')
    with pytest.raises(ConfigError, match="unknown setting `password`") as caught:
        load_settings(env_of(tmp_path), config_path=config)
    assert PASSWORD not in str(caught.value)


def test_check_hostname_must_be_a_boolean(tmp_path):
    with pytest.raises(ConfigError, match=r"tls_check_hostname .* must be true or false"):
        load_settings(env_of(tmp_path, MCPSEC_STORE_TLS_CHECK_HOSTNAME="maybe"))


def test_config_show_names_where_the_password_comes_from(tmp_path):
    settings = load_settings(
        env_of(
            tmp_path,
            MCPSEC_STORE_URL=f"redis://mcp:{PASSWORD}@db:6379/0",
            MCPSEC_STORE_PASSWORD=PASSWORD,
        )
    )
    shown = redacted(settings)
    assert shown["store"]["password"] == "<set by env MCPSEC_STORE_PASSWORD>"
    assert PASSWORD not in repr(shown)


# -- options checked before connecting --------------------------------------------------------


def store_settings(tmp_path: Path, url: str, **env: str):
    return load_settings(env_of(tmp_path, MCPSEC_STORE_URL=url, **env)).store


def test_sqlite_needs_no_options_and_reads_no_password_file(tmp_path):
    store = store_settings(
        tmp_path, f"sqlite:///{tmp_path}/x.db", MCPSEC_STORE_PASSWORD_FILE="/nonexistent"
    )
    assert redis_options(store) is None


def test_the_environment_password_wins_over_the_file(tmp_path):
    loose = tmp_path / "pw"
    loose.write_text("from-file\n")
    loose.chmod(0o600)
    both = store_settings(
        tmp_path,
        "redis://db",
        MCPSEC_STORE_PASSWORD=PASSWORD,
        MCPSEC_STORE_PASSWORD_FILE=str(loose),
    )
    options = redis_options(both)
    assert options is not None
    assert (options.password, options.password_source) == (PASSWORD, "env MCPSEC_STORE_PASSWORD")
    file_only = redis_options(
        store_settings(tmp_path, "redis://db", MCPSEC_STORE_PASSWORD_FILE=str(loose))
    )
    assert file_only is not None and file_only.password == "from-file"
    assert PASSWORD not in repr(options)


def test_a_password_file_others_can_read_is_refused(tmp_path):
    loose = tmp_path / "pw"
    loose.write_text(PASSWORD)
    loose.chmod(0o640)
    store = store_settings(tmp_path, "redis://db", MCPSEC_STORE_PASSWORD_FILE=str(loose))
    with pytest.raises(SecretError, match="readable by others") as caught:
        redis_options(store)
    assert PASSWORD not in str(caught.value)


def test_tls_files_that_load(pki):
    check_tls_files(pki.ca, pki.client_cert, pki.client_key)
    check_tls_files(pki.ca, None, None)


@pytest.mark.parametrize("which", ["ca", "cert", "key"])
def test_a_missing_tls_file_names_its_setting(pki, tmp_path, which):
    files = {"ca": pki.ca, "cert": pki.client_cert, "key": pki.client_key}
    files[which] = tmp_path / "missing.pem"
    with pytest.raises(
        ConfigError, match=rf"store\.tls_{which}_file .*missing\.pem does not exist"
    ):
        check_tls_files(files["ca"], files["cert"], files["key"])


def test_a_key_without_its_certificate_is_refused(pki):
    with pytest.raises(ConfigError, match=r"without store\.tls_cert_file"):
        check_tls_files(pki.ca, None, pki.client_key)


def test_a_key_others_can_read_is_refused(pki, tmp_path):
    loose = tmp_path / "client.key"
    loose.write_bytes(pki.client_key.read_bytes())
    loose.chmod(0o644)
    with pytest.raises(SecretError, match="readable by others"):
        check_tls_files(pki.ca, pki.client_cert, loose)


def test_a_certificate_holding_its_key_is_held_to_the_key_rules(pki, tmp_path):
    combined = tmp_path / "client-and-key.pem"
    combined.write_bytes(pki.client_cert.read_bytes() + pki.client_key.read_bytes())
    combined.chmod(0o600)
    check_tls_files(pki.ca, combined, None)
    combined.chmod(0o644)
    with pytest.raises(SecretError, match="holds a private key"):
        check_tls_files(pki.ca, combined, None)


def test_files_that_do_not_load_are_config_errors(pki, tmp_path):
    other = make_pki(tmp_path / "other")
    with pytest.raises(ConfigError, match=r"store\.tls_ca_file .* holds no CA certificate"):
        check_tls_files(pki.client_key, None, None)
    with pytest.raises(ConfigError, match="does not load: KEY_VALUES_MISMATCH"):
        check_tls_files(pki.ca, pki.client_cert, other.client_key)
    with pytest.raises(ConfigError, match=r"set store\.tls_key_file"):
        check_tls_files(pki.ca, pki.client_cert, None)


def test_an_encrypted_key_is_refused_without_prompting(pki, tmp_path):
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    encrypted.chmod(0o600)
    with pytest.raises(ConfigError, match="is encrypted"):
        check_tls_files(pki.ca, pki.client_cert, encrypted)


def test_check_secret_file_says_what_the_file_is(tmp_path):
    with pytest.raises(SecretError, match=r"TLS key file .* does not exist"):
        check_secret_file(tmp_path / "nope", "TLS key file")


# -- the redis-py arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h:6379", (None, None)),
        ("redis://mcp:p%40ss@h/0", ("mcp", "p@ss")),
        ("redis://:pw@h", (None, "pw")),
        ("unix:///run/redis.sock?password=pw", (None, "pw")),
        ("redis+cluster://u:pw@h:1,h:2", ("u", "pw")),
    ],
)
def test_url_credentials(url, expected):
    assert url_credentials(url) == expected


def test_tls_arguments_for_a_tls_url():
    options = RedisOptions(
        tls_ca_file=Path("/ca.pem"),
        tls_cert_file=Path("/c.pem"),
        tls_key_file=Path("/c.key"),
        tls_check_hostname=False,
    )
    _, kwargs = apply_options(parse_store_url("rediss://h:6380/0"), options)
    assert kwargs == {
        "ssl_check_hostname": False,
        "ssl_ca_certs": "/ca.pem",
        "ssl_certfile": "/c.pem",
        "ssl_keyfile": "/c.key",
    }


def test_hostname_checking_is_on_by_default():
    _, kwargs = apply_options(parse_store_url("rediss+cluster://h:7000"), RedisOptions())
    assert kwargs == {"ssl_check_hostname": True}


def test_tls_files_with_a_plain_url_are_refused():
    with pytest.raises(ConfigError, match="does not use TLS"):
        apply_options(parse_store_url("redis://h"), RedisOptions(tls_ca_file=Path("/ca.pem")))
    _, kwargs = apply_options(parse_store_url("redis://h"), RedisOptions())
    assert kwargs == {}


def test_settings_credentials_reach_every_flavour_through_the_url():
    options = RedisOptions(username="mcp", password=PASSWORD)
    url, kwargs = apply_options(parse_store_url("redis+cluster://h:1,h:2"), options)
    assert (url.username, url.password) == ("mcp", PASSWORD)
    assert kwargs == {"username": "mcp", "password": PASSWORD}
    assert PASSWORD not in repr(url) and PASSWORD not in url.redacted


def test_the_urls_own_credentials_are_kept():
    _, kwargs = apply_options(parse_store_url("redis+cluster://u:pw@h:1"), RedisOptions())
    assert kwargs == {"username": "u", "password": "pw"}
    _, kwargs = apply_options(parse_store_url("redis://u:pw@h"), RedisOptions())
    assert kwargs == {}  # redis-py reads a plain URL's own


@pytest.mark.parametrize(
    ("url", "options", "words"),
    [
        ("redis://:old@h", RedisOptions(password=PASSWORD), "carries a password"),
        ("redis://h?password=old", RedisOptions(password=PASSWORD), "carries a password"),
        ("redis://ops@h", RedisOptions(username="mcp"), "names a user"),
    ],
)
def test_a_credential_in_two_places_is_refused(url, options, words):
    with pytest.raises(ConfigError, match=words) as caught:
        apply_options(parse_store_url(url), options)
    assert PASSWORD not in str(caught.value) and "old" not in str(caught.value)


# -- TLS failures as one sentence -------------------------------------------------------------


def verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    error.verify_code = code
    error.verify_message = message
    return error


def wrapped(
    cause: BaseException, *, cluster: bool = False
) -> redis.RedisError | RedisClusterException:
    """As redis-py raises it: ConnectionError from the ssl error (and, for a cluster client,
    RedisClusterException from that)."""
    try:
        try:
            raise cause
        except OSError as e:
            raise redis.ConnectionError(f"Error 1 connecting to h:6380. {e}.") from e
    except redis.ConnectionError as e:
        if not cluster:
            return e
        try:
            raise RedisClusterException("Redis Cluster cannot be connected.") from e
        except RedisClusterException as outer:
            return outer


@pytest.mark.parametrize("cluster", [False, True])
@pytest.mark.parametrize(
    ("code", "message", "words"),
    [
        (62, "Hostname mismatch, certificate is not valid for 'db'.", "tls_check_hostname"),
        (64, "IP address mismatch, certificate is not valid for '10.0.0.1'.", "address"),
        (19, "self-signed certificate in certificate chain", "store.tls_ca_file"),
        (20, "unable to get local issuer certificate", "store.tls_ca_file"),
        (10, "certificate has expired", "renew"),
        (9, "certificate is not yet valid", "clock"),
    ],
)
def test_certificate_failures(code, message, words, cluster):
    error = translate(wrapped(verify_error(code, message), cluster=cluster), "rediss://h:6380/0")
    text = str(error)
    assert isinstance(error, StoreUnavailableError)
    assert text.startswith("the store at rediss://h:6380/0 failed TLS: certificate verify failed:")
    assert message.rstrip(".") in text and words in text and "\n" not in text


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "requires a client certificate"),
        ("TLSV1_ALERT_UNKNOWN_CA", "does not trust the client certificate"),
        ("WRONG_VERSION_NUMBER", "does not speak TLS"),
        ("SOMETHING_NEW", "SOMETHING_NEW"),
    ],
)
def test_handshake_failures(reason, words):
    cause = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower()}")
    cause.reason = reason
    text = str(translate(wrapped(cause), "rediss://h:6380/0"))
    assert words in text and "failed TLS" in text and "\n" not in text


def test_a_connection_closed_during_the_handshake():
    text = str(translate(wrapped(ssl.SSLEOFError(8, "EOF occurred")), "rediss://h/0"))
    assert "closed the TLS connection" in text and "client certificate" in text


def test_a_plain_url_to_a_tls_port_hints_at_rediss():
    error = redis.ConnectionError(
        "Error while reading from h:6380 : (104, 'Connection reset by peer')"
    )
    assert "write rediss://" in str(translate(error, "redis://h:6380/0"))


def test_a_dead_cluster_or_sentinel_node_gets_no_tls_hint():
    error = redis.ConnectionError("Connection closed by server.")
    for where in ("redis+cluster://h:7000", "redis+sentinel://h:26379/mymaster"):
        text = str(translate(error, where))
        assert "unreachable" in text and "rediss" not in text


def test_a_slot_being_moved_is_unavailable_for_a_moment_not_a_failure():
    error = redis.exceptions.TryAgainError("Multiple keys request during rehashing of slot")
    translated = translate(error, "redis+cluster://h:7000")
    assert isinstance(translated, StoreUnavailableError)
    assert "moving the slot" in str(translated) and "retry" in str(translated)


def test_a_tls_timeout_hints_at_the_port():
    error = redis.TimeoutError("Timeout connecting to server")
    assert "speaks TLS on that port" in str(translate(error, "rediss://h:6380/0"))
    assert "TLS" not in str(translate(error, "redis://h:6379/0"))


def test_a_refused_password_behind_a_cluster_error_is_still_an_authentication_failure():
    try:
        try:
            raise redis.AuthenticationError("invalid username-password pair or user is disabled.")
        except redis.AuthenticationError as e:
            raise RedisClusterException("Redis Cluster cannot be connected.") from e
    except RedisClusterException as outer:
        text = str(translate(outer, "redis+cluster://mcp@h:7000"))
    assert "(authentication failed): invalid username-password pair or user is disabled;" in text
    assert "MCPSEC_STORE_PASSWORD" in text
