"""`mcpsec signing-key` and `mcpsec jwks` as an operator rotates keys."""

import json
import stat


def test_generate_list_rotate_retire_and_jwks(mcpsec, home):
    first = json.loads(mcpsec("signing-key", "generate", "--alg", "EdDSA", "--json").stdout)
    assert first["status"] == "signing" and first["alg"] == "EdDSA"
    folder = home / "cfg" / "mcpsec" / "signing-keys"
    assert stat.S_IMODE((folder / f"{first['kid']}.pem").stat().st_mode) == 0o600

    hs = mcpsec("signing-key", "generate", "--alg", "hs256", "-q").stdout.strip()
    rotated = json.loads(mcpsec("signing-key", "rotate", "--json").stdout)
    assert rotated["alg"] == "EdDSA" and rotated["status"] == "signing"

    listed = {
        k["kid"]: k["status"] for k in json.loads(mcpsec("signing-key", "list", "--json").stdout)
    }
    assert listed == {first["kid"]: "verify-only", hs: "verify-only", rotated["kid"]: "signing"}
    table = mcpsec("signing-key", "list").stdout.splitlines()
    assert table[0].split() == ["KID", "ALG", "STATUS", "CREATED"] and len(table) == 4

    jwks = json.loads(mcpsec("jwks").stdout)
    assert {k["kid"] for k in jwks["keys"]} == {first["kid"], rotated["kid"]}
    assert all("d" not in k for k in jwks["keys"])

    assert mcpsec("signing-key", "retire", first["kid"]).exit_code == 0
    assert {k["kid"] for k in json.loads(mcpsec("jwks").stdout)["keys"]} == {rotated["kid"]}


def test_retiring_the_signer_or_an_unknown_key(mcpsec):
    kid = mcpsec("signing-key", "generate", "-q").stdout.strip()
    ran = mcpsec("signing-key", "retire", kid)
    assert ran.exit_code == 2 and "current signer" in ran.stderr
    ran = mcpsec("signing-key", "retire", "no-such-kid")
    assert ran.exit_code == 3


def test_keys_dir_setting_and_empty_keyring(mcpsec, home):
    elsewhere = home / "vault" / "keys"
    env = {"MCPSEC_JWT_KEYS_DIR": str(elsewhere)}
    assert json.loads(mcpsec("jwks", env=env).stdout) == {"keys": []}
    assert mcpsec("signing-key", "generate", env=env).exit_code == 0
    assert (elsewhere / "keyring.json").is_file()


def test_an_empty_keyring_lists_as_a_header(mcpsec):
    ran = mcpsec("signing-key", "list")
    assert ran.exit_code == 0 and ran.stdout.split() == ["KID", "ALG", "STATUS", "CREATED"]
    assert json.loads(mcpsec("signing-key", "list", "--json").stdout) == []


def test_rotate_to_an_existing_key(mcpsec):
    mcpsec("signing-key", "generate")
    waiting = mcpsec("signing-key", "generate", "-q").stdout.strip()
    ran = mcpsec("signing-key", "rotate", "--to", waiting, "--json")
    assert ran.exit_code == 0 and json.loads(ran.stdout)["status"] == "signing"
    both = mcpsec("signing-key", "rotate", "--to", waiting, "--alg", "ES256")
    assert both.exit_code == 2 and "not both" in both.stderr
