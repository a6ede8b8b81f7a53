"""`mcpsec pkce`: the documented output shapes and exit codes on good and bad input."""

import json

import pytest
from mcpsec.core import pkce

VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_generate_json(mcpsec):
    ran = mcpsec("pkce", "generate", "--json")
    assert ran.exit_code == 0
    doc = json.loads(ran.stdout)
    assert set(doc) == {"code_verifier", "code_challenge", "code_challenge_method"}
    assert doc["code_challenge_method"] == "S256"
    assert len(doc["code_verifier"]) == pkce.DEFAULT_LENGTH
    assert doc["code_challenge"] == pkce.challenge_of(doc["code_verifier"])
    assert ran.stderr == ""


def test_global_json_flag_works_too(mcpsec):
    assert (
        json.loads(mcpsec("--json", "pkce", "generate").stdout)["code_challenge_method"] == "S256"
    )


@pytest.mark.parametrize("length", ["43", "128"])
def test_generate_length_bounds(mcpsec, length):
    doc = json.loads(mcpsec("pkce", "generate", "--length", length, "--json").stdout)
    assert len(doc["code_verifier"]) == int(length)


def test_generate_human_and_quiet(mcpsec):
    human = mcpsec("pkce", "generate").stdout
    assert "code_verifier:" in human and "code_challenge:" in human
    quiet = mcpsec("pkce", "generate", "--quiet").stdout.splitlines()
    assert len(quiet) == 2
    assert pkce.challenge_of(quiet[0]) == quiet[1]


def test_plain_warns_on_stderr_only(mcpsec):
    ran = mcpsec("pkce", "generate", "--method", "plain", "--json")
    assert ran.exit_code == 0
    doc = json.loads(ran.stdout)
    assert doc["code_challenge"] == doc["code_verifier"]
    assert doc["code_challenge_method"] == "plain"
    assert ran.stderr.startswith("mcpsec: warning:") and "S256" in ran.stderr


def test_challenge_from_argument_and_stdin(mcpsec):
    assert mcpsec("pkce", "challenge", VERIFIER).stdout.strip() == CHALLENGE
    assert mcpsec("pkce", "challenge", "-", input=VERIFIER + "\n").stdout.strip() == CHALLENGE
    doc = json.loads(mcpsec("pkce", "challenge", "--json", "-", input=VERIFIER).stdout)
    assert doc == {"code_challenge": CHALLENGE, "code_challenge_method": "S256"}


def test_verify_match_and_mismatch(mcpsec):
    ok = mcpsec("pkce", "verify", "--verifier", "-", "--challenge", CHALLENGE, input=VERIFIER)
    assert (ok.exit_code, ok.stdout.strip()) == (0, "match")
    other = VERIFIER[:-1] + "A"
    bad = mcpsec("pkce", "verify", "--verifier", other, "--challenge", CHALLENGE, "--json")
    assert bad.exit_code == 1
    assert json.loads(bad.stdout) == {"match": False, "code_challenge_method": "S256"}


def test_verify_plain(mcpsec):
    ran = mcpsec(
        "pkce", "verify", "--verifier", VERIFIER, "--challenge", VERIFIER, "--method", "plain"
    )
    assert ran.exit_code == 0
    assert "warning" in ran.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "reason"),
    [
        (["generate", "--length", "42"], None, "outside 43..128"),
        (["generate", "--length", "129"], None, "outside 43..128"),
        (["generate", "--length", "many"], None, "--length"),
        (["generate", "--method", "md5"], None, "unknown PKCE method"),
        (["challenge", "short"], None, "43 to 128"),
        (["challenge", "-"], "a" * 41 + "!", "43 to 128"),
        (["challenge", "-"], "a" * 43 + "!", "may only contain"),
        (["challenge", "-"], "", "no code verifier"),
        (["verify", "--verifier", VERIFIER, "--challenge", "nope"], None, "not an S256 challenge"),
        (["verify", "--verifier", "x", "--challenge", CHALLENGE], None, "43 to 128"),
        (
            ["verify", "--verifier", VERIFIER, "--challenge", CHALLENGE, "--method", "S512"],
            None,
            "unknown PKCE method",
        ),
        (["verify", "--challenge", CHALLENGE], None, "--verifier"),
    ],
)
def test_bad_input_exits_2_with_one_line(mcpsec, args, stdin, reason):
    ran = mcpsec("pkce", *args, input=stdin)
    assert ran.exit_code == 2
    assert ran.stdout == ""
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert lines[0].startswith("mcpsec: error:")
    assert reason in lines[0]
