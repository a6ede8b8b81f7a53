"""The installed command as shell scripts meet it: exit codes, streams, pipes, time bounds."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mcpsec
import pytest


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


def run_shell(script: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run `script` in sh with `mcpsec` meaning this interpreter's `-m mcpsec`."""
    env = {**os.environ, "MCPSEC": f"{sys.executable} -m mcpsec"}
    return subprocess.run(
        ["sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=home,
        check=False,
    )


def test_stdout_closed_is_exit_74_with_one_line(home):
    ran = run_shell("$MCPSEC pkce generate >&-", home)
    assert ran.returncode == 74
    assert ran.stderr == "mcpsec: error: standard output is closed; nothing could be printed\n"


def test_stdout_full_is_exit_74_with_one_line(home):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    ran = run_shell("$MCPSEC doctor --json > /dev/full", home)
    assert ran.returncode == 74
    assert ran.stderr.strip().splitlines() == [
        "mcpsec: error: cannot write to standard output: No space left on device"
    ]


def test_stdin_closed_is_a_usage_error(home):
    ran = run_shell("$MCPSEC pkce challenge - <&-", home)
    assert ran.returncode == 2
    assert "standard input is closed" in ran.stderr and "Traceback" not in ran.stderr


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("redis://localhost:abc/0", 4),
        ("redis://:pa#hunter2@h:1/0", 4),
        ("redis://h:1/0?socket_timeout=abc", 4),
        ("sqlite:///tmp/a%00b", 4),
        ("REDIS://:hunter2@127.0.0.1:1/0", 5),  # a fine URL (schemes ignore case); nobody there
    ],
)
def test_malformed_store_urls_are_config_errors_without_the_password(mcpsec_process, url, code):
    for args in (["doctor"], ["config", "show"]):
        ran = mcpsec_process("--verbose", "--store", url, *args)
        assert ran.exit_code in (0, 4, 5), ran.stderr
        assert "hunter2" not in ran.stdout + ran.stderr
        assert "Traceback" not in ran.stderr
    ran = mcpsec_process("--store", url, "doctor")
    assert ran.exit_code == code


def test_doctor_warns_about_a_store_file_others_can_read(mcpsec_process, home):
    assert mcpsec_process("doctor").exit_code == 0
    db = home / "data" / "mcpsec" / "mcpsec.db"
    db.chmod(0o644)
    ran = mcpsec_process("doctor")
    assert ran.exit_code == 0
    assert any(line.startswith("warn") and "chmod 600" in line for line in ran.stdout.splitlines())
