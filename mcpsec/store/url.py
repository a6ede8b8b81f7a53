"""Store URLs: which backend a URL names, and how to print one without its password.

parse_store_url("redis+cluster://:pw@h1:7000,h2:7001").backend   # "redis-cluster"
redact_url("redis://ops:hunter2@db:6379/0")                       # "redis://ops:***@db:6379/0"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from mcpsec.core.errors import ConfigError

SUPPORTED = "sqlite:///path, redis://, rediss://, unix://, redis+cluster://host:port,..."
_SECRET_QUERY_KEYS = frozenset({"password", "pass", "token"})


@dataclass(frozen=True)
class StoreUrl:
    backend: str  # "sqlite", "redis" or "redis-cluster"
    url: str  # as given; may hold a password, never print it (use `redacted`)
    path: Path | None = None  # sqlite only
    nodes: tuple[tuple[str, int], ...] = ()  # redis-cluster only
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    @property
    def redacted(self) -> str:
        return redact_url(self.url)


def redact_url(url: str) -> str:
    """The URL with any password (userinfo or query) replaced by `***`.

    Errs on the side of hiding: the user information runs to the *last* `@`, so a password
    with an unencoded `@`, `/` or `?` in it is hidden whole, and schemes match in any case.
    """
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        userinfo, _, host = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}{':***' if colon else ''}@{host}"
    text = f"{scheme}{sep}{rest}"
    base, _, query = text.partition("?")
    if not query:
        return text
    pairs = [(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in parse_qsl(query)]
    return f"{base}?{urlencode(pairs, safe='*/')}"


def parse_store_url(url: str) -> StoreUrl:
    """Recognise the backend; refuse anything else with the list of what works."""
    scheme = url.partition(":")[0].lower()
    url = scheme + url[len(scheme) :]  # schemes are case-insensitive (RFC 3986 section 3.1)
    if scheme == "sqlite":
        return _sqlite(url)
    if scheme in {"redis", "rediss", "unix"}:
        return StoreUrl("redis", url, tls=scheme == "rediss")
    if scheme in {"redis+cluster", "rediss+cluster"}:
        return _cluster(url, tls=scheme == "rediss+cluster")
    if scheme in {"redis+sentinel", "rediss+sentinel"}:
        raise ConfigError(
            f"store URL {redact_url(url)}: Sentinel is not supported by this version of mcpsec",
            hint=f"use one of {SUPPORTED}",
        )
    raise ConfigError(
        f"store URL {redact_url(url)!r} is not one mcpsec knows", hint=f"use {SUPPORTED}"
    )


def _sqlite(url: str) -> StoreUrl:
    raw = url.partition(":")[2].removeprefix("//")
    if not raw.startswith("/"):
        raise ConfigError(
            f"store URL {url!r} must name an absolute path",
            hint="write it as sqlite:///absolute/path/mcpsec.db",
        )
    path = Path("/" + unquote(raw).lstrip("/"))
    return StoreUrl("sqlite", url, path=path)


def _cluster(url: str, *, tls: bool) -> StoreUrl:
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    nodes = tuple(_host_port(url, item) for item in hosts.split(",") if item)
    if not nodes:
        raise ConfigError(f"store URL {redact_url(url)} names no cluster nodes")
    return StoreUrl(
        "redis-cluster",
        url,
        nodes=nodes,
        username=unquote(username) or None,
        password=unquote(password) or None,
        tls=tls,
    )


def _host_port(url: str, item: str) -> tuple[str, int]:
    host, _, port = item.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"store URL {redact_url(url)}: {item!r} is not host:port",
            hint="write it as redis+cluster://host:7000,host:7001",
        )
    return host.strip("[]"), int(port)
