"""Roles as operators write them in config, resolved through inheritance into a `RoleTable`.

    [roles.user]
    inherits = ["guest"]
    permissions = ["files:read"]

    table = build_roles(parse_role_tables(document["roles"]))
    explain(table, "premium")      # each effective permission and the roles it comes through

Defining any `[roles.*]` replaces the default set entirely: no role grants anything that is
not written in the file (`mcpsec config init` writes the defaults out to edit). Cycles,
unknown parents and malformed permissions are configuration errors that name the role.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mcpsec.core.errors import ConfigError, InvalidInputError, NotFoundError
from mcpsec.core.rbac import _ROLE, RoleTable, check_permission


@dataclass(frozen=True)
class RoleDefinition:
    name: str
    permissions: tuple[str, ...] = ()
    inherits: tuple[str, ...] = ()


@dataclass(frozen=True)
class Grant:
    permission: str
    via: tuple[str, ...]  # the asked role, then each parent down to the role that grants it


@dataclass(frozen=True)
class RoleView:
    name: str = field(metadata={"essential": True})
    inherits: tuple[str, ...]
    permissions: tuple[str, ...]  # granted directly
    effective: tuple[Grant, ...]


DEFAULT_DEFINITIONS: Mapping[str, RoleDefinition] = {
    "guest": RoleDefinition("guest", ("weather:read",)),
    "user": RoleDefinition("user", ("files:read",), ("guest",)),
    "premium": RoleDefinition("premium", ("weather:write", "files:write"), ("user",)),
    "admin": RoleDefinition("admin", ("*",)),
}


def parse_role_tables(tables: Any, source: str) -> dict[str, RoleDefinition]:
    """`[roles.<name>]` tables from a config file, checked key by key."""
    if not isinstance(tables, Mapping):
        raise ConfigError(f"{source}: [roles] must hold one [roles.<name>] table per role")
    return {name: _definition(name, table, source) for name, table in tables.items()}


def build_roles(definitions: Mapping[str, RoleDefinition]) -> RoleTable:
    """Resolve inheritance; every role ends up with its full effective permission set."""
    grants = {name: _resolve(definitions, name, ()) for name in definitions}
    effective = {name: frozenset(g.permission for g in found) for name, found in grants.items()}
    return RoleTable(effective, definitions=dict(definitions))


def explain(table: RoleTable, name: str) -> RoleView:
    """A role's definition and each effective permission with the path it comes through."""
    definitions = table.definitions or {}
    if name not in definitions:
        raise NotFoundError(f"no role named {name!r}; see `mcpsec roles list`")
    role = definitions[name]
    return RoleView(role.name, role.inherits, role.permissions, _resolve(definitions, name, ()))


def _definition(name: str, table: Any, source: str) -> RoleDefinition:
    where = f"{source}: role {name!r}"
    if not _ROLE.fullmatch(str(name)):
        raise ConfigError(f"{where}: a role name is lowercase letters, digits, - and _")
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a [roles.{name}] table")
    unknown = set(table) - {"permissions", "inherits"}
    if unknown:
        raise ConfigError(f"{where}: unknown setting `{sorted(unknown)[0]}`")
    permissions = _strings(table.get("permissions", []), f"{where}: permissions")
    for permission in permissions:
        try:
            check_permission(permission)
        except InvalidInputError as e:
            raise ConfigError(f"{where}: {e}") from None
    return RoleDefinition(name, permissions, _strings(table.get("inherits", []), where))


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return tuple(dict.fromkeys(value))


def _resolve(
    definitions: Mapping[str, RoleDefinition], name: str, path: tuple[str, ...]
) -> tuple[Grant, ...]:
    """Depth first; the first path that reaches a permission is the one reported."""
    if name in path:
        cycle = " -> ".join((*path[path.index(name) :], name))
        raise ConfigError(f"roles inherit in a circle: {cycle}")
    role = definitions.get(name)
    if role is None:
        raise ConfigError(f"role {path[-1]!r} inherits unknown role {name!r}")
    here = (*path, name)
    found = {p: Grant(p, here) for p in role.permissions}
    for parent in role.inherits:
        for grant in _resolve(definitions, parent, here):
            found.setdefault(grant.permission, grant)
    return tuple(sorted(found.values(), key=lambda g: g.permission))


DEFAULT_ROLES = build_roles(DEFAULT_DEFINITIONS)  # the seed's effective sets, from the table above
