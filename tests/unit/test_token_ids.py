"""Token ids: the subject tag, `<tag>.<exp>.<random>` ids, and the subject and audience rules."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcpsec.core.errors import InvalidInputError
from mcpsec.core.token_ids import (
    MAX_SUBJECT,
    JtiParts,
    check_audience,
    check_subject,
    jti_matches,
    new_jti,
    parse_jti,
    subject_tag,
)

EXP = 1_800_000_000
HEX16 = re.compile(r"[0-9a-f]{16}")
# What a Redis hash tag must not contain, and what would spoil a key in redis-cli.
UNSAFE_IN_A_TAG = re.compile(r"[\s{}\x00-\x1f\x7f]")


def a_jti(tag: str = "0123456789abcdef", exp: str = str(EXP), rand: str = "A" * 22) -> str:
    return f"{tag}.{exp}.{rand}"


# -- subject_tag -----------------------------------------------------------------------------


def test_subject_tag_is_sixteen_hex_digits_of_sha256():
    # sha256("alice") = 2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90
    assert subject_tag("alice") == "2bd806c97f0e00af"


def test_subject_tag_is_stable():
    assert subject_tag("bob@example.com") == subject_tag("bob@example.com")


def test_different_subjects_get_different_tags():
    tags = {subject_tag(s) for s in ["alice", "Alice", "alice ", "bob", "alice@x", "ali{ce}"]}
    assert len(tags) == 6


@pytest.mark.parametrize(
    "subject",
    ["{alice}", "a}b{c", "with spaces", "  padded  ", "ünïcødé", "名前", "🔑 key", "a:b:{c}"],
)
def test_any_subject_gives_a_safe_tag(subject):
    tag = subject_tag(subject)
    assert HEX16.fullmatch(tag)
    assert not UNSAFE_IN_A_TAG.search(tag)


@settings(max_examples=50)
@given(st.text(min_size=1, max_size=300))
def test_every_text_gives_sixteen_hex_digits(subject):
    assert HEX16.fullmatch(subject_tag(subject))


# -- new_jti / parse_jti ---------------------------------------------------------------------


def test_new_jti_round_trips_through_parse_jti():
    jti = new_jti("alice", EXP)
    assert parse_jti(jti) == JtiParts(subject_tag("alice"), EXP)
    assert jti.startswith(subject_tag("alice") + f".{EXP}.")


def test_new_jti_random_part_is_22_url_safe_characters_and_fresh():
    jtis = {new_jti("alice", EXP) for _ in range(50)}
    assert len(jtis) == 50
    for jti in jtis:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", jti.split(".", 2)[2])


@settings(max_examples=50)
@given(st.text(min_size=1, max_size=50), st.integers(min_value=0, max_value=2**53 - 1))
def test_new_jti_round_trips_for_any_subject_and_exp(subject, exp):
    assert parse_jti(new_jti(subject, exp)) == JtiParts(subject_tag(subject), exp)


def test_parse_jti_accepts_a_well_formed_id():
    assert parse_jti(a_jti(rand="Ab-_0123456789xyzXYZ-_")) == JtiParts("0123456789abcdef", EXP)


@pytest.mark.parametrize(
    "jti",
    [
        pytest.param("", id="empty"),
        pytest.param(a_jti(tag="0123456789abcde"), id="tag-15"),
        pytest.param(a_jti(tag="0123456789abcdef0"), id="tag-17"),
        pytest.param(a_jti(tag="0123456789abcdeg"), id="tag-not-hex"),
        pytest.param(a_jti(tag="0123456789ABCDEF"), id="tag-upper-hex"),
        pytest.param(a_jti(exp=""), id="exp-empty"),
        pytest.param(a_jti(exp="18e8"), id="exp-not-digits"),
        pytest.param(a_jti(exp="-1"), id="exp-negative"),
        pytest.param(a_jti(exp="1800000000.5"), id="exp-fraction"),
        pytest.param(a_jti(exp="1" * 17), id="exp-17-digits"),
        pytest.param(a_jti(exp="١٢٣"), id="exp-arabic-digits"),
        pytest.param(a_jti(rand="A" * 21), id="random-21"),
        pytest.param(a_jti(rand="A" * 23), id="random-23"),
        pytest.param(a_jti(rand="A" * 21 + "="), id="random-padding"),
        pytest.param(a_jti(rand="A" * 21 + "+"), id="random-not-url-safe"),
        pytest.param(a_jti() + "\n", id="trailing-newline"),
        pytest.param("\n" + a_jti(), id="leading-newline"),
        pytest.param(a_jti() + " ", id="trailing-space"),
        pytest.param(a_jti() + ".x", id="extra-part"),
        pytest.param("0123456789abcdef." + str(EXP), id="two-parts"),
        pytest.param(a_jti().replace(".", ":"), id="wrong-separator"),
    ],
)
def test_parse_jti_refuses_malformed_ids(jti):
    with pytest.raises(InvalidInputError) as caught:
        parse_jti(jti)
    assert caught.value.field == "jti"


def test_parse_jti_message_is_cut_short():
    with pytest.raises(InvalidInputError) as caught:
        parse_jti("x" * 10_000)
    assert len(str(caught.value)) < 200


# -- jti_matches -----------------------------------------------------------------------------


def test_jti_matches_its_own_subject_and_exp():
    jti = new_jti("alice", EXP)
    assert jti_matches(jti, "alice", EXP)
    assert jti_matches(jti, "alice", float(EXP))  # a JSON number may come back as a float


@pytest.mark.parametrize(
    ("subject", "exp"),
    [("bob", EXP), ("Alice", EXP), ("alice", EXP + 1), ("alice", EXP - 1), ("alice", EXP + 0.5)],
)
def test_jti_does_not_match_another_subject_or_exp(subject, exp):
    assert not jti_matches(new_jti("alice", EXP), subject, exp)


@pytest.mark.parametrize("jti", ["j1", "", a_jti() + "\n", a_jti(tag="x" * 16)])
def test_a_malformed_jti_matches_nothing(jti):
    assert jti_matches(jti, "alice", EXP) is False


# -- check_subject ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    ["alice", "bob@example.com", "user:42", "{braces}", "with space", "ünïcødé 名前 🔑", "x"],
)
def test_check_subject_accepts_and_returns_ordinary_subjects(subject):
    assert check_subject(subject) == subject


def test_check_subject_accepts_exactly_the_maximum_length():
    assert check_subject("a" * MAX_SUBJECT) == "a" * MAX_SUBJECT
    assert check_subject("é" * MAX_SUBJECT) == "é" * MAX_SUBJECT  # characters, not bytes


@pytest.mark.parametrize(
    "subject",
    [
        pytest.param("", id="empty"),
        pytest.param(" ", id="space"),
        pytest.param(" \t ", id="whitespace"),
        pytest.param("\u3000", id="ideographic-space"),
        pytest.param("a" * (MAX_SUBJECT + 1), id="too-long"),
        pytest.param("ali\x00ce", id="nul"),
        pytest.param("alice\n", id="trailing-newline"),
        pytest.param("ali\rce", id="carriage-return"),
        pytest.param("ali\tce", id="tab"),
        pytest.param("ali\x1bce", id="escape"),
        pytest.param("ali\x7fce", id="delete"),
    ],
)
def test_check_subject_refuses(subject):
    with pytest.raises(InvalidInputError) as caught:
        check_subject(subject)
    assert caught.value.field == "subject"


def test_check_subject_refuses_a_lone_surrogate():
    with pytest.raises(InvalidInputError):
        check_subject("\udcff")


# -- check_audience --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "audience",
    ["https://mcp.example.com", "https://mcp.example.com/mcp?x=1", "urn:mcp:files", "mcp", "ü"],
)
def test_check_audience_accepts_resource_uris_and_names(audience):
    assert check_audience(audience) == audience


def test_check_audience_accepts_exactly_2000_characters():
    audience = "https://e.com/" + "a" * (2000 - len("https://e.com/"))
    assert check_audience(audience) == audience


@pytest.mark.parametrize(
    "audience",
    [
        pytest.param("", id="empty"),
        pytest.param("https://mcp.example.com " + "x", id="space"),
        pytest.param("https://mcp.example.com\n", id="trailing-newline"),
        pytest.param("https://e.com/\u00a0", id="nbsp"),
        pytest.param("https://e.com/\x00", id="nul"),
        pytest.param("https://e.com/\x7f", id="delete"),
        pytest.param("https://e.com/" + "a" * 2000, id="too-long"),
    ],
)
def test_check_audience_refuses(audience):
    with pytest.raises(InvalidInputError) as caught:
        check_audience(audience)
    assert caught.value.field == "audience"
