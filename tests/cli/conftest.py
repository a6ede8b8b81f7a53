"""Run the CLI in-process (Typer's runner) or as a real process, always in a private HOME."""

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
from mcpsec.cli.app import app
from typer.testing import CliRunner


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Point every XDG location into tmp_path and clear MCPSEC_* so tests never see the host's."""
    for name in list(os.environ):
        if name.startswith("MCPSEC_"):
            monkeypatch.delenv(name)
    env = {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "NO_COLOR": "1",
        "COLUMNS": "100",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return tmp_path


@pytest.fixture
def mcpsec(home):
    """mcpsec(*args, input=None, env=None) through Typer's CliRunner."""
    runner = CliRunner()

    def run(*args, input=None, env=None):
        result = runner.invoke(app, list(args), input=input, env=env, catch_exceptions=False)
        return Ran(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def mcpsec_process(home):
    """mcpsec(*args) as a real `python -m mcpsec` process, as a shell script would run it."""

    def run(*args, input=None, env=None, timeout=30):
        completed = subprocess.run(  # noqa: PLW1510 - the exit code is the result
            [sys.executable, "-m", "mcpsec", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
        return Ran(completed.returncode, completed.stdout, completed.stderr)

    return run
