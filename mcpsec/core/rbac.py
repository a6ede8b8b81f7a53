"""Roles and `resource:action` permissions: what a role grants, and whether a grant covers a need.

    table = DEFAULT_ROLES                                  # from mcpsec.core.roles
    table.effective(["user"], extra=["metrics:view"])     # frozenset of granted permissions
    allows(table.effective(["premium"]), "files:write")   # True
    allows({"files:*"}, "files:delete")                   # True: wildcards

This module holds the matching rules; `mcpsec.core.roles` builds tables from config (with
inheritance) and holds the seed's guest/user/premium/admin defaults.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mcpsec.core.errors import InvalidInputError

_PART = r"(?:[a-z][a-z0-9_.-]{0,62}|\*)"
_PERMISSION = re.compile(rf"\*|{_PART}:{_PART}")
_ROLE = re.compile(r"[a-z][a-z0-9_-]{0,31}")

SEED_PERMISSIONS = (
    "weather:read",
    "weather:write",
    "files:read",
    "files:write",
    "files:delete",
    "admin:users",
    "metrics:view",
)


@dataclass(frozen=True)
class RoleTable:
    roles: Mapping[str, frozenset[str]]  # role -> effective permissions
    definitions: Mapping[str, Any] | None = None  # role -> RoleDefinition, for explaining
    resolved: Mapping[str, Any] | None = None  # role -> its grants with their paths

    def check_role(self, role: str) -> str:
        if role not in self.roles:
            known = ", ".join(sorted(self.roles))
            raise InvalidInputError(f"unknown role {role!r}; known roles: {known}", field="role")
        return role

    def accepting(self, needed: str) -> tuple[str, ...]:
        """Every grant that satisfies `needed`: the permissions that cover it (`files:read`,
        `files:*`, `*:read`, `*`, `*:*`) and `@role` for each role that grants it.

        The store checks a key's grants against this list in the same atomic step that
        counts the use, so only a verify that passes is counted."""
        resource, _, action = check_permission(needed).partition(":")
        covering = {needed, f"{resource}:*", f"*:{action}", "*", "*:*"}
        roles = {f"@{role}" for role, granted in self.roles.items() if allows(granted, needed)}
        return tuple(sorted(covering | roles))

    def effective(self, roles: Iterable[str], extra: Iterable[str] = ()) -> frozenset[str]:
        """Every permission the roles grant, plus the extra ones granted directly."""
        granted: set[str] = set(extra)
        for role in roles:
            granted |= self.roles.get(role, frozenset())
        return frozenset(granted)


def check_permission(permission: str) -> str:
    """`resource:action`, where either part may be `*`, or `*` alone for everything."""
    if not _PERMISSION.fullmatch(permission):
        raise InvalidInputError(
            f"permission {permission!r} is not resource:action (like files:read or files:*)",
            field="permission",
        )
    return permission


def allows(granted: Iterable[str], needed: str) -> bool:
    """True when one grant covers `needed`: equal, `resource:*`, `*:action` or `*`."""
    resource, _, action = needed.partition(":")
    for grant in granted:
        if grant in ("*", needed):
            return True
        g_resource, _, g_action = grant.partition(":")
        if g_resource in ("*", resource) and g_action in ("*", action):
            return True
    return False
