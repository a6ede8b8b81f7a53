"""The committed completions and man page are what scripts/generate_docs.py makes of today's CLI,
and what it makes is valid: the man page covers every command, exit code and variable, and the
completion scripts parse and complete."""

import difflib
import enum
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
import typer
import typer.main
from mcpsec.cli.app import app
from mcpsec.cli.errors import EXIT_CODES
from mcpsec.core.config import CONFIG_ENV, ENV_VARS

REPO = Path(__file__).resolve().parents[2]
REGENERATE = "run `make docs` (or `python scripts/generate_docs.py`) and commit the result"

# The generator is a package in scripts/, which is no package itself.
if str(REPO / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO / "scripts"))

import docgen  # noqa: E402


def command_paths(command=None, path=("mcpsec",)):
    """Every command path of the live app, groups included, walked here independently."""
    command = command or typer.main.get_command(app)
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not sub.hidden:
            yield from command_paths(sub, (*path, name))


@pytest.fixture(scope="module")
def generated():
    return docgen.generate()


@pytest.fixture(scope="module")
def man(generated):
    # Undo the escapes a reader never sees, so the checks can look for plain names.
    return generated["man/mcpsec.1"].replace("\\-", "-")


def section(man, title):
    match = re.search(rf'^\.S[HS] "?{re.escape(title)}"?\n(.*?)(?=^\.S[HS] |\Z)', man, re.M | re.S)
    assert match, f"the man page has no section {title!r}"
    return match.group(1)


def write(tmp_path, generated, relative):
    path = tmp_path / Path(relative).name
    path.write_text(generated[relative], encoding="utf-8")
    return path


# --- freshness -------------------------------------------------------------------------------


@pytest.mark.parametrize("relative", sorted(docgen.RENDERERS))
def test_committed_file_is_fresh(generated, relative):
    path = REPO / relative
    if not path.is_file():
        pytest.fail(f"{relative} is missing: {REGENERATE}")
    committed = path.read_text(encoding="utf-8")
    if committed != generated[relative]:
        diff = difflib.unified_diff(
            committed.splitlines(),
            generated[relative].splitlines(),
            f"{relative} (committed)",
            f"{relative} (from the CLI)",
            lineterm="",
        )
        shown = "\n".join(list(diff)[:40])
        pytest.fail(f"{relative} is stale (not what the CLI generates): {REGENERATE}\n{shown}")


def test_output_depends_on_neither_terminal_nor_environment(generated, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "37")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert docgen.generate() == generated


def test_no_dates_or_absolute_paths(generated):
    for relative, text in generated.items():
        assert str(REPO) not in text, relative
        assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text), relative


def test_check_names_stale_and_missing_files(generated, tmp_path):
    for relative, text in generated.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    assert docgen.stale_files(generated, tmp_path) == []
    (tmp_path / "man/mcpsec.1").write_text("old\n")
    (tmp_path / "completions/mcpsec.fish").unlink()
    stale = docgen.stale_files(generated, tmp_path)
    assert stale == ["completions/mcpsec.fish", "man/mcpsec.1"]


def test_check_runs_from_any_working_directory(tmp_path):
    script = REPO / "scripts" / "generate_docs.py"
    ran = subprocess.run(
        [sys.executable, "-I", str(script), "--check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (ran.returncode, ran.stderr) == (0, ""), ran.stderr


# --- man page --------------------------------------------------------------------------------


def test_man_page_has_every_section(man):
    for title in (
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "GLOBAL OPTIONS",
        "COMMANDS",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "EXAMPLES",
        "SEE ALSO",
    ):
        assert f".SH {title}\n" in man
    from mcpsec import __version__

    assert man.splitlines()[1] == f'.TH MCPSEC 1 "" "mcpsec {__version__}" "User Commands"'


def test_man_page_documents_every_command_and_its_options(man):
    for path, command in command_paths():
        text = section(man, "GLOBAL OPTIONS" if len(path) == 1 else " ".join(path))
        for param in command.params:
            for name in [*param.opts, *param.secondary_opts]:
                if name.startswith("-") and not getattr(param, "hidden", False):
                    assert f"\\fB{name}\\fR" in text, f"{' '.join(path)}: {name} is not documented"


def test_man_page_lists_every_exit_code(man):
    text = section(man, "EXIT STATUS")
    for code, description in EXIT_CODES:
        assert f".TP\n\\fB{code}\\fR\n{description}\n" in text


def test_man_page_lists_every_environment_variable(man):
    text = section(man, "ENVIRONMENT")
    names = [CONFIG_ENV, *ENV_VARS.values(), "NO_COLOR", "XDG_CONFIG_HOME", "XDG_DATA_HOME"]
    for name in names:
        assert f".TP\n\\fB{name}\\fR\n" in text, f"{name} is not in ENVIRONMENT"


def test_man_page_names_its_files(man):
    text = section(man, "FILES")
    for name in ("config.toml", "jwt.secret", "mcpsec.db"):
        assert name in text


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_man_page_renders_without_warnings(generated, tmp_path):
    page = write(tmp_path, generated, "man/mcpsec.1")
    rendered = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", str(page)], capture_output=True, text=True, check=True
    )
    assert rendered.stderr == ""
    assert "mcpsec pkce generate" in rendered.stdout


# --- completion scripts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shell", "relative"),
    [
        ("bash", "completions/mcpsec.bash"),
        ("zsh", "completions/mcpsec.zsh"),
        ("fish", "completions/mcpsec.fish"),
    ],
)
def test_completion_script_parses(generated, tmp_path, shell, relative):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    assert_parses(shell, write(tmp_path, generated, relative))


def assert_parses(shell, script):
    checked = subprocess.run(
        [shell, "-n", str(script)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr


def bash_complete(script, *lines):
    """COMPREPLY for each command line (a tuple of words, the last one under the cursor)."""
    calls = "\n".join("t " + " ".join(shlex.quote(w) for w in words) for words in lines)
    program = f"""
source {shlex.quote(str(script))}
t() {{
    COMP_WORDS=("$@"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMPREPLY=()
    _mcpsec
    echo "${{COMPREPLY[*]}}"
}}
{calls}
"""
    ran = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0 and ran.stderr == "", ran.stderr
    return [line.split() for line in ran.stdout.splitlines()]


@pytest.fixture
def bash_script(generated, tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    return write(tmp_path, generated, "completions/mcpsec.bash")


def test_bash_completes_commands_options_and_choices(bash_script, tmp_path):
    (tmp_path / "settings.toml").touch()
    root_options = [n for p in typer.main.get_command(app).params for n in p.opts]
    cases = {
        ("mcpsec", "pk"): ["pkce"],
        ("mcpsec", "pkce", "generate", "--me"): ["--method"],
        ("mcpsec", "pkce", "generate", "--method", ""): ["S256", "plain"],
        ("mcpsec", "pkce", "verify", "--method", "p"): ["plain"],
        # bash splits `--method=pl` at `=` by default, or keeps it whole when `=` is no word break
        ("mcpsec", "pkce", "generate", "--method", "=", "pl"): ["plain"],
        ("mcpsec", "pkce", "generate", "--method=pl"): ["--method=plain"],
        # a global option's value is stepped over, not taken for a command
        ("mcpsec", "--store", "redis://localhost", "pkce", "ver"): ["verify"],
        ("mcpsec", "-q", "--json", "pkce", "verify", "--ch"): ["--challenge"],
        ("mcpsec", "--config", str(tmp_path / "sett")): [str(tmp_path / "settings.toml")],
        ("mcpsec", "-"): [*root_options, "--help", "-h"],
    }
    got = bash_complete(bash_script, *cases)
    for (words, expected), reply in zip(cases.items(), got, strict=True):
        assert sorted(reply) == sorted(expected), " ".join(words)


def test_bash_completes_every_subcommand_of_every_group(bash_script):
    groups = [(p, c) for p, c in command_paths() if getattr(c, "commands", None)]
    got = bash_complete(bash_script, *((*path, "") for path, _ in groups))
    for (path, command), reply in zip(groups, got, strict=True):
        expected = sorted(n for n, c in command.commands.items() if not c.hidden)
        assert reply == expected, " ".join(path)


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes_commands_and_choices(generated, tmp_path):
    script = write(tmp_path, generated, "completions/mcpsec.fish")

    def complete(line):
        ran = subprocess.run(
            ["fish", "--no-config", "-c", f"source {script}; complete -C {shlex.quote(line)}"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert ran.returncode == 0 and ran.stderr == "", ran.stderr
        return sorted(row.split("\t")[0] for row in ran.stdout.splitlines())

    assert complete("mcpsec pk") == ["pkce"]
    assert complete("mcpsec pkce generate --me") == ["--method"]
    assert complete("mcpsec pkce generate --method ") == ["S256", "plain"]
    assert complete("mcpsec --store redis://localhost pkce ver") == ["verify"]


# --- a tree shaped like tomorrow's: nested groups, Enum choices, path arguments ----------------


class Alg(enum.Enum):
    EDDSA = "EdDSA"
    ES256 = "ES256"


def nested_app():
    root = typer.Typer(help="Root.", no_args_is_help=True)
    keys = typer.Typer(help="Keys.", no_args_is_help=True)
    jwks = typer.Typer(help="JWKS documents.", no_args_is_help=True)

    @jwks.command("export")
    def export(
        alg: Annotated[Alg, typer.Option("--alg", "-a", help="Algorithm.")] = Alg.EDDSA,
        out: Annotated[Path, typer.Argument(help="Where to write.")] = Path("jwks.json"),
    ):
        """Export the public keys.

        Example: mcpsec keys jwks export --alg ES256 jwks.json
        """

    @keys.command("list-all", hidden=True)
    def secret_command():
        """Not shown."""

    keys.add_typer(jwks, name="jwks")
    root.add_typer(keys, name="keys")
    return root


@pytest.fixture(scope="module")
def nested():
    return docgen.render_all(docgen.tree_of(nested_app()))


def test_nested_groups_reach_the_man_page(nested):
    man = nested["man/mcpsec.1"].replace("\\-", "-")
    for title in ("mcpsec keys", "mcpsec keys jwks", "mcpsec keys jwks export"):
        assert f'.SS "{title}"\n' in man
    export = section(man, "mcpsec keys jwks export")
    assert "\\fB-a\\fR, \\fB--alg\\fR \\fIALG\\fR" in export
    assert "mcpsec keys jwks export --alg ES256 jwks.json" in section(man, "EXAMPLES")
    assert "list-all" not in man


def test_nested_groups_complete_in_bash(nested, tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    script = write(tmp_path, nested, "completions/mcpsec.bash")
    (tmp_path / "keys.json").touch()
    got = bash_complete(
        script,
        ("mcpsec", "keys", ""),
        ("mcpsec", "keys", "jwks", "ex"),
        ("mcpsec", "keys", "jwks", "export", "-a", ""),
        ("mcpsec", "keys", "jwks", "export", "--alg", "E", str(tmp_path / "ke")),
    )
    assert got == [["jwks"], ["export"], ["EdDSA", "ES256"], [str(tmp_path / "keys.json")]]


@pytest.mark.parametrize(("shell", "name"), [("zsh", "mcpsec.zsh"), ("fish", "mcpsec.fish")])
def test_nested_groups_parse_in_zsh_and_fish(nested, tmp_path, shell, name):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    assert_parses(shell, write(tmp_path, nested, f"completions/{name}"))
