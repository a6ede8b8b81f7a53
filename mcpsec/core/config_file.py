"""`config init`: a commented default config file, and the secret file it names.

    result = init_config(os.environ, force=False)
    result.config_path, result.secret_created

The secret is created before the config that names it, and an existing secret is never
replaced (not even with --force): overwriting it would invalidate every token in use.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcpsec.core.config import default_store_url, resolve_config_path
from mcpsec.core.errors import ConfigError
from mcpsec.core.ratelimit import DEFAULT_LIMITS
from mcpsec.core.roles import DEFAULT_DEFINITIONS
from mcpsec.core.secret_files import new_secret_value, read_secret_file, write_private_file

SECRET_FILE_NAME = "jwt.secret"  # noqa: S105 - a file name, not a secret


@dataclass(frozen=True)
class InitResult:
    config_path: Path = field(metadata={"essential": True})
    overwritten: bool
    secret_file: Path
    secret_created: bool


def init_config(
    environ: Mapping[str, str], *, config_path: Path | None = None, force: bool = False
) -> InitResult:
    path = resolve_config_path(environ, config_path)
    existed = path.exists()
    if existed and not force:
        raise ConfigError(
            f"config file {path} already exists",
            hint="pass --force to replace it (its secret files are kept)",
        )
    if path.is_dir():
        raise ConfigError(f"config path {path} is a folder", hint="name a file, e.g. config.toml")
    secret_path = path.parent / SECRET_FILE_NAME
    text = render_default_config(default_store_url(environ))
    try:
        created = _ensure_secret(secret_path)
        try:
            write_private_file(path, text.encode(), overwrite=True)
        except BaseException:
            if created:  # leave nothing half-done: no secret without the config naming it
                secret_path.unlink(missing_ok=True)
            raise
    except OSError as e:
        raise ConfigError(
            f"cannot write {e.filename or path}: {e.strerror}", source=str(path)
        ) from e
    return InitResult(path, existed, secret_path, created)


def render_default_config(store_url: str) -> str:
    """The default config as TOML written by tomli-w, each section preceded by its comments."""
    import tomli_w

    sections: list[tuple[str, dict[str, Any]]] = [
        (STORE_COMMENT, {"store": {"url": store_url, "prefix": "mcpsec:", "timeout": "2s"}}),
        (
            TOKENS_COMMENT,
            {
                "tokens": {
                    "secret_file": SECRET_FILE_NAME,
                    "issuer": "mcpsec",
                    "access_ttl": "30m",
                    "refresh_ttl": "7d",
                    "algorithms": "EdDSA,ES256,RS256,HS256",
                    "leeway": "0s",
                    "reuse_leeway": "2s",
                }
            },
        ),
        (KEYS_COMMENT, {"keys": {"prefix": "mcp", "default_ttl": "90d"}}),
        (ROLES_COMMENT, {"roles": _default_roles()}),
        (
            AUDIT_COMMENT,
            {"audit": {"key_file": "audit.key", "max_events": 1_000_000, "required": True}},
        ),
        (
            RATE_COMMENT,
            {"rate": {"fail_open": True, "default_role": "guest", "roles": _default_rates()}},
        ),
    ]
    header = HEADER.format(date=time.strftime("%Y-%m-%d"))
    body = "\n".join(comment + tomli_w.dumps(table) for comment, table in sections)
    return header + "\n" + body + "\n" + SERVER_COMMENT


def _default_roles() -> dict[str, dict[str, list[str]]]:
    tables: dict[str, dict[str, list[str]]] = {}
    for name, role in DEFAULT_DEFINITIONS.items():
        tables[name] = {"permissions": list(role.permissions)}
        if role.inherits:
            tables[name]["inherits"] = list(role.inherits)
    return tables


def _default_rates() -> dict[str, dict[str, float]]:
    return {
        role: {"capacity": limit.capacity, "refill_per_second": limit.refill_per_second}
        for role, limit in DEFAULT_LIMITS.items()
    }


def _ensure_secret(path: Path) -> bool:
    """Create the secret, or check that an existing one is safe to keep (ours, private)."""
    if path.exists() or path.is_symlink():
        read_secret_file(path)
        return False
    write_private_file(path, (new_secret_value() + "\n").encode())
    return True


HEADER = """\
# mcpsec configuration, written by `mcpsec config init` on {date}.
# Precedence: command-line flags > MCPSEC_* environment variables > this file > defaults.
# Durations are written like 30s, 15m, 24h, 7d. Secrets never go in this file.
"""

STORE_COMMENT = """\
# Where keys, revocations, rate buckets and the audit log live (MCPSEC_STORE_URL).
#   sqlite:///absolute/path/mcpsec.db                 embedded, the default
#   redis://[user[:password]@]host:6379/0             Redis; rediss:// for TLS; unix:///path
#   redis+sentinel://host:26379,host:26380/service    Redis behind Sentinel (?db=N)
#   redis+cluster://host:7000,host:7001               Redis Cluster
# Keep the password out of the URL: MCPSEC_STORE_PASSWORD, or password_file (0600), with
# username for the ACL user. TLS (rediss://): tls_ca_file, tls_cert_file and tls_key_file
# (PEM, relative to this file), tls_check_hostname (default true).
# prefix: the start of every Redis key (MCPSEC_STORE_PREFIX).
# timeout: how long to wait for the store before failing (MCPSEC_STORE_TIMEOUT).
# wait_replicas: Redis replicas that must acknowledge each change (MCPSEC_STORE_WAIT_REPLICAS).
"""

TOKENS_COMMENT = """\
# Tokens (`mcpsec token ...`). secret_file: the HS256 signing secret, in a file only you can
# read (0600), relative to this file; MCPSEC_JWT_SECRET or MCPSEC_JWT_SECRET_FILE override it.
# A keyring (`mcpsec signing-key generate`, in keys_dir) signs instead once it has a key.
# issuer: the `iss` minted and the only one accepted. audience: the MCP server's resource
# URI, minted as `aud` and required by verify; set it, e.g. audience = "https://mcp.example".
# access_ttl: default access token lifetime. refresh_ttl: how long a refresh family lives.
# algorithms: those verification accepts. leeway: clock skew forgiven (at most 5m).
# reuse_leeway: how soon a spent refresh token may come again without counting as reuse.
"""

KEYS_COMMENT = """\
# API keys (`mcpsec keys ...`). prefix: the start of every new key, so secret scanners can
# spot leaked ones (MCPSEC_KEY_PREFIX). default_ttl: the lifetime of a key created without
# --ttl, or "never" (MCPSEC_KEY_DEFAULT_TTL).
"""

ROLES_COMMENT = """\
# Roles and the resource:action permissions they grant (`files:*` and `*` are wildcards); a
# role gets everything its `inherits` roles have. These [roles.*] tables replace the built-in
# set entirely, so a role deleted here no longer exists. `mcpsec roles show ROLE` explains.
"""

RATE_COMMENT = """\
# Rate limits: a token bucket per identity. capacity is the burst, refill_per_second the
# sustained rate; a principal with several roles gets the most generous of them, one with
# none of these roles gets default_role's. These [rate.roles.*] tables replace the built-in
# limits entirely. fail_open: what a decision says when the store cannot be reached (true:
# allow, and say so). `mcpsec rate override set` gives one identity its own limit.
"""

AUDIT_COMMENT = """\
# The audit log (`mcpsec audit ...`). key_file: the key that chains the events' MACs (0600,
# created on first use; MCPSEC_AUDIT_KEY overrides it). max_events / max_age (like "90d"):
# retention. sink: a file that also gets every event as a JSON line, for a SIEM.
# required: when true, a change that cannot be audited is not made.
"""

SERVER_COMMENT = """\
# An MCP server guarded by mcpsec (`pip install 'mcpsec[server]'`, see mcpsec.server).
# resource: the server's resource URI, the audience its tokens must carry (default:
# tokens.audience). authorization_servers: for its RFC 9728 metadata. [server.tools]: the
# permission each tool needs; [server.tool_costs]: rate-limit tokens a call costs (default 1).
# default_permission: what a tool without its own rule needs (unset: nothing).
# [server]
# resource = "https://mcp.example.com/mcp"
# authorization_servers = "https://auth.example.com"
# default_permission = "tools:call"
# [server.tools]
# write_file = "files:write"
# [server.tool_costs]
# write_file = 5
"""
