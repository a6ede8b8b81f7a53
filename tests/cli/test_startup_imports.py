"""Start-up cost is a feature: quick commands must not import the heavy packages.

Each command runs as a real process under `python -X importtime`, whose report on stderr
names every module the process imported, so a module-level `import redis` anywhere on the
path of `mcpsec --help` or `mcpsec pkce generate` fails here (DESIGN.md, Layers).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

HEAVY = frozenset({"redis", "jwt", "cryptography", "sqlite3", "fakeredis"})
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 Appendix B
TIMEOUT = 60


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    modules: frozenset[str]  # top-level names: `redis.client` counts as `redis`

    def explain(self) -> str:
        return f"exit {self.returncode}\nstdout:\n{self.stdout}\nstderr (no importtime):\n" + (
            "\n".join(line for line in self.stderr.splitlines() if not _is_report(line))
        )


def imported_modules(importtime_report: str) -> frozenset[str]:
    """Top-level packages named in a `-X importtime` report.

    Lines read `import time:  self [us] | cumulative | <indent>package.module`; the
    indent shows nesting. The header line names no module and is skipped.
    """
    names: set[str] = set()
    for line in importtime_report.splitlines():
        if not _is_report(line):
            continue
        name = line.rsplit("|", 1)[-1].strip()
        if name and name != "imported package":
            names.add(name.split(".", 1)[0])
    return frozenset(names)


def _is_report(line: str) -> bool:
    return line.startswith("import time:") and line.count("|") == 2


def run_mcpsec(home: Path, *args: str, stdin: str = "") -> Run:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mcpsec", *args],
        input=stdin,
        capture_output=True,  # stdout is a pipe, as in `mcpsec … | jq`
        text=True,
        env=isolated_env(home),
        cwd=home,
        timeout=TIMEOUT,
        check=False,
    )
    modules = imported_modules(result.stderr)
    return Run(result.returncode, result.stdout, result.stderr, modules)


def isolated_env(home: Path) -> dict[str, str]:
    """The caller's environment minus anything that could point mcpsec at a real config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCPSEC_", "XDG_"))}
    env.pop("PYTHONPROFILEIMPORTTIME", None)  # -X importtime is asked for explicitly
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_STATE_HOME=str(home / "state"),
        NO_COLOR="1",
        COLUMNS="80",
    )
    return env


COMMANDS = [
    pytest.param(["--help"], "", id="help"),
    pytest.param(["--version"], "", id="version"),
    pytest.param(["pkce", "generate"], "", id="pkce-generate"),
    pytest.param(["pkce", "generate", "--json"], "", id="pkce-generate-json"),
    pytest.param(["pkce", "challenge", "-"], VERIFIER + "\n", id="pkce-challenge-stdin"),
    pytest.param(["config", "path"], "", id="config-path"),
]


@pytest.mark.parametrize(("args", "stdin"), COMMANDS)
def test_quick_commands_import_no_heavy_package(
    tmp_path: Path, args: list[str], stdin: str
) -> None:
    run = run_mcpsec(tmp_path, *args, stdin=stdin)

    assert run.returncode == 0, run.explain()
    assert "mcpsec" in run.modules, "the importtime report was not parsed"
    assert sorted(run.modules & HEAVY) == [], run.explain()


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["pkce", "generate"], id="pkce-generate"),
        pytest.param(["pkce", "generate", "--json"], id="pkce-generate-json"),
    ],
)
def test_piped_pkce_generate_does_not_import_rich_or_pydantic(
    tmp_path: Path, args: list[str]
) -> None:
    """Plain lines on a pipe must not pay for Rich (it is only for tables on a terminal), nor
    for pydantic, which Typer would load to parse options (see mcpsec/cli/fast_params.py)."""
    run = run_mcpsec(tmp_path, *args)

    assert run.returncode == 0, run.explain()
    assert "rich" not in run.modules, run.explain()
    assert "pydantic" not in run.modules, run.explain()


def test_pkce_challenge_answers_the_rfc_vector(tmp_path: Path) -> None:
    """The stdin case above really computed something (RFC 7636 Appendix B)."""
    run = run_mcpsec(tmp_path, "pkce", "challenge", "-", stdin=VERIFIER + "\n")

    assert run.stdout.strip() == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", run.explain()


def test_detection_sees_sqlite3_when_doctor_opens_the_default_store(tmp_path: Path) -> None:
    """Positive control: the parsing is not vacuous; a command that opens SQLite shows it."""
    run = run_mcpsec(tmp_path, "doctor")

    assert "sqlite3" in run.modules, run.explain()
    assert (tmp_path / "data" / "mcpsec" / "mcpsec.db").exists(), run.explain()


def test_parser_reads_nested_names_and_skips_the_header() -> None:
    report = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       123 |        456 |     redis.client",
            "import time:        10 |         10 | jwt",
            "some warning a command printed",
        ]
    )

    assert imported_modules(report) == {"redis", "jwt"}
