"""The installed command as shell scripts meet it: exit codes, streams, pipes, time bounds."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mcpsec


def test_version(mcpsec_process):
    ran = mcpsec_process("--version")
    assert (ran.exit_code, ran.stdout.strip()) == (0, f"mcpsec {mcpsec.__version__}")


def test_console_script_is_installed(home):
    beside = Path(sys.executable).with_name("mcpsec")
    script = str(beside) if beside.exists() else shutil.which("mcpsec")
    assert script, "the mcpsec console script is not installed"
    ran = subprocess.run(
        [str(script), "pkce", "generate", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ran.returncode == 0
    assert json.loads(ran.stdout)["code_challenge_method"] == "S256"


def test_dead_redis_fails_fast_with_exit_5(mcpsec_process):
    started = time.monotonic()
    ran = mcpsec_process("--store", "redis://:hunter2@127.0.0.1:1/0", "doctor")
    assert ran.exit_code == 5
    assert time.monotonic() - started < 25  # a hang would hit the subprocess timeout instead
    assert "hunter2" not in ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr


def test_blackholed_redis_fails_within_the_timeout(mcpsec_process):
    """A store that accepts nothing (a non-routable address) must not hang the command."""
    ran = mcpsec_process(
        "--store",
        "redis://10.255.255.1:6379/0",
        "doctor",
        env={"MCPSEC_STORE_TIMEOUT": "500ms"},
        timeout=20,
    )
    assert ran.exit_code == 5
    assert "Traceback" not in ran.stderr


def test_closed_pipe_is_not_an_error(home):
    """`mcpsec … | head -0`: the reader is gone before mcpsec writes; no traceback, no noise."""
    child = subprocess.Popen(
        [sys.executable, "-m", "mcpsec", "pkce", "generate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # long before the interpreter has started and written anything
    stderr = child.stderr.read().decode()
    child.stderr.close()
    assert child.wait(timeout=30) == 0
    assert stderr == ""


def test_internal_error_is_one_line_exit_70(home, tmp_path):
    """An unexpected exception (a bug) is reported in one line; --verbose shows the traceback."""
    code = (
        "import sys, mcpsec.core.pkce as p\n"
        "def boom(*a, **k): raise RuntimeError('secret-value-123')\n"
        "p.generate = boom\n"
        "from mcpsec.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code, "pkce", "generate"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ran.returncode == 70
    assert ran.stderr.strip().splitlines() == [
        "mcpsec: error: internal error: RuntimeError (this is a bug; run with --verbose "
        "for details and please report it)"
    ]
    assert "secret-value-123" not in ran.stderr
    verbose = subprocess.run(
        [sys.executable, "-c", code, "--verbose", "pkce", "generate"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "Traceback" in verbose.stderr and verbose.returncode == 70
