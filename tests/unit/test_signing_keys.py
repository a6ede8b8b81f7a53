"""The keyring: key files and their modes, kids, rotation, retirement, the public JWK Set."""

import json
import stat
import threading

import jwt
import pytest
from mcpsec.core.errors import ConfigError, InvalidInputError, NotFoundError, SecretError
from mcpsec.core.signing_keys import Algorithm, Keyring, parse_algorithm, thumbprint


@pytest.fixture
def ring(tmp_path):
    return Keyring(tmp_path / "signing-keys")


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("alg", list(Algorithm))
def test_generate_writes_a_private_file_and_signs_verifiably(ring, alg):
    key = ring.generate(alg)
    path = ring.folder / key.file
    assert mode(path) == 0o600 and mode(ring.folder) == 0o700
    assert mode(ring.folder / "keyring.json") == 0o600
    assert key.signer and key.status == "signing"
    material = ring.private_key(key)
    token = jwt.encode({"sub": "x"}, material, algorithm=alg.value, headers={"kid": key.kid})
    verifying = material if alg is Algorithm.HS256 else material.public_key()
    assert jwt.decode(token, verifying, algorithms=[alg.value])["sub"] == "x"
    if alg is Algorithm.HS256:
        assert len(material) >= 32


def test_asymmetric_kids_are_rfc7638_thumbprints(ring):
    key = ring.generate(Algorithm.EDDSA)
    (jwk,) = ring.jwks()["keys"]
    assert key.kid == jwk["kid"] == thumbprint(jwk)


def test_rfc7638_example_thumbprint():
    """RFC 7638 section 3.1: the example RSA key and its thumbprint."""
    jwk = {
        "kty": "RSA",
        "e": "AQAB",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6t"
            "Soc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-6"
            "5YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNL"
            "yrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJ"
            "zKnqDKgw"
        ),
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_jwks_has_no_private_parts_and_no_hs256_or_retired_keys(ring):
    ed = ring.generate(Algorithm.EDDSA)
    es = ring.generate(Algorithm.ES256)
    rs = ring.generate(Algorithm.RS256)
    hs = ring.generate(Algorithm.HS256)
    new = ring.rotate()
    ring.retire(es.kid)
    keys = ring.jwks()["keys"]
    assert {k["kid"] for k in keys} == {ed.kid, rs.kid, new.kid}
    for k in keys:
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(k)
        assert k["use"] == "sig"
    text = json.dumps(ring.jwks())
    assert ring.private_key(hs).decode() not in text


def test_rotation_moves_the_signer_and_keeps_old_keys(ring):
    first = ring.generate(Algorithm.EDDSA)
    second = ring.generate(Algorithm.ES256)  # not a signer: there already is one
    assert ring.signer().kid == first.kid and not second.signer
    third = ring.rotate()
    assert third.alg is Algorithm.EDDSA and ring.signer().kid == third.kid
    assert {k.kid: k.status for k in ring.entries()} == {
        first.kid: "verify-only",
        second.kid: "verify-only",
        third.kid: "signing",
    }
    assert ring.rotate(Algorithm.RS256).alg is Algorithm.RS256


def test_retire(ring):
    first = ring.generate(Algorithm.EDDSA)
    with pytest.raises(InvalidInputError, match="current signer"):
        ring.retire(first.kid)
    ring.rotate()
    retired = ring.retire(first.kid)
    assert retired.status == "retired"
    assert ring.retire(first.kid).retired_at == retired.retired_at  # idempotent
    with pytest.raises(NotFoundError):
        ring.retire("nope")


def test_no_signer_is_a_config_error(ring):
    with pytest.raises(ConfigError, match="signing-key generate"):
        ring.signer()


def test_concurrent_rotations_lose_no_key(ring):
    ring.generate(Algorithm.HS256)
    threads = [threading.Thread(target=ring.rotate) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = ring.entries()
    assert len(keys) == 9
    assert sum(k.signer for k in keys) == 1


def test_a_key_file_others_can_read_is_refused(ring):
    key = ring.generate(Algorithm.EDDSA)
    (ring.folder / key.file).chmod(0o644)
    with pytest.raises(SecretError, match="readable by others"):
        ring.private_key(key)


def test_a_damaged_manifest_is_a_config_error(ring):
    ring.generate(Algorithm.EDDSA)
    (ring.folder / "keyring.json").write_text("{not json")
    with pytest.raises(ConfigError, match="damaged"):
        ring.entries()


@pytest.mark.parametrize("text", ["none", "HS512", "", "eddsa!"])
def test_unknown_algorithms_are_refused(text):
    with pytest.raises(InvalidInputError, match="unknown algorithm"):
        parse_algorithm(text)


def test_algorithm_names_are_case_insensitive():
    assert parse_algorithm("eddsa") is Algorithm.EDDSA


def test_a_swapped_key_file_is_refused(ring):
    old = ring.generate(Algorithm.EDDSA)
    new = ring.rotate()
    ring.retire(old.kid)
    a, b = ring.folder / old.file, ring.folder / new.file
    a_text, b_text = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_text)
    b.write_bytes(a_text)  # the retired key now sits under the signer's kid
    with pytest.raises(ConfigError, match="does not hold"):
        ring.private_key(ring.signer())
    with pytest.raises(ConfigError, match="does not hold"):
        ring.jwks()


def test_a_key_of_the_wrong_type_under_a_kid_is_refused(ring):
    ed = ring.generate(Algorithm.EDDSA)
    es = ring.generate(Algorithm.ES256)
    (ring.folder / es.file).write_bytes((ring.folder / ed.file).read_bytes())
    with pytest.raises(ConfigError, match="does not hold the ES256 key"):
        ring.jwks()


@pytest.mark.parametrize("file", ["/etc/passwd", "../escape.pem", "other.pem"])
def test_a_manifest_pointing_outside_is_refused(ring, file):
    key = ring.generate(Algorithm.EDDSA)
    manifest = ring.folder / "keyring.json"
    document = json.loads(manifest.read_text())
    document["keys"][0]["file"] = file
    manifest.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match=f"bad file for '{key.kid}'"):
        ring.entries()


def test_a_folder_others_can_write_is_refused_before_any_write(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(ConfigError, match="writable by others"):
        Keyring(folder).generate(Algorithm.EDDSA)
    assert list(folder.iterdir()) == []


def test_key_files_without_a_manifest_are_not_silently_dropped(ring):
    ring.generate(Algorithm.EDDSA)
    (ring.folder / "keyring.json").unlink()
    with pytest.raises(ConfigError, match=r"no keyring\.json"):
        ring.generate(Algorithm.EDDSA)


def test_a_corrupt_pem_is_a_config_error(ring):
    key = ring.generate(Algorithm.EDDSA)
    (ring.folder / key.file).write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n")
    with pytest.raises(ConfigError, match="not a readable key"):
        ring.jwks()


def test_rsa_jwk_has_use_but_not_key_ops(ring):
    ring.generate(Algorithm.RS256)
    (jwk,) = ring.jwks()["keys"]
    assert jwk["use"] == "sig" and "key_ops" not in jwk


def test_promote_an_already_published_key(ring):
    first = ring.generate(Algorithm.EDDSA)
    waiting = ring.generate(Algorithm.EDDSA)
    assert waiting.kid in {k["kid"] for k in ring.jwks()["keys"]}  # published before it signs
    promoted = ring.promote(waiting.kid)
    assert promoted.signer and ring.signer().kid == waiting.kid
    assert {k.kid: k.status for k in ring.entries()}[first.kid] == "verify-only"
    ring.retire(first.kid)
    with pytest.raises(InvalidInputError, match="retired"):
        ring.promote(first.kid)
    with pytest.raises(NotFoundError):
        ring.promote("missing-kid")


def test_an_imported_hs256_secret_signs_and_verifies(ring):
    from mcpsec.core.secret_files import Secret

    shared = b"k" * 40
    key = ring.generate(Algorithm.HS256, secret=Secret(shared, "standard input"))
    assert key.signer and key.alg is Algorithm.HS256
    assert ring.private_key(key) == shared
    assert mode(ring.folder / key.file) == 0o600
    token = jwt.encode({"sub": "a"}, ring.private_key(key), algorithm="HS256")
    assert jwt.decode(token, shared, algorithms=["HS256"])["sub"] == "a"


def test_an_imported_secret_must_be_long_and_hs256(ring):
    from mcpsec.core.secret_files import Secret

    with pytest.raises(SecretError, match="at least 32"):
        ring.generate(Algorithm.HS256, secret=Secret(b"short", "standard input"))
    with pytest.raises(InvalidInputError, match="only an HS256 secret"):
        ring.generate(Algorithm.EDDSA, secret=Secret(b"k" * 40, "standard input"))
    assert ring.entries() == []  # nothing half-written
