"""PKCE rules (RFC 7636): the Appendix B vector, the alphabet, lengths, methods, round trips."""

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcpsec.core import pkce
from mcpsec.core.errors import InvalidInputError

APPENDIX_B_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
APPENDIX_B_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

verifiers = st.text(alphabet=pkce.ALPHABET, min_size=43, max_size=128)


def test_appendix_b_vector():
    assert pkce.challenge_of(APPENDIX_B_VERIFIER) == APPENDIX_B_CHALLENGE
    assert pkce.verify(APPENDIX_B_VERIFIER, APPENDIX_B_CHALLENGE)


@pytest.mark.parametrize("length", [43, 64, 128])
def test_generate_lengths_and_alphabet(length):
    pair = pkce.generate(length)
    assert len(pair.code_verifier) == length
    assert set(pair.code_verifier) <= set(string.ascii_letters + string.digits + "-._~")
    assert pair.code_challenge == pkce.challenge_of(pair.code_verifier)
    assert pair.code_challenge_method is pkce.Method.S256


def test_generate_draws_from_the_whole_alphabet_and_never_repeats():
    pairs = [pkce.generate(128) for _ in range(200)]
    seen = set("".join(p.code_verifier for p in pairs))
    assert seen == set(pkce.ALPHABET)  # 25,600 draws over 66 symbols: all appear
    assert len({p.code_verifier for p in pairs}) == 200


@pytest.mark.parametrize("length", [0, 42, 129, -1])
def test_generate_refuses_lengths_outside_the_rfc(length):
    with pytest.raises(InvalidInputError, match=r"43\.\.128"):
        pkce.generate(length)


@pytest.mark.parametrize(
    "verifier",
    [
        "a" * 42,
        "a" * 129,
        "a" * 42 + "!",
        "a" * 42 + " ",
        "a" * 43 + "\n",  # re.match(...$) would let a trailing newline through
        "a" * 42 + "é",
        "a" * 42 + "=",
    ],
)
def test_bad_verifiers_are_refused(verifier):
    with pytest.raises(InvalidInputError):
        pkce.challenge_of(verifier)


def test_verifier_is_not_in_repr():
    pair = pkce.generate()
    assert pair.code_verifier not in repr(pair)


def test_plain_method_challenge_is_the_verifier_and_warns():
    pair = pkce.generate(method=pkce.Method.PLAIN)
    assert pair.code_challenge == pair.code_verifier
    assert pkce.Method.PLAIN.warning
    assert pkce.Method.S256.warning is None


@pytest.mark.parametrize("text", ["S256", "s256", "plain", "PLAIN"])
def test_parse_method_accepts_rfc_spellings(text):
    assert pkce.parse_method(text).value.lower() == text.lower()


@pytest.mark.parametrize("text", ["md5", "", "S512", "sha256"])
def test_parse_method_refuses_others(text):
    with pytest.raises(InvalidInputError, match="unknown PKCE method"):
        pkce.parse_method(text)


@pytest.mark.parametrize(
    "challenge", ["", "short", APPENDIX_B_CHALLENGE + "=", APPENDIX_B_CHALLENGE[:-1] + "+"]
)
def test_malformed_s256_challenge_is_refused(challenge):
    with pytest.raises(InvalidInputError, match="challenge"):
        pkce.verify(APPENDIX_B_VERIFIER, challenge)


@given(verifiers)
def test_round_trip_s256(verifier):
    assert pkce.verify(verifier, pkce.challenge_of(verifier))


@given(verifiers)
def test_round_trip_plain(verifier):
    assert pkce.verify(verifier, pkce.challenge_of(verifier, pkce.Method.PLAIN), pkce.Method.PLAIN)


@given(verifiers, verifiers)
def test_other_verifier_does_not_match(verifier, other):
    if verifier != other:
        assert not pkce.verify(other, pkce.challenge_of(verifier))


@given(verifiers, st.integers(min_value=0, max_value=42), st.sampled_from("ABCxyz019-_"))
def test_any_changed_challenge_character_fails(verifier, position, replacement):
    challenge = pkce.challenge_of(verifier)
    changed = challenge[:position] + replacement + challenge[position + 1 :]
    assert pkce.verify(verifier, changed) == (changed == challenge)
