"""The CLI in-process, in a private HOME, for tests outside tests/cli (which has fixtures).

    ran = run_cli(home, "--store", url, "doctor", env={"MCPSEC_STORE_PASSWORD": "pw"})
    ran.exit_code, ran.stdout, ran.stderr

The host's MCPSEC_* variables are removed for the call, so a developer's own settings never
leak into a test; `env` adds the test's own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mcpsec.cli.app import app
from typer.testing import CliRunner


@dataclass(frozen=True)
class Ran:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(
    home: Path, *args: str, env: Mapping[str, str] | None = None, input: str | None = None
) -> Ran:
    environ: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MCPSEC_")}
    environ |= {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "cfg"),
        "XDG_DATA_HOME": str(home / "data"),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    environ |= dict(env or {})
    result = CliRunner().invoke(app, list(args), env=environ, input=input, catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)
