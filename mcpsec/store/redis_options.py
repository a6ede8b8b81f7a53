"""What a Redis connection needs besides its URL: TLS files and ACL credentials.

    options = RedisOptions(tls_ca_file=Path("/etc/mcpsec/ca.pem"), username="mcp", password=pw)
    url, extra = apply_options(url, options)
    common = {"socket_timeout": 2.0, **extra}

One dict of redis-py keyword arguments for every flavour (standalone, cluster, sentinel;
blocking and asyncio), so that TLS or a password can never apply to one client and be
forgotten by another. The files were checked by `mcpsec.core.store_connection` already.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mcpsec.core.errors import ConfigError
from mcpsec.store.url import StoreUrl, url_credentials


@dataclass(frozen=True)
class RedisOptions:
    """TLS files (PEM) and credentials given apart from the URL; the password never prints."""

    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_check_hostname: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_source: str = "the settings"  # noqa: S105 - where it came from, for messages

    @property
    def tls_files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.tls_ca_file, self.tls_cert_file, self.tls_key_file) if p)


def apply_options(url: StoreUrl, options: RedisOptions) -> tuple[StoreUrl, dict[str, Any]]:
    """The URL with the settings' credentials in it (every flavour reads `url.username` and
    `url.password`), and redis-py keyword arguments for TLS and those credentials.

    Credentials come from one place, the URL or the settings: when both give one, neither can
    silently win, or rotating the password in one place would look done and not be.
    """
    url = _with_credentials(url, options)
    kwargs: dict[str, Any] = {}
    if url.username is not None:
        kwargs["username"] = url.username
    if url.password is not None:
        kwargs["password"] = url.password
    return url, kwargs | _tls_kwargs(url, options)


def _tls_kwargs(url: StoreUrl, options: RedisOptions) -> dict[str, Any]:
    if not url.tls:
        if options.tls_files:
            raise ConfigError(
                f"TLS files are set (store.tls_*) but the store URL {url.redacted} does not "
                "use TLS",
                hint="write rediss:// (or rediss+cluster://) to connect over TLS, or unset them",
            )
        return {}
    kwargs: dict[str, Any] = {"ssl_check_hostname": options.tls_check_hostname}
    if options.tls_ca_file:
        kwargs["ssl_ca_certs"] = str(options.tls_ca_file)
    if options.tls_cert_file:
        kwargs["ssl_certfile"] = str(options.tls_cert_file)
    if options.tls_key_file:
        kwargs["ssl_keyfile"] = str(options.tls_key_file)
    return kwargs


def _with_credentials(url: StoreUrl, options: RedisOptions) -> StoreUrl:
    url_user, url_password = url_credentials(url.url)
    if options.password is not None and url_password is not None:
        raise ConfigError(
            f"the store URL {url.redacted} carries a password and {options.password_source} "
            "gives one too",
            hint="give the password in one place: take it out of the URL, or unset "
            "MCPSEC_STORE_PASSWORD and store.password_file",
        )
    if options.username is not None and url_user is not None:
        raise ConfigError(
            f"the store URL {url.redacted} names a user and store.username names one too",
            hint="name the ACL user in one place",
        )
    return replace(
        url,
        username=options.username if options.username is not None else url.username,
        password=options.password if options.password is not None else url.password,
    )
