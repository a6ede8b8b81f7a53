"""What the global options decide, shared by every command through the Typer context.

Settings and the store are opened on first use, so `mcpsec pkce generate` never reads the
config file or imports a store backend.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mcpsec.cli.output import Mode, Output

if TYPE_CHECKING:  # imported when first used: `pkce generate` never loads config or store code
    from mcpsec.core.api_keys import ApiKeys
    from mcpsec.core.audit import AuditLog
    from mcpsec.core.config import Settings
    from mcpsec.core.ratelimit import RateLimiter
    from mcpsec.core.signing_keys import Keyring
    from mcpsec.core.tokens import Tokens
    from mcpsec.store import Store


@dataclass
class CliState:
    config_path: Path | None = None
    store_url: str | None = None
    json: bool = False
    quiet: bool = False
    no_color: bool = False
    verbose: bool = False
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    _settings: Settings | None = None
    _store: Store | None = None
    _audit: AuditLog | None = None

    @property
    def flags(self) -> dict[str, str]:
        return {"store.url": self.store_url} if self.store_url else {}

    def settings(self) -> Settings:
        if self._settings is None:
            from mcpsec.core.config import load_settings

            self._settings = load_settings(
                self.environ, config_path=self.config_path, flags=self.flags
            )
        return self._settings

    def store(self) -> Store:
        if self._store is None:
            self._store = self.settings().store.open()
        return self._store

    def api_keys(self) -> ApiKeys:
        from mcpsec.core.api_keys import ApiKeys

        return ApiKeys.from_settings(self.settings(), self.store, audit=self.audit_log())

    def audit_log(self) -> AuditLog:
        """The audit log every command records its changes and verdicts in, as this OS user."""
        if self._audit is None:
            from mcpsec.core.audit import AuditLog

            self._audit = AuditLog.from_settings(self.settings(), self.store)
        return self._audit

    def tokens(self) -> Tokens:
        from mcpsec.core.tokens import Tokens

        return Tokens.from_settings(self.settings(), self.store, audit=self.audit_log())

    def rate_limiter(self) -> RateLimiter:
        from mcpsec.core.ratelimit import RateLimiter

        return RateLimiter(self.store, self.settings().rate, audit=self.audit_log())

    def keyring(self) -> Keyring:
        from mcpsec.core.signing_keys import Keyring

        folder = self.settings().tokens.keys_dir
        assert folder is not None  # settings always resolve it
        return Keyring(folder)

    def close(self) -> None:
        """Report audit events that could not be recorded (never silently), then close."""
        if self._audit is not None:
            for failure in self._audit.failures:
                self.output().warn(f"the audit log could not record {failure}")
        if self._store is not None:
            self._store.close()
            self._store = None

    def output(self, *, json: bool = False, quiet: bool = False) -> Output:
        """Per-command `--json`/`--quiet` add to the global ones; JSON wins over quiet."""
        mode = Mode.HUMAN
        if quiet or self.quiet:
            mode = Mode.QUIET
        if json or self.json:
            mode = Mode.JSON
        color = not (self.no_color or self.environ.get("NO_COLOR"))
        return Output(mode, color=color)


def state_of(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj
