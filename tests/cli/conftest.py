"""Run the CLI in-process (Typer's runner) or as a real process, always in a private HOME."""

import os
from functools import partial

import pytest

from tests.support.cli import Cli, private_env


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Every XDG folder in tmp_path, and no MCPSEC_* from the host, in this process's own
    environment too: tests that start a process themselves see the same."""
    for name in list(os.environ):
        if name.startswith("MCPSEC_"):
            monkeypatch.delenv(name)
    for name, value in private_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    return tmp_path


@pytest.fixture
def mcpsec(home):
    """mcpsec(*args, input=None, env=None) through Typer's CliRunner."""
    return Cli(home)


@pytest.fixture
def mcpsec_process(mcpsec):
    """mcpsec(*args) as a real `python -m mcpsec` process, as a shell script would run it."""
    return partial(mcpsec.process, timeout=30)
