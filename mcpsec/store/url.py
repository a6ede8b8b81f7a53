"""Store URLs: which backend a URL names, and how to print one without its password.

parse_store_url("redis+cluster://:pw@h1:7000,h2:7001").backend   # "redis-cluster"
parse_store_url("redis+sentinel://s1:26379,s2:26379/main").service  # "main"
redact_url("redis://ops:hunter2@db:6379/0")                       # "redis://ops:***@db:6379/0"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlsplit

from mcpsec.core.errors import ConfigError

SUPPORTED = (
    "sqlite:///path, redis://, rediss://, unix://, "
    "redis+sentinel://host:port,.../service, redis+cluster://host:port,..."
)
# Query parameters: shown with their values, shown as `name=***`, and accepted on a
# redis://, rediss:// or unix:// URL. Others are refused: redis-py would pass any name on
# as a keyword argument (a typo failing as an internal error at the first command), and
# `retry_on_timeout`, `ssl_cert_reqs` or `socket_timeout` would quietly undo the settings
# mcpsec chose (no retries, checked certificates, `store.timeout`).
_SHOWN_PARAMS = frozenset({"db", "username", "sentinel_username", "client_name"})
_SECRET_PARAMS = frozenset({"password", "sentinel_password"})
_REDIS_PARAMS = frozenset({"db", "username", "password", "client_name"})
# A parameter's name shown (its value never is, unless in _SHOWN_PARAMS): a name with an
# `@`, `/` or `:` in it may be a piece of a password with an unencoded `?`.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A list of hosts as a URL's authority holds them: name or [IPv6], an optional port.
_HOST = r"(?:\[[0-9A-Fa-f:.]*\]|[\w.%-]*)(?::\d*)?"
_HOSTS = re.compile(f"{_HOST}(?:,{_HOST})*")
REDIS_FORM = "redis://[user:password@]host:6379/0"
CLUSTER_FORM = "redis+cluster://[user:password@]host:7000,host:7001"
SENTINEL_FORM = "redis+sentinel://[user:password@]host:26379,host:26380/service[?db=N]"
_SENTINEL_PARAMS = frozenset({"db", "sentinel_username", "sentinel_password"})


@dataclass(frozen=True)
class StoreUrl:
    backend: str  # "sqlite", "redis", "redis-sentinel" or "redis-cluster"
    url: str = field(repr=False)  # as given; may hold a password: print `redacted`
    path: Path | None = None  # sqlite only
    nodes: tuple[tuple[str, int], ...] = ()  # cluster nodes, or the sentinels
    username: str | None = None  # for the data nodes (on Sentinel too)
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    service: str | None = None  # redis-sentinel only: the name the sentinels monitor
    db: int = 0  # redis-sentinel only (a plain redis:// URL carries its own)
    sentinel_username: str | None = None  # redis-sentinel only: the sentinels' own ACL user
    sentinel_password: str | None = field(default=None, repr=False)

    @property
    def redacted(self) -> str:
        return redact_url(self.url)


def redact_url(url: str) -> str:
    """The URL with any password (user information or query) replaced by `***`.

    Errs on the side of hiding. The user information runs to the last `@` before the query,
    so a password with an unencoded `@`, `/` or `#` is hidden whole; when the part before the
    query is no list of hosts and an `@` follows (a password with an unencoded `?`), all of
    it up to that `@` is hidden. Query values are shown only for parameters known to hold
    nothing secret; any other's value is hidden (a misspelt `pasword` say), and its name too
    unless it is a plain identifier.
    """
    scheme, colon, rest = url.partition(":")
    if not colon:
        return url if "@" not in url and "?" not in url else "***"
    body = rest.lstrip("/")
    shown = f"{scheme}:{rest[: len(rest) - len(body)]}"
    head, question, query = body.partition("?")
    if "@" in head:
        userinfo, _, head = head.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        shown += f"{user}{':***' if has_password else ''}@"
    elif "@" in query and not _HOSTS.fullmatch(re.split(r"[/#]", head, maxsplit=1)[0]):
        _, _, body = body.rpartition("@")
        shown += "***@"
        head, question, query = body.partition("?")
    head, fragment, _ = head.partition("#")
    shown += head + ("#***" if fragment else "")
    return shown + (f"?{_redact_query(query)}" if question else "")


def _redact_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return "&".join(
        f"{quote(k, safe='')}={quote(v, safe='')}"
        if k in _SHOWN_PARAMS
        else f"{k}=***"
        if _NAME.fullmatch(k)
        else "***"
        for k, v in pairs
    )


def parse_store_url(url: str) -> StoreUrl:
    """Recognise the backend; refuse anything else with the list of what works."""
    scheme = url.partition(":")[0].lower()
    url = scheme + url[len(scheme) :]  # schemes are case-insensitive (RFC 3986 section 3.1)
    if scheme == "sqlite":
        return _sqlite(url)
    if scheme in {"redis", "rediss", "unix"}:
        _params(url, _REDIS_PARAMS, REDIS_FORM)
        return StoreUrl("redis", url, tls=scheme == "rediss")
    if scheme in {"redis+cluster", "rediss+cluster"}:
        return _cluster(url, tls=scheme == "rediss+cluster")
    if scheme in {"redis+sentinel", "rediss+sentinel"}:
        return _sentinel(url, tls=scheme == "rediss+sentinel")
    raise ConfigError(
        f"store URL {redact_url(url)!r} is not one mcpsec knows", hint=f"use {SUPPORTED}"
    )


def _sqlite(url: str) -> StoreUrl:
    raw = url.partition(":")[2].removeprefix("//")
    if not raw.startswith("/"):
        raise ConfigError(
            f"store URL {redact_url(url)!r} must name an absolute path",
            hint="write it as sqlite:///absolute/path/mcpsec.db",
        )
    path = Path("/" + unquote(raw).lstrip("/"))
    return StoreUrl("sqlite", url, path=path)


def _params(url: str, known: frozenset[str], form: str) -> dict[str, str]:
    """The query's parameters, each one mcpsec passes on (see `_REDIS_PARAMS`) and given
    once: a typo or a second value must not pass unseen."""
    pairs = parse_qsl(_split(url, form).query, keep_blank_values=True)
    hint = f"write it as {form}; parameters: {', '.join(sorted(known)) or 'none'} (timeouts "
    hint += "and TLS are set with store.timeout and store.tls_*)"
    for name, _ in pairs:
        if name not in known:
            shown = repr(name) if _NAME.fullmatch(name) else "one"
            raise ConfigError(
                f"store URL {redact_url(url)} has a parameter mcpsec does not use: {shown}",
                hint=hint,
            )
    params = dict(pairs)
    if len(params) < len(pairs):
        raise ConfigError(f"store URL {redact_url(url)} gives a parameter twice", hint=hint)
    return params


def _split(url: str, form: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError:  # an unbalanced [ in an IPv6 address
        raise ConfigError(
            f"store URL {redact_url(url)} cannot be parsed", hint=f"write it as {form}"
        ) from None


@dataclass(frozen=True)
class _Authority:
    """A cluster's or Sentinel URL's user information and its comma-separated nodes."""

    username: str | None
    password: str | None = field(repr=False)
    nodes: tuple[tuple[str, int], ...]


def _authority(url: str, form: str, missing: str) -> _Authority:
    userinfo, _, hosts = _split(url, form).netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    nodes = tuple(_host_port(url, item, form) for item in hosts.split(",") if item)
    if not nodes:
        raise ConfigError(
            f"store URL {redact_url(url)} names no {missing}", hint=f"write it as {form}"
        )
    return _Authority(unquote(username) or None, unquote(password) or None, nodes)


def _cluster(url: str, *, tls: bool) -> StoreUrl:
    _params(url, frozenset(), CLUSTER_FORM)  # credentials go in the user information
    found = _authority(url, CLUSTER_FORM, "cluster nodes")
    return StoreUrl(
        "redis-cluster",
        url,
        nodes=found.nodes,
        username=found.username,
        password=found.password,
        tls=tls,
    )


def _sentinel(url: str, *, tls: bool) -> StoreUrl:
    """The sentinels to ask, the service they watch, and the database on its primary.

    The URL's user and password are for the data nodes, as with redis://. Sentinels are
    often run without AUTH, or with credentials of their own: those come from the
    `sentinel_username` / `sentinel_password` parameters, never from the data nodes' pair.
    """
    found = _authority(url, SENTINEL_FORM, "sentinels")
    service = unquote(_split(url, SENTINEL_FORM).path.removeprefix("/"))
    if not service or "/" in service or any(c.isspace() for c in service):
        raise ConfigError(
            f"store URL {redact_url(url)} must name one Sentinel service after the hosts",
            hint=f"write it as {SENTINEL_FORM}",
        )
    params = _params(url, _SENTINEL_PARAMS, SENTINEL_FORM)
    return StoreUrl(
        "redis-sentinel",
        url,
        nodes=found.nodes,
        username=found.username,
        password=found.password,
        tls=tls,
        service=service,
        db=_database(url, params.get("db", "0")),
        sentinel_username=params.get("sentinel_username") or None,
        sentinel_password=params.get("sentinel_password") or None,
    )


def _database(url: str, value: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise ConfigError(
            f"store URL {redact_url(url)}: db={value!r} is not a database number (0, 1, ...)",
            hint=f"write it as {SENTINEL_FORM}",
        )
    return int(value)


def _host_port(url: str, item: str, form: str) -> tuple[str, int]:
    host, _, port = item.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ConfigError(
            f"store URL {redact_url(url)}: {_node_shown(item)} is not host:port",
            hint=f"write it as {form}",
        )
    return host.strip("[]"), int(port)


def _node_shown(item: str) -> str:
    """The node as the error names it; none when it may be a password's piece (a password
    with an unencoded `/`, `?` or `#` ends the host list inside the password)."""
    return repr(item) if _HOSTS.fullmatch(item) else "a node"


def url_credentials(url: str) -> tuple[str | None, str | None]:
    """The user name and password a Redis URL carries (in its user information or its query),
    percent-decoded; None for each one it does not carry."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unparseable: opening the store says so, without the password
        return None, None
    userinfo, at, _ = parts.netloc.rpartition("@")
    username, colon, password = userinfo.partition(":") if at else ("", "", "")
    query = dict(parse_qsl(parts.query))
    return (
        unquote(username) or query.get("username") or None,
        (unquote(password) if colon else None) or query.get("password") or None,
    )
