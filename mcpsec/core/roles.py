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
    """Resolve inheritance once per role (each role's grants are computed after its
    parents'), so deep or wide hierarchies cost time in proportion to their size."""
    if not definitions:
        raise ConfigError("[roles] defines no role; remove it to use the built-in set")
    resolved = _resolve_all(definitions)
    effective = {name: frozenset(found) for name, found in resolved.items()}
    return RoleTable(effective, definitions=dict(definitions), resolved=resolved)


def explain(table: RoleTable, name: str) -> RoleView:
    """A role's definition and each effective permission with the path it comes through."""
    definitions = table.definitions or {}
    if name not in definitions:
        raise NotFoundError(f"no role named {name!r}; see `mcpsec roles list`")
    role = definitions[name]
    resolved = table.resolved or _resolve_all(definitions)
    return RoleView(role.name, role.inherits, role.permissions, _grants(name, resolved))


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
    return RoleDefinition(
        name, permissions, _strings(table.get("inherits", []), f"{where}: inherits")
    )


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return tuple(dict.fromkeys(value))


# Per role: permission -> (hops, the parent it comes through, or None when granted directly).
# Keeping one hop instead of whole paths keeps a deep hierarchy linear per entry.
Resolved = dict[str, dict[str, tuple[int, str | None]]]


def _resolve_all(definitions: Mapping[str, RoleDefinition]) -> Resolved:
    """Every role's grants, each through the shortest inheritance path.

    Iterative depth-first order (no recursion limit), with the current path kept to detect
    cycles; a role is resolved once, after all the roles it inherits.
    """
    done: Resolved = {}
    for start in sorted(definitions):
        if start in done:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        on_path: list[str] = []
        while stack:
            name, index = stack.pop()
            role = definitions[name]
            if index == 0:
                on_path.append(name)
            if index < len(role.inherits):
                stack.append((name, index + 1))
                parent = role.inherits[index]
                if parent not in definitions:
                    raise ConfigError(f"role {name!r} inherits unknown role {parent!r}")
                if parent in on_path:
                    cycle = " -> ".join((*on_path[on_path.index(parent) :], parent))
                    raise ConfigError(f"roles inherit in a circle: {cycle}")
                if parent not in done:
                    stack.append((parent, 0))
                continue
            on_path.pop()
            done[name] = _combine(role, done)
    return done


def _combine(role: RoleDefinition, done: Resolved) -> dict[str, tuple[int, str | None]]:
    found: dict[str, tuple[int, str | None]] = {p: (0, None) for p in role.permissions}
    for parent in role.inherits:
        for permission, (hops, _) in done[parent].items():
            known = found.get(permission)
            if known is None or hops + 1 < known[0]:
                found[permission] = (hops + 1, parent)
    return found


def _grants(name: str, resolved: Mapping[str, Any]) -> tuple[Grant, ...]:
    """Each permission of `name` with the roles it comes through, read off the hops."""
    grants = []
    for permission in sorted(resolved[name]):
        via = [name]
        parent = resolved[name][permission][1]
        while parent is not None:
            via.append(parent)
            parent = resolved[parent][permission][1]
        grants.append(Grant(permission, tuple(via)))
    return tuple(grants)


DEFAULT_ROLES = build_roles(DEFAULT_DEFINITIONS)  # the seed's effective sets, from the table above
