"""Every command in the tree, now and as it grows: bad input gets one line and exit 2,
`--help` works, and no traceback ever reaches the user."""

import pytest
import typer.main
from mcpsec.cli.app import app


def leaf_commands(command=None, path=()):
    command = command or typer.main.get_command(app)
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        yield path
        return
    for name, sub in sorted(subcommands.items()):
        yield from leaf_commands(sub, (*path, name))


COMMANDS = list(leaf_commands())

# Command-specific bad input: a value that breaks one of the command's rules. A new command
# without an entry here fails `test_every_command_has_a_bad_input_case`.
BAD_INPUT = {
    ("config", "init"): ["--force=maybe"],
    ("config", "path"): ["extra-argument"],
    ("config", "show"): ["--json", "extra-argument"],
    ("doctor",): ["--json=often"],
    ("jwks",): ["extra-argument"],
    ("signing-key", "generate"): ["--alg", "none"],
    ("signing-key", "list"): ["extra-argument"],
    ("signing-key", "retire"): [],
    ("signing-key", "rotate"): ["--alg", "HS512"],
    ("keys", "check"): ["one-key", "two-keys"],
    ("keys", "create"): ["--name", "   "],
    ("keys", "list"): ["--status", "sideways"],
    ("keys", "revoke"): [],
    ("keys", "rotate"): ["AAAAAAAAAAAA", "--grace", "soon"],
    ("keys", "show"): ["not an id"],
    ("keys", "update"): ["AAAAAAAAAAAA", "--ttl", "soon"],
    ("keys", "verify"): ["--permission", "not a permission", "mcp_x"],
    ("pkce", "challenge"): ["not-a-verifier"],
    ("roles", "list"): ["extra-argument"],
    ("roles", "show"): [],
    ("pkce", "generate"): ["--length", "7"],
    ("pkce", "verify"): ["--verifier", "x", "--challenge", "y"],
    ("token", "mint"): ["--subject", "alice", "--ttl", "soon"],
    ("token", "verify"): ["--permission", "not a permission", "a.b.c"],
    ("token", "inspect"): ["not-a-jwt"],
    ("token", "revoke"): ["--jti", "not-a-jti"],
    ("token", "refresh"): ["a.b.c", "--file", "also-a-file"],
    ("rate", "show"): ["alice", "--role", "no-such-role"],
    ("rate", "list"): ["--limit", "0"],
    ("rate", "reset"): ["--match", "bot-*"],
    ("rate", "check"): ["alice", "--capacity", "0", "--refill", "1"],
    ("rate", "policies"): ["extra-argument"],
    ("rate", "watch"): ["--interval", "0"],
    ("rate", "override", "set"): ["alice", "--capacity", "5", "--refill", "-1"],
    ("rate", "override", "unset"): ["bad identity"],
    ("audit", "tail"): ["-n", "0"],
    ("audit", "verify"): ["--since", "yesterday-ish"],
    ("audit", "hash"): ["one", "two"],
    ("audit", "export"): ["--since", "1h", "--format", "xml"],
    ("audit", "report"): ["--since", "soon"],
    ("authz", "check"): ["--permission", "files:read", "--token", "a.b.c", "--key", "mcp_x"],
    ("prm", "generate"): ["--resource", "http://example.com/mcp", "--authorization-server", "x"],
}


def test_the_tree_is_what_we_think():
    assert ("pkce", "generate") in COMMANDS and ("doctor",) in COMMANDS


def test_every_command_has_a_bad_input_case():
    assert set(COMMANDS) == set(BAD_INPUT)


def ids(path):
    return " ".join(path)


@pytest.mark.parametrize("path", COMMANDS, ids=ids)
def test_unknown_option_is_one_line_exit_2(mcpsec, path):
    ran = mcpsec(*path, "--no-such-option")
    assert ran.exit_code == 2
    assert ran.stderr.count("\n") == 1, ran.stderr
    assert ran.stderr.startswith("mcpsec: error: No such option: --no-such-option")
    assert f"mcpsec {ids(path)} --help" in ran.stderr


@pytest.mark.parametrize("path", COMMANDS, ids=ids)
def test_command_specific_bad_input_is_one_line_exit_2(mcpsec, path):
    ran = mcpsec(*path, *BAD_INPUT[path])
    assert ran.exit_code == 2, (ran.stdout, ran.stderr)
    assert ran.stderr.count("\n") == 1 and ran.stderr.startswith("mcpsec: error:"), ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr


@pytest.mark.parametrize("path", COMMANDS, ids=ids)
def test_help(mcpsec, path):
    ran = mcpsec(*path, "--help")
    assert ran.exit_code == 0
    assert "Usage: mcpsec " + ids(path) in " ".join(ran.stdout.split())


@pytest.mark.parametrize("path", COMMANDS, ids=ids)
def test_bad_input_as_a_real_process_has_no_traceback(mcpsec_process, path):
    ran = mcpsec_process(*path, *BAD_INPUT[path])
    assert ran.exit_code == 2
    assert "Traceback" not in ran.stderr
    assert ran.stderr.startswith("mcpsec: error:")


def test_unknown_command(mcpsec):
    ran = mcpsec("frobnicate")
    assert ran.exit_code == 2
    assert ran.stderr.startswith("mcpsec: error: No such command 'frobnicate'")


def test_group_without_command_shows_help(mcpsec):
    ran = mcpsec("pkce")
    assert ran.exit_code == 2
    assert "generate" in ran.stdout
