"""Rate-limit policy as operators write it in config, checked against the roles that exist.

    [rate]
    fail_open = true
    [rate.roles.user]
    capacity = 200
    refill_per_second = 5

Defining any `[rate.roles.*]` replaces the built-in limits (guest 50/1, user 200/5,
premium 1000/20, admin 5000/100) entirely, like `[roles.*]` does for roles. A limit for a
role that does not exist, or a capacity or refill out of range, is a configuration error
naming the role.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcpsec.core.errors import ConfigError, InvalidInputError
from mcpsec.core.ratelimit import DEFAULT_LIMITS, Limit, RatePolicy
from mcpsec.core.rbac import RoleTable

_KEYS = frozenset({"capacity", "refill_per_second"})


def parse_rate_tables(tables: Any, source: str) -> dict[str, Limit]:
    if not isinstance(tables, Mapping):
        raise ConfigError(f"{source}: [rate.roles] must hold one [rate.roles.<role>] per role")
    return {str(role): _limit(str(role), table, source) for role, table in tables.items()}


def build_rate_policy(
    limits: Mapping[str, Limit] | None,
    roles: RoleTable,
    *,
    fail_open: bool = True,
    default_role: str | None = None,
    source: str = "config",
) -> RatePolicy:
    chosen = dict(limits) if limits is not None else dict(DEFAULT_LIMITS)
    if limits is not None:
        if not limits:
            raise ConfigError(f"{source}: [rate.roles] defines no limit; remove it for defaults")
        for role in chosen:
            if role not in roles.roles:
                raise ConfigError(
                    f"{source}: [rate.roles.{role}] names a role that does not exist",
                    hint="define it under [roles], or remove its limit",
                )
    default = default_role or (
        "guest" if "guest" in chosen else min(chosen, key=lambda r: chosen[r])
    )
    if default not in chosen:
        raise ConfigError(f"rate.default_role {default!r} has no [rate.roles.{default}] limit")
    return RatePolicy(chosen, default, fail_open)


def _limit(role: str, table: Any, source: str) -> Limit:
    where = f"{source}: [rate.roles.{role}]"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table with capacity and refill_per_second")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown setting `{unknown[0]}`")
    missing = sorted(_KEYS - set(table))
    if missing:
        raise ConfigError(f"{where}: `{missing[0]}` is missing")
    try:
        return Limit.of(table["capacity"], table["refill_per_second"])
    except InvalidInputError as e:
        raise ConfigError(f"{where}: {e}") from None
