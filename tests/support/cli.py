"""The `mcpsec` command for tests, in a private HOME: in-process through Typer's runner (fast,
the same error table as the installed command), or as a real `python -m mcpsec` process.

    cli = Cli(tmp_path, MCPSEC_STORE_TIMEOUT="500ms")    # or Cli.on_store(tmp_path, url)
    ran = cli("keys", "list", env={"MCPSEC_STORE_PASSWORD": "pw"})    # in-process
    ran = cli.process("keys", "verify", "-", input=key)   # as a shell script or runbook runs it
    key = cli.document("keys", "create", "--name", "bot")["api_key"]  # --json; must exit 0
    assert_store_failure(ran, "did not answer in time")   # exit 5, one line, no traceback
    run_cli(tmp_path, "doctor")                           # Cli(tmp_path)("doctor")

No MCPSEC_* variable of this process reaches the command: what it sees is the private folders,
the Cli's settings and the call's `env`, so a developer's own settings never leak into a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcpsec.cli.app import app
from typer.testing import CliRunner

STORE_EXIT = 5  # DESIGN: 5 store unavailable (read-only or failing too)
PROCESS_TIMEOUT = 60.0  # a hung command fails the test here instead of hanging the run
JWT_SECRET = "fault-tests-jwt-secret-" + "j" * 32
AUDIT_KEY = "fault-tests-audit-key-" + "a" * 32


@dataclass(frozen=True)
class Ran:
    exit_code: int
    stdout: str
    stderr: str
    seconds: float  # wall time, start of the process (or call) to its exit

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def private_env(home: Path) -> dict[str, str]:
    """HOME and every XDG folder in `home`, and plain output of a fixed width."""
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "cfg"),
        "XDG_DATA_HOME": str(home / "data"),
        "NO_COLOR": "1",
        "COLUMNS": "100",
    }


class Cli:
    """mcpsec with one private environment; `env` holds what it adds to this process's."""

    def __init__(self, home: Path, **settings: str) -> None:
        """`settings` are further variables, like MCPSEC_RATE_FAIL_OPEN="false"."""
        self.home = home
        self.env = private_env(home) | settings

    @classmethod
    def on_store(cls, home: Path, url: str, *, timeout: str = "1s", **settings: str) -> Cli:
        """Pointed at one store, with the secrets that tokens and audit events need in the
        environment (never on argv)."""
        secrets = {"MCPSEC_JWT_SECRET": JWT_SECRET, "MCPSEC_AUDIT_KEY": AUDIT_KEY}
        store = {"MCPSEC_STORE_URL": url, "MCPSEC_STORE_TIMEOUT": timeout}
        return cls(home, **secrets, **store, **settings)

    def environment(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """All that a real process started by the test gets (an MCP server's too)."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("MCPSEC_")}
        return inherited | self.env | dict(env or {})

    def __call__(
        self, *args: str, input: str | None = None, env: Mapping[str, str] | None = None
    ) -> Ran:
        """In-process, through Typer's runner: the same error table as the installed command."""
        hidden: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MCPSEC_")}
        started = time.monotonic()
        result = CliRunner().invoke(
            app,
            list(args),
            input=input,
            env=hidden | self.env | dict(env or {}),
            catch_exceptions=False,
        )
        return Ran(result.exit_code, result.stdout, result.stderr, time.monotonic() - started)

    def process(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = PROCESS_TIMEOUT,
    ) -> Ran:
        """As a real `python -m mcpsec` process, in `home`, the way a shell script meets it."""
        started = time.monotonic()
        completed = subprocess.run(
            [sys.executable, "-m", "mcpsec", *args],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.environment(env),
            cwd=self.home,
            check=False,
        )
        seconds = time.monotonic() - started
        return Ran(completed.returncode, completed.stdout, completed.stderr, seconds)

    def document(
        self, *args: str, input: str | None = None, env: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """`mcpsec ARGS --json`, in-process, which must succeed: its JSON document."""
        ran = self(*args, "--json", input=input, env=env)
        assert ran.exit_code == 0, f"mcpsec {' '.join(args)}: {ran}"
        document = json.loads(ran.stdout)
        assert isinstance(document, dict), document
        return document


def run_cli(
    home: Path, *args: str, env: Mapping[str, str] | None = None, input: str | None = None
) -> Ran:
    """One in-process call in a private `home`: `Cli(home)(*args, ...)`."""
    return Cli(home)(*args, env=env, input=input)


def assert_error_line(ran: Ran, exit_code: int, *phrases: str) -> str:
    """The exit code, nothing on stdout, and exactly one line on stderr, an error holding
    every phrase and no traceback (DESIGN: no traceback reaches a user). Returns that line."""
    lines = ran.stderr.splitlines()
    assert (ran.exit_code, ran.stdout, len(lines)) == (exit_code, "", 1), ran
    line = lines[0]
    assert line.startswith("mcpsec: error: "), ran
    assert "Traceback" not in line, ran
    for phrase in phrases:
        assert phrase in line, f"{phrase!r} not in {line!r}"
    return line


def assert_store_failure(ran: Ran, *phrases: str) -> str:
    """`assert_error_line` with exit 5: the store unavailable, read-only or failing."""
    return assert_error_line(ran, STORE_EXIT, *phrases)
