"""Settings from flags > `MCPSEC_*` environment > TOML file > defaults, as one frozen value.

    settings = load_settings(os.environ, flags={"store.url": "redis://localhost"})
    settings.store.url, settings.source_of("store.url")     # "redis://localhost", "flag --store"

`load_settings` is pure: it reads the environment it is given and the file it is pointed at,
nothing at import time, so tests pass a dict.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mcpsec.core.durations import MAX_SECONDS, format_duration, parse_duration, parse_lifetime
from mcpsec.core.errors import ConfigError, InvalidInputError
from mcpsec.core.key_format import check_prefix as check_key_prefix
from mcpsec.core.rate_config import build_rate_policy, parse_rate_tables
from mcpsec.core.ratelimit import RatePolicy
from mcpsec.core.rbac import RoleTable, check_permission
from mcpsec.core.roles import DEFAULT_ROLES, build_roles, parse_role_tables
from mcpsec.core.secret_files import Secret
from mcpsec.core.token_ids import check_audience
from mcpsec.store.interface import Store, check_prefix

CONFIG_ENV = "MCPSEC_CONFIG"
MAX_STORE_TIMEOUT = 600.0
MAX_LEEWAY = 300.0
COUNT_SETTINGS = frozenset(
    {"audit.max_events", "store.wait_replicas"}
)  # may be written as TOML integers
MAX_WAIT_REPLICAS = 1000

# Every setting: its dotted name, the environment variable that sets it, and whether it is a
# secret (redacted by `config show`). Later capabilities add their rows here.
ENV_VARS: dict[str, str] = {
    "store.url": "MCPSEC_STORE_URL",
    "store.prefix": "MCPSEC_STORE_PREFIX",
    "store.timeout": "MCPSEC_STORE_TIMEOUT",
    "store.wait_replicas": "MCPSEC_STORE_WAIT_REPLICAS",
    "store.tls_ca_file": "MCPSEC_STORE_TLS_CA_FILE",
    "store.tls_cert_file": "MCPSEC_STORE_TLS_CERT_FILE",
    "store.tls_key_file": "MCPSEC_STORE_TLS_KEY_FILE",
    "store.tls_check_hostname": "MCPSEC_STORE_TLS_CHECK_HOSTNAME",
    "store.username": "MCPSEC_STORE_USERNAME",
    "store.password": "MCPSEC_STORE_PASSWORD",
    "store.password_file": "MCPSEC_STORE_PASSWORD_FILE",
    "tokens.secret": "MCPSEC_JWT_SECRET",
    "tokens.secret_file": "MCPSEC_JWT_SECRET_FILE",
    "tokens.keys_dir": "MCPSEC_JWT_KEYS_DIR",
    "tokens.issuer": "MCPSEC_JWT_ISSUER",
    "tokens.audience": "MCPSEC_JWT_AUDIENCE",
    "tokens.access_ttl": "MCPSEC_JWT_ACCESS_TTL",
    "tokens.refresh_ttl": "MCPSEC_JWT_REFRESH_TTL",
    "tokens.algorithms": "MCPSEC_JWT_ALGORITHMS",
    "tokens.leeway": "MCPSEC_JWT_LEEWAY",
    "tokens.reuse_leeway": "MCPSEC_JWT_REUSE_LEEWAY",
    "keys.prefix": "MCPSEC_KEY_PREFIX",
    "keys.default_ttl": "MCPSEC_KEY_DEFAULT_TTL",
    "audit.key": "MCPSEC_AUDIT_KEY",
    "audit.key_file": "MCPSEC_AUDIT_KEY_FILE",
    "audit.max_events": "MCPSEC_AUDIT_MAX_EVENTS",
    "audit.max_age": "MCPSEC_AUDIT_MAX_AGE",
    "audit.sink": "MCPSEC_AUDIT_SINK",
    "audit.required": "MCPSEC_AUDIT_REQUIRED",
    "rate.fail_open": "MCPSEC_RATE_FAIL_OPEN",
    "rate.default_role": "MCPSEC_RATE_DEFAULT_ROLE",
    "server.resource": "MCPSEC_SERVER_RESOURCE",
    "server.authorization_servers": "MCPSEC_SERVER_AUTHORIZATION_SERVERS",
    "server.default_permission": "MCPSEC_SERVER_DEFAULT_PERMISSION",
}
SERVER_TABLES = frozenset({"server.tools", "server.tool_costs"})  # [server.tools] name = ...
SECRET_SETTINGS = frozenset({"tokens.secret", "audit.key", "store.password"})
FILE_ONLY_FORBIDDEN = frozenset(
    {"tokens.secret", "audit.key", "store.password"}
)  # a secret value never lives in the config file

# What each setting does, for the man page's ENVIRONMENT section: one row per `ENV_VARS` row.
# `{supported}`, `{data_file}` and `{min_secret}` are filled in by the reader (store URL
# schemes, the default SQLite file, `MIN_SECRET_BYTES`), so that the text can name
# `$XDG_DATA_HOME` instead of one machine's path.
SETTING_HELP: dict[str, str] = {
    "store.url": "The store URL, one of {supported}; the default is an SQLite file, "
    "`{data_file}`. `--store` overrides it.",
    "store.prefix": "The prefix of every Redis key (default `mcpsec:`), so that several "
    "deployments can share one Redis.",
    "store.timeout": "How long to wait for the store before failing, written like `500ms`, "
    "`2s` or `1m` (default `2s`).",
    "store.wait_replicas": "How many Redis replicas must acknowledge each change of a key, a "
    "revocation or a record (`WAIT`, for half of `store.timeout`) before it counts as made; "
    "fewer is a store error (exit 5), as the change may not survive a failover. Default 0: "
    "no waiting. Not for Redis Cluster.",
    "store.tls_ca_file": "The CA certificates (PEM) that a `rediss://` store's certificate must "
    "chain to (default: the system's). A relative path is relative to the config file.",
    "store.tls_cert_file": "The client certificate (PEM) for a `rediss://` store that asks for "
    "one (mutual TLS). A relative path is relative to the config file.",
    "store.tls_key_file": "The private key of `store.tls_cert_file` (PEM, unencrypted); it "
    "must not be readable by others (mode 0600). A relative path is relative to the config "
    "file.",
    "store.tls_check_hostname": "`true` (the default): the store's certificate must name the "
    "host in the store URL. `false` accepts any certificate the CA signed; avoid it.",
    "store.username": "The Redis ACL user, when the store URL names none (default: the URL's, "
    "else Redis's `default`). Naming a user in both places is refused.",
    "store.password": "The Redis password itself. Never read from the config file; prefer a "
    "password file. A password in the store URL as well is refused.",
    "store.password_file": "A file holding the Redis password (mode 0600), for a store URL "
    "without one; `MCPSEC_STORE_PASSWORD` overrides it. A relative path is relative to the "
    "config file.",
    "tokens.secret": "The HS256 signing secret itself, at least {min_secret} bytes. Never read "
    "from the config file; prefer a secret file.",
    "tokens.secret_file": "A file holding the HS256 signing secret; it must not be readable by "
    "others (mode 0600). A relative path is relative to the config file.",
    "tokens.keys_dir": "The keyring folder for token signing keys (default `signing-keys` next "
    "to the config file): private key files (0600) and the manifest naming the signer. A "
    "relative path is relative to the config file.",
    "tokens.issuer": "The `iss` of every token minted, and the only issuer verification "
    "accepts (default `mcpsec`).",
    "tokens.audience": "The `aud` of tokens minted without `--audience`, and the audience "
    "verification requires when given none: the MCP server's resource URI (RFC 8707). "
    "Unset: no audience.",
    "tokens.access_ttl": "How long an access token lives when `token mint` is given no "
    "`--ttl` (default `30m`).",
    "tokens.refresh_ttl": "How long a refresh token family lives (default `7d`): refreshing "
    "rotates the refresh token but never extends the family.",
    "tokens.algorithms": "The signature algorithms verification accepts, comma-separated "
    "(default `EdDSA,ES256,RS256,HS256`); never taken from the token.",
    "tokens.leeway": "Clock skew forgiven when checking `exp`, `nbf` and `iat` (default `0s`, "
    "at most `5m`).",
    "tokens.reuse_leeway": "How soon after a refresh the same refresh token may be presented "
    "again without counting as reuse (default `2s`), for two concurrent refreshes by one "
    "client.",
    "keys.prefix": "The first part of every new API key (default `mcp`): 1-16 lowercase letters "
    "and digits, so that secret scanners can recognise the keys.",
    "audit.key": "The audit key itself, at least {min_secret} bytes, that chains the audit log's "
    "MACs. Never read from the config file; prefer a key file.",
    "audit.key_file": "The file holding the audit key (mode 0600; default `audit.key` next to the "
    "config file, created on first use). A relative path is relative to the config file.",
    "audit.max_events": "How many audit events to keep; older ones are trimmed, approximately "
    "(default 1000000).",
    "audit.max_age": "How long to keep audit events, like `90d`, or `never` (default `never`).",
    "audit.sink": "A file to which every audit event is also appended as a JSON line (0600), "
    "for shipping to a SIEM. Unset: none.",
    "audit.required": "`true` (the default): a change that cannot be audited is not made (exit "
    "5). `false`: it is made, and the failure is reported.",
    "rate.fail_open": "What a rate-limit decision says when the store cannot be reached: "
    "`true` (the default) allows the request and says so, `false` refuses it.",
    "rate.default_role": "The role whose `[rate.roles.*]` limit applies to a principal none of "
    "whose roles has one (default `guest`).",
    "keys.default_ttl": "How long a new API key lives when `keys create` is given no `--ttl`, "
    "like `90d`, or `never` (default `90d`).",
    "server.resource": "The protected MCP server's resource URI (RFC 8707), like "
    "`https://mcp.example.com/mcp`: the audience its tokens must carry and the `resource` of "
    "its RFC 9728 metadata (default: `tokens.audience`).",
    "server.authorization_servers": "The OAuth authorization servers that issue its tokens, "
    "comma-separated URLs, for the RFC 9728 metadata (default: `tokens.issuer` when it is a URL).",
    "server.default_permission": "The permission a tool call needs when `[server.tools]` (or "
    "`@guard.requires`) names none for the tool, like `tools:call`. Unset: such a tool is "
    "open to every authenticated caller.",
}


@dataclass(frozen=True)
class StoreSettings:
    url: str
    prefix: str = "mcpsec:"
    timeout: float = 2.0
    wait_replicas: int = 0  # Redis replicas that must acknowledge each change (WAIT)
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_check_hostname: bool = True
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    password_file: Path | None = None

    def open(self) -> Store:
        """The store these settings name (its backend imported only now), after checking
        its TLS files and reading its password (see mcpsec.core.store_connection)."""
        from mcpsec.core.store_connection import redis_options
        from mcpsec.store import open_store

        return open_store(
            self.url,
            prefix=self.prefix,
            timeout=self.timeout,
            options=redis_options(self),
            wait_replicas=self.wait_replicas,
        )


@dataclass(frozen=True)
class TokenSettings:
    secret: Secret | None = field(default=None, repr=False)
    secret_file: Path | None = None
    keys_dir: Path | None = None  # None: `signing-keys` next to the config file
    issuer: str = "mcpsec"
    audience: str | None = None
    access_ttl: float = 30 * 60.0
    refresh_ttl: float = 7 * 86400.0
    algorithms: tuple[str, ...] = ("EdDSA", "ES256", "RS256", "HS256")
    leeway: float = 0.0
    reuse_leeway: float = 2.0


@dataclass(frozen=True)
class AuditSettings:
    key_file: Path
    key: Secret | None = field(default=None, repr=False)
    max_events: int | None = 1_000_000
    max_age: float | None = None
    sink: Path | None = None
    required: bool = True


@dataclass(frozen=True)
class KeySettings:
    prefix: str = "mcp"
    default_ttl: float | None = 90 * 86400.0  # None: keys never expire unless told


@dataclass(frozen=True)
class ServerSettings:
    """How `mcpsec.server` guards an MCP server: `[server]`, `[server.tools]` (tool =
    permission) and `[server.tool_costs]` (tool = rate-limit tokens a call costs)."""

    resource: str | None = None
    authorization_servers: tuple[str, ...] = ()
    tools: Mapping[str, str] = field(default_factory=dict)
    tool_costs: Mapping[str, float] = field(default_factory=dict)
    default_permission: str | None = None  # needed by a tool without its own rule


@dataclass(frozen=True)
class Settings:
    config_path: Path
    config_found: bool
    store: StoreSettings
    tokens: TokenSettings
    keys: KeySettings = field(default_factory=KeySettings)
    roles: RoleTable = DEFAULT_ROLES
    sources: Mapping[str, str] = field(default_factory=dict)
    rate: RatePolicy = field(default_factory=RatePolicy)
    audit: AuditSettings = field(default_factory=lambda: AuditSettings(Path("audit.key")))
    server: ServerSettings = field(default_factory=ServerSettings)

    def source_of(self, name: str) -> str:
        return self.sources.get(name, "default")


def config_home(environ: Mapping[str, str]) -> Path:
    return _xdg(environ, "XDG_CONFIG_HOME", ".config") / "mcpsec"


def data_home(environ: Mapping[str, str]) -> Path:
    return _xdg(environ, "XDG_DATA_HOME", ".local/share") / "mcpsec"


def default_config_path(environ: Mapping[str, str]) -> Path:
    return config_home(environ) / "config.toml"


def default_store_url(environ: Mapping[str, str]) -> str:
    return f"sqlite://{(data_home(environ) / 'mcpsec.db').absolute()}"


def default_secret_file(environ: Mapping[str, str], config_path: Path | None = None) -> Path:
    folder = config_path.parent if config_path else config_home(environ)
    return folder / "jwt.secret"


def resolve_config_path(environ: Mapping[str, str], flag: Path | None = None) -> Path:
    """`--config` wins over `MCPSEC_CONFIG`, which wins over the XDG location."""
    if flag is not None:
        return flag.expanduser()
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]).expanduser()
    return default_config_path(environ)


def load_settings(
    environ: Mapping[str, str],
    *,
    config_path: Path | None = None,
    flags: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the four layers and validate every value, naming the layer a bad value came from."""
    path = resolve_config_path(environ, config_path)
    named = config_path is not None or bool(environ.get(CONFIG_ENV))
    layers: list[tuple[str, dict[str, Any]]] = [
        ("default", {"store.url": default_store_url(environ)}),
        (f"file {path}", _read_file(path, must_exist=named)),
        ("environment", _from_env(environ)),
        ("flag", {k: v for k, v in (flags or {}).items() if v is not None}),
    ]
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, values in layers:
        for name, value in values.items():
            merged[name] = value
            sources[name] = source if source != "environment" else f"env {ENV_VARS[name]}"
    return _build(path, path.is_file(), merged, sources)


def _xdg(environ: Mapping[str, str], var: str, fallback: str) -> Path:
    if environ.get(var):
        return Path(environ[var])
    home = environ.get("HOME")
    return (Path(home) if home else Path.home()) / fallback


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    return {name: environ[var] for name, var in ENV_VARS.items() if environ.get(var)}


def _read_file(path: Path, *, must_exist: bool) -> dict[str, Any]:
    """A missing default file means defaults; a file named by --config or MCPSEC_CONFIG must
    exist, or a typo in its path would silently point every command at another store."""
    try:
        with path.open("rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        if must_exist:
            raise ConfigError(
                f"config file {path} does not exist",
                source=str(path),
                hint="check the path given by --config or MCPSEC_CONFIG, or create it with "
                "`mcpsec config init`",
            ) from None
        return {}
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}", source=str(path)) from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}", source=str(path)) from e
    return _flatten(document, path)


def _flatten(document: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Dotted names for the known settings; an unknown name is an error, since a typo is silent."""
    flat: dict[str, Any] = {}
    for section, table in document.items():
        if section == "roles":  # a table of tables, not settings: see mcpsec.core.roles
            flat["roles"] = parse_role_tables(table, f"config file {path}")
            continue
        if not isinstance(table, dict):
            raise ConfigError(f"config file {path}: `{section}` must be a [section]")
        for key, value in table.items():
            name = f"{section}.{key}"
            if name == "rate.roles":  # [rate.roles.<role>] tables: see mcpsec.core.rate_config
                flat[name] = parse_rate_tables(value, f"config file {path}")
                continue
            if name in SERVER_TABLES:
                flat[name] = _server_table(name, value, path)
                continue
            if name not in ENV_VARS or name in FILE_ONLY_FORBIDDEN:
                raise ConfigError(f"config file {path}: unknown setting `{key}` in [{section}]")
            flat[name] = value
    return flat


def _build(path: Path, found: bool, merged: dict[str, Any], sources: dict[str, str]) -> Settings:
    def text(name: str) -> str:
        value = merged[name]
        if name in COUNT_SETTINGS and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # a count written as a TOML integer
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{name} from {sources[name]} must be a non-empty string")
        return value.strip()

    def optional(name: str) -> str | None:
        return text(name) if name in merged else None

    def checked(name: str, check: Callable[[str], T], default: T) -> T:
        value = optional(name)
        return _checked(check, value, name, sources) if value else default

    def path_of(name: str) -> Path | None:
        value = optional(name)
        return _relative_to(path, value) if value else None

    store_password = optional("store.password")
    store = StoreSettings(
        url=text("store.url"),
        prefix=checked("store.prefix", check_prefix, StoreSettings.prefix),
        timeout=checked(
            "store.timeout",
            lambda v: _timeout(parse_duration(v, field="store.timeout")),
            StoreSettings.timeout,
        ),
        wait_replicas=checked("store.wait_replicas", _replica_count, StoreSettings.wait_replicas),
        tls_ca_file=path_of("store.tls_ca_file"),
        tls_cert_file=path_of("store.tls_cert_file"),
        tls_key_file=path_of("store.tls_key_file"),
        tls_check_hostname=_boolean(
            merged["store.tls_check_hostname"], "store.tls_check_hostname", sources
        )
        if "store.tls_check_hostname" in merged
        else True,
        username=optional("store.username"),
        password=Secret(store_password.encode(), "env MCPSEC_STORE_PASSWORD")
        if store_password
        else None,
        password_file=path_of("store.password_file"),
    )
    secret = optional("tokens.secret")
    secret_file = optional("tokens.secret_file")
    keys_dir = optional("tokens.keys_dir")

    def duration(name: str, default: float, most: float = MAX_SECONDS) -> float:
        def parse(value: str) -> float:
            if most == MAX_LEEWAY and value.strip().lower() in ("0", "0s"):
                return 0.0  # no leeway at all is a fine choice
            seconds = parse_duration(value, field=name)
            if seconds > most:
                raise InvalidInputError(f"{value} is longer than {format_duration(most)}")
            return seconds

        return checked(name, parse, default)

    tokens = TokenSettings(
        secret=Secret(secret.encode(), "env MCPSEC_JWT_SECRET") if secret else None,
        secret_file=_relative_to(path, secret_file) if secret_file else None,
        keys_dir=_relative_to(path, keys_dir) if keys_dir else path.parent / "signing-keys",
        issuer=optional("tokens.issuer") or TokenSettings.issuer,
        audience=checked("tokens.audience", check_audience, None),
        access_ttl=duration("tokens.access_ttl", TokenSettings.access_ttl),
        refresh_ttl=duration("tokens.refresh_ttl", TokenSettings.refresh_ttl),
        algorithms=checked("tokens.algorithms", _algorithms, TokenSettings.algorithms),
        leeway=duration("tokens.leeway", TokenSettings.leeway, MAX_LEEWAY),
        reuse_leeway=duration("tokens.reuse_leeway", TokenSettings.reuse_leeway, MAX_LEEWAY),
    )
    keys = KeySettings(
        prefix=checked("keys.prefix", check_key_prefix, KeySettings.prefix),
        default_ttl=checked(
            "keys.default_ttl",
            lambda v: parse_lifetime(v, field="keys.default_ttl"),
            KeySettings.default_ttl,
        ),
    )
    roles = _roles(merged["roles"], path) if "roles" in merged else DEFAULT_ROLES
    rate = build_rate_policy(
        merged.get("rate.roles"),
        roles,
        fail_open=_boolean(merged["rate.fail_open"], "rate.fail_open", sources)
        if "rate.fail_open" in merged
        else True,
        default_role=optional("rate.default_role"),
        source=f"config file {path}",
    )
    audit_key = optional("audit.key")
    sink = optional("audit.sink")
    key_file = optional("audit.key_file")
    audit = AuditSettings(
        key_file=_relative_to(path, key_file) if key_file else path.parent / "audit.key",
        key=Secret(audit_key.encode(), "env MCPSEC_AUDIT_KEY") if audit_key else None,
        max_events=checked("audit.max_events", _count, AuditSettings.max_events),
        max_age=checked("audit.max_age", lambda v: parse_lifetime(v, field="audit.max_age"), None),
        sink=_relative_to(path, sink) if sink else None,
        required=_boolean(merged["audit.required"], "audit.required", sources)
        if "audit.required" in merged
        else True,
    )
    servers = optional("server.authorization_servers")
    server = ServerSettings(
        resource=checked("server.resource", _resource_url, None) or tokens.audience,
        authorization_servers=_checked(_urls, servers, "server.authorization_servers", sources)
        if servers
        else _default_authorization_servers(tokens.issuer),
        tools=merged.get("server.tools", {}),
        tool_costs=merged.get("server.tool_costs", {}),
        default_permission=checked("server.default_permission", check_permission, None),
    )
    return Settings(path, found, store, tokens, keys, roles, sources, rate, audit, server)


def _server_table(name: str, value: Any, path: Path) -> dict[str, Any]:
    """[server.tools]: tool = "resource:action"; [server.tool_costs]: tool = tokens (> 0)."""
    from mcpsec.store.interface import check_id

    where = f"config file {path}: [{name}]"
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table of tool = value")
    table: dict[str, Any] = {}
    for tool, setting in value.items():
        try:
            check_id(tool, "tool")
            if name == "server.tools":
                if not isinstance(setting, str):
                    raise InvalidInputError("the permission must be a string like files:write")
                table[tool] = check_permission(setting)
            else:
                if isinstance(setting, bool) or not isinstance(setting, int | float):
                    raise InvalidInputError("the cost must be a number of tokens")
                if not 0 < setting <= 1_000_000:
                    raise InvalidInputError("the cost must be more than 0 and at most 1000000")
                table[tool] = float(setting)
        except InvalidInputError as e:
            raise ConfigError(f"{where} `{tool}`: {e.message}") from None
    return table


def _urls(value: str) -> tuple[str, ...]:
    """Authorization server URLs, checked as `mcpsec prm generate` checks them."""
    from mcpsec.core.prm import check_url

    urls = tuple(u.strip() for u in value.split(",") if u.strip())
    return tuple(check_url(url, "authorization server", []) for url in urls)


def _resource_url(value: str) -> str:
    """The server's resource URI: an audience tokens carry, and a URL in header fields."""
    from mcpsec.core.prm import check_url

    return check_url(check_audience(value), "resource", [])


def _default_authorization_servers(issuer: str) -> tuple[str, ...]:
    return (issuer,) if issuer.startswith(("https://", "http://")) else ()


def _replica_count(value: str) -> int:
    """How many replicas must acknowledge a change: a whole number, 0 for none."""
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_WAIT_REPLICAS:
        raise InvalidInputError(f"{value!r} is not a number of replicas (0 to {MAX_WAIT_REPLICAS})")
    return int(text)


def _count(value: str) -> int | None:
    """A positive whole number of events, or `never` for no limit."""
    if value.strip().lower() == "never":
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise InvalidInputError(f"{value!r} is not a number of events (or never)")
    return int(value)


def _boolean(value: Any, name: str, sources: Mapping[str, str]) -> bool:
    """TOML true/false, or the words scripts put in environment variables."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("true", "1", "yes", "on"):
        return True
    if word in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{name} from {sources[name]} must be true or false, not {value!r}")


def _roles(definitions: Mapping[str, Any], path: Path) -> RoleTable:
    try:
        return build_roles(definitions)
    except ConfigError as e:
        raise ConfigError(f"config file {path}: {e}", source=str(path)) from None


def _algorithms(value: str) -> tuple[str, ...]:
    """`EdDSA, HS256` (any case) as the algorithms' own names, each once, none unknown."""
    from mcpsec.core.signing_keys import parse_algorithm

    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise InvalidInputError("name at least one algorithm")
    return tuple(dict.fromkeys(parse_algorithm(name).value for name in names))


def _timeout(seconds: float) -> float:
    """Seconds to wait for the store; capped, since a command that hangs for hours is a bug."""
    if seconds > MAX_STORE_TIMEOUT:
        raise InvalidInputError(f"{format_duration(seconds)} is longer than 10m")
    return seconds


T = TypeVar("T")


def _checked(check: Callable[[str], T], value: str, name: str, sources: Mapping[str, str]) -> T:
    """Run one setting's check; a refusal becomes a config error naming where it came from."""
    try:
        return check(value)
    except InvalidInputError as e:
        raise ConfigError(f"{name} from {sources[name]}: {e}") from e


def _relative_to(config_path: Path, value: str) -> Path:
    """A relative secret path is relative to the config file, so a config folder moves whole."""
    candidate = Path(value).expanduser()
    return candidate if candidate.is_absolute() else config_path.parent / candidate


def redacted(settings: Settings) -> dict[str, Any]:
    """Every setting as `config show` prints it: secrets replaced by where they come from."""
    from mcpsec.store.url import redact_url

    tokens_secret = f"<set by {settings.tokens.secret.source}>" if settings.tokens.secret else None
    store = settings.store
    return {
        "config_path": str(settings.config_path),
        "config_found": settings.config_found,
        "store": {
            "url": redact_url(settings.store.url),
            "prefix": settings.store.prefix,
            "timeout": settings.store.timeout,
            "wait_replicas": settings.store.wait_replicas,
            "tls_ca_file": _path_text(store.tls_ca_file),
            "tls_cert_file": _path_text(store.tls_cert_file),
            "tls_key_file": _path_text(store.tls_key_file),
            "tls_check_hostname": store.tls_check_hostname,
            "username": store.username,
            "password": f"<set by {store.password.source}>" if store.password else None,
            "password_file": _path_text(store.password_file),
        },
        "tokens": {
            "secret": tokens_secret,
            "secret_file": str(settings.tokens.secret_file)
            if settings.tokens.secret_file
            else None,
            "keys_dir": str(settings.tokens.keys_dir) if settings.tokens.keys_dir else None,
            "issuer": settings.tokens.issuer,
            "audience": settings.tokens.audience,
            "access_ttl": settings.tokens.access_ttl,
            "refresh_ttl": settings.tokens.refresh_ttl,
            "algorithms": list(settings.tokens.algorithms),
            "leeway": settings.tokens.leeway,
            "reuse_leeway": settings.tokens.reuse_leeway,
        },
        "keys": {
            "prefix": settings.keys.prefix,
            "default_ttl": settings.keys.default_ttl,
        },
        "roles": sorted(settings.roles.roles),
        "audit": {
            "key": f"<set by {settings.audit.key.source}>" if settings.audit.key else None,
            "key_file": str(settings.audit.key_file),
            "max_events": settings.audit.max_events,
            "max_age": settings.audit.max_age,
            "sink": str(settings.audit.sink) if settings.audit.sink else None,
            "required": settings.audit.required,
        },
        "server": {
            "resource": settings.server.resource,
            "authorization_servers": list(settings.server.authorization_servers),
            "tools": dict(sorted(settings.server.tools.items())),
            "tool_costs": dict(sorted(settings.server.tool_costs.items())),
            "default_permission": settings.server.default_permission,
        },
        "rate": {
            "fail_open": settings.rate.fail_open,
            "default_role": settings.rate.default_role,
            "roles": {
                role: {"capacity": lim.capacity, "refill_per_second": lim.refill_per_second}
                for role, lim in sorted(settings.rate.roles.items())
            },
        },
        "sources": dict(settings.sources),
    }


def _path_text(path: Path | None) -> str | None:
    return str(path) if path is not None else None
