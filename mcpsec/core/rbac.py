"""Roles and `resource:action` permissions: what a role grants, and whether a grant covers a need.

    table = DEFAULT_ROLES
    table.effective(["user"], extra=["metrics:view"])     # frozenset of granted permissions
    allows(table.effective(["premium"]), "files:write")   # True
    allows({"files:*"}, "files:delete")                   # True: wildcards

The default table is the seed's guest/user/premium/admin set. Roles from config, with
inheritance, arrive with the tokens-and-roles work; everything that checks a permission
already goes through `allows`, so that change lands in one place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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
    roles: Mapping[str, frozenset[str]]

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


DEFAULT_ROLES = RoleTable(
    {
        "guest": frozenset({"weather:read"}),
        "user": frozenset({"weather:read", "files:read"}),
        "premium": frozenset({"weather:read", "weather:write", "files:read", "files:write"}),
        "admin": frozenset({"*"}),
    }
)


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
