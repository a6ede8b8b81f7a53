"""How mcpsec reaches a Redis store: the TLS files and ACL password in the settings, checked
before any connection is made.

    options = redis_options(settings.store)      # None for SQLite
    store = open_store(settings.store.url, options=options)

A missing file, a private key others can read, or a certificate that does not load is a
configuration problem (exit 4) found here, named by its setting, rather than an `ssl`
traceback at connect time. The password is read only now, when a Redis store is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mcpsec.core.errors import ConfigError, SecretError
from mcpsec.core.secret_files import check_secret_file, read_secret_file
from mcpsec.store.redis_options import RedisOptions
from mcpsec.store.url import parse_store_url

if TYPE_CHECKING:
    from mcpsec.core.config import StoreSettings


def redis_options(store: StoreSettings) -> RedisOptions | None:
    """The checked options for a Redis store URL; None for SQLite, which needs none (so a
    Redis password file is not read, nor a TLS file checked, for a local test store)."""
    if parse_store_url(store.url).backend == "sqlite":
        return None
    check_tls_files(store.tls_ca_file, store.tls_cert_file, store.tls_key_file)
    password, source = _password(store)
    return RedisOptions(
        tls_ca_file=store.tls_ca_file,
        tls_cert_file=store.tls_cert_file,
        tls_key_file=store.tls_key_file,
        tls_check_hostname=store.tls_check_hostname,
        username=store.username,
        password=password,
        password_source=source,
    )


def check_tls_files(ca: Path | None, cert: Path | None, key: Path | None) -> None:
    """Each file exists; a private key is the user's own and private (as ssh wants); and
    they load as `ssl` will load them, so a wrong file fails now, naming its setting."""
    for name, path in (("tls_ca_file", ca), ("tls_cert_file", cert), ("tls_key_file", key)):
        if path is not None and not path.is_file():
            raise ConfigError(
                f"store.{name} {path} does not exist (or is not a file)",
                hint=f"check store.{name} (MCPSEC_STORE_{name.upper()})",
            )
    if key is not None and cert is None:
        raise ConfigError(
            f"store.tls_key_file {key} is set without store.tls_cert_file",
            hint="a client key goes with its certificate: set both",
        )
    if key is not None:
        check_secret_file(key, "TLS key file")
    elif cert is not None and _holds_private_key(cert):
        check_secret_file(cert, "TLS certificate file (it holds a private key)")
    _load(ca, cert, key)


def _holds_private_key(cert: Path) -> bool:
    try:
        return b"PRIVATE KEY" in cert.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read store.tls_cert_file {cert}: {e.strerror}") from None


def _load(ca: Path | None, cert: Path | None, key: Path | None) -> None:
    import ssl  # only for a TLS store: an SQLite command need not load OpenSSL

    context = ssl.create_default_context()
    try:
        if ca is not None:
            context.load_verify_locations(cafile=str(ca))
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(
            f"store.tls_ca_file {ca} holds no CA certificate ssl can load: {_reason(e)}",
            hint="give a file of PEM certificates (-----BEGIN CERTIFICATE-----)",
        ) from None
    if cert is None:
        return
    try:
        # A callback, not None: None would have OpenSSL prompt on the terminal for the
        # passphrase of an encrypted key, and a server cannot answer it.
        context.load_cert_chain(
            str(cert), str(key) if key else None, password=lambda: _encrypted(key or cert)
        )
    except (ssl.SSLError, OSError) as e:
        hint = "give a PEM certificate and its unencrypted PEM private key"
        if key is None:
            hint = "set store.tls_key_file to its private key (or put the key in the same file)"
        raise ConfigError(
            f"the client certificate store.tls_cert_file {cert} (key "
            f"{key or 'in the same file'}) does not load: {_reason(e)}",
            hint=hint,
        ) from None


def _encrypted(key: Path) -> bytes:
    raise ConfigError(
        f"the TLS private key {key} is encrypted",
        hint="give an unencrypted key file, readable only by you (mode 0600)",
    )


def _reason(error: OSError) -> str:
    reason = getattr(error, "reason", None)  # an ssl.SSLError's OpenSSL reason
    return str(reason) if reason else error.strerror or str(error)


def _password(store: StoreSettings) -> tuple[str | None, str]:
    """The password and where it came from: the environment wins over the file, as for
    the JWT secret."""
    secret = store.password
    if secret is None and store.password_file is not None:
        secret = read_secret_file(store.password_file)
    if secret is None:
        return None, ""
    try:
        return secret.reveal().decode(), secret.source
    except UnicodeDecodeError:
        raise SecretError(f"the store password from {secret.source} is not UTF-8 text") from None
