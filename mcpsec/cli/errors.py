"""The one table that turns mcpsec's exception families into exit codes.

Core errors never mention exit codes; this module is the only place that knows them, and
the man page is generated from `EXIT_CODES`, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Final

from mcpsec.core.errors import (
    ConfigError,
    InvalidInputError,
    MCPSecError,
    NotFoundError,
    StoreError,
)

OK: Final = 0
NEGATIVE: Final = 1
USAGE: Final = 2
NOT_FOUND: Final = 3
CONFIG: Final = 4
STORE: Final = 5
INTERNAL: Final = 70  # EX_SOFTWARE: a bug in mcpsec
OUTPUT: Final = 74  # EX_IOERR: the result could not be written
INTERRUPTED: Final = 130

EXIT_CODES: Final[tuple[tuple[int, str], ...]] = (
    (OK, "success"),
    (NEGATIVE, "a negative verdict: invalid, expired, revoked, denied, rate limited, no match"),
    (USAGE, "usage error: an unknown option, or a value that breaks a rule"),
    (NOT_FOUND, "the named thing does not exist"),
    (CONFIG, "configuration or secret problem"),
    (STORE, "store unavailable, read-only or failing"),
    (INTERNAL, "internal error (a bug in mcpsec; please report it)"),
    (OUTPUT, "the output could not be written (standard output closed or full)"),
    (INTERRUPTED, "interrupted (Ctrl-C)"),
)


class OutputError(MCPSecError):
    """The result could not be written to standard output."""


# Most specific family first: SecretError is a ConfigError, StoreReadOnlyError a StoreError.
_FAMILIES: Final[tuple[tuple[type[MCPSecError], int], ...]] = (
    (OutputError, OUTPUT),
    (InvalidInputError, USAGE),
    (NotFoundError, NOT_FOUND),
    (ConfigError, CONFIG),
    (StoreError, STORE),
)


def exit_code_for(error: MCPSecError) -> int:
    for family, code in _FAMILIES:
        if isinstance(error, family):
            return code
    return NEGATIVE
