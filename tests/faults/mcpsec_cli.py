"""`mcpsec` against a store that a fault test breaks, as an ops runbook would run it.

    cli = Cli(tmp_path, server.url, timeout="500ms")
    key = cli.document("keys", "create", "--name", "bot")["api_key"]
    ran = cli.process("keys", "verify", "-", input=key)    # a real process: exit code, stderr
    ran = cli("keys", "list", store=replica.url)          # in-process (Typer's runner): faster
    assert_store_failure(ran, "did not answer in time")    # exit 5, one line, no traceback

Each Cli has its own HOME and XDG folders, the secrets in the environment (never on argv),
and none of the host's MCPSEC_* settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcpsec.cli.app import app
from typer.testing import CliRunner

STORE_EXIT = 5  # DESIGN: 5 store unavailable (read-only or failing too)
PROCESS_TIMEOUT = 60.0  # a hung command fails the test here instead of hanging the run


@dataclass(frozen=True)
class Ran:
    exit_code: int
    stdout: str
    stderr: str
    seconds: float  # wall time, start of the process (or call) to its exit


class Cli:
    """mcpsec with one private environment, pointed at one store (or another per call)."""

    def __init__(self, home: Path, store_url: str, *, timeout: str = "1s", **settings: str) -> None:
        """`settings` are further MCPSEC_* variables, like MCPSEC_RATE_FAIL_OPEN="false"."""
        self.home = home
        self.env = {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "cfg"),
            "XDG_DATA_HOME": str(home / "data"),
            "NO_COLOR": "1",
            "COLUMNS": "200",
            "MCPSEC_STORE_URL": store_url,
            "MCPSEC_STORE_TIMEOUT": timeout,
            "MCPSEC_JWT_SECRET": "fault-tests-jwt-secret-" + "j" * 32,
            "MCPSEC_AUDIT_KEY": "fault-tests-audit-key-" + "a" * 32,
            **settings,
        }

    def __call__(self, *args: str, input: str | None = None, store: str | None = None) -> Ran:
        """In-process, through Typer's runner: the same error table as the installed command."""
        environ: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MCPSEC_")}
        environ |= self._env(store)
        started = time.monotonic()
        result = CliRunner().invoke(
            app, list(args), input=input, env=environ, catch_exceptions=False
        )
        return Ran(result.exit_code, result.stdout, result.stderr, time.monotonic() - started)

    def process(self, *args: str, input: str | None = None, store: str | None = None) -> Ran:
        """As a real `python -m mcpsec` process, the way a shell script meets it."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("MCPSEC_")}
        started = time.monotonic()
        completed = subprocess.run(
            [sys.executable, "-m", "mcpsec", *args],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
            env={**base, **self._env(store)},
            cwd=self.home,
            check=False,
        )
        seconds = time.monotonic() - started
        return Ran(completed.returncode, completed.stdout, completed.stderr, seconds)

    def document(self, *args: str, input: str | None = None) -> dict[str, Any]:
        """`mcpsec ARGS --json`, in-process, which must succeed: its JSON document."""
        ran = self(*args, "--json", input=input)
        assert ran.exit_code == 0, f"mcpsec {' '.join(args)}: {ran}"
        document = json.loads(ran.stdout)
        assert isinstance(document, dict), document
        return document

    def _env(self, store: str | None) -> dict[str, str]:
        return {**self.env, "MCPSEC_STORE_URL": store} if store else dict(self.env)


def assert_store_failure(ran: Ran, *phrases: str) -> str:
    """Exit 5, nothing on stdout, and exactly one line on stderr, an error holding every
    phrase and no traceback (DESIGN: no traceback reaches a user). Returns that line."""
    lines = ran.stderr.splitlines()
    assert (ran.exit_code, ran.stdout, len(lines)) == (STORE_EXIT, "", 1), ran
    line = lines[0]
    assert line.startswith("mcpsec: error: "), ran
    assert "Traceback" not in line, ran
    for phrase in phrases:
        assert phrase in line, f"{phrase!r} not in {line!r}"
    return line
