"""The exception tree is the API: one root, families by cause, structured fields on leaves.

    try: ...
    except StoreUnavailableError as e: print(e)   # a full sentence, safe to show
    except MCPSecError as e: print(e.hint)

Messages are full sentences for operators and never contain a secret. They never mention
exit codes: the CLI maps families to codes in one place.
"""

from __future__ import annotations


class MCPSecError(Exception):
    """Root of every error mcpsec raises on purpose; `str(e)` is one line fit to show a user."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class InvalidInputError(MCPSecError):
    """A value given by the caller breaks a documented rule (length, alphabet, range, format)."""

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.field = field


class NotFoundError(MCPSecError):
    """The named thing (a record, a key id, a file) does not exist."""


class ConfigError(MCPSecError):
    """The configuration cannot be read or holds a value that makes no sense."""

    def __init__(self, message: str, *, source: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.source = source


class SecretError(ConfigError):
    """A secret is missing, too weak, or stored where others can read it."""


class StoreError(MCPSecError):
    """The store could not carry out an operation."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached or did not answer in time; nothing can be assumed."""


class StoreReadOnlyError(StoreError):
    """The store answers reads but refuses writes (a replica, or a full disk)."""
