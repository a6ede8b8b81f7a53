"""The API key format, its checksum, the rules about key contents, RBAC, and expiry by the
injectable clock (no sleeping)."""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from mcpsec.core.api_keys import ApiKeys, Reason
from mcpsec.core.clock import ManualClock, to_datetime
from mcpsec.core.errors import InvalidInputError
from mcpsec.core.key_filters import KeyFilter, StatusChoice
from mcpsec.core.key_format import (
    BASE62,
    CHECKSUM_LENGTH,
    KEY_ID_LENGTH,
    SECRET_LENGTH,
    KeyParts,
    MalformedKeyError,
    checksum,
    format_key,
    new_key,
    parse_key,
    secret_hash,
)
from mcpsec.core.key_records import (
    MAX_NAME,
    RateLimit,
    Status,
    check_name,
    check_owner,
    parse_rate_limit,
)
from mcpsec.core.rbac import allows, check_permission
from mcpsec.core.roles import DEFAULT_ROLES
from mcpsec.store.sqlite import SqliteStore

prefixes = st.from_regex(r"[a-z][a-z0-9]{0,15}", fullmatch=True)
key_ids = st.text(alphabet=BASE62, min_size=KEY_ID_LENGTH, max_size=KEY_ID_LENGTH)
secrets_ = st.text(alphabet=BASE62, min_size=SECRET_LENGTH, max_size=SECRET_LENGTH)
key_parts = st.builds(KeyParts, prefixes, key_ids, secrets_)
# Any character at all, but often one that keeps the key's shape (so the checksum must work).
replacements = st.one_of(st.sampled_from(BASE62 + "_"), st.characters())
BASE62_RE = re.compile(r"[0-9A-Za-z]+")


def rejected(text: str) -> bool:
    try:
        parse_key(text)
    except MalformedKeyError:
        return True
    return False


# --- format and checksum -----------------------------------------------------------------------


@given(key_parts)
def test_round_trip(parts: KeyParts) -> None:
    key = format_key(parts)
    assert parse_key(key) == parts
    assert key.startswith(f"{parts.prefix}_{parts.key_id}_{parts.secret}")
    assert len(key) == len(parts.prefix) + 2 + KEY_ID_LENGTH + SECRET_LENGTH + CHECKSUM_LENGTH


@given(key_parts, st.data())
def test_any_single_character_substitution_is_rejected(
    parts: KeyParts, data: st.DataObject
) -> None:
    key = format_key(parts)
    i = data.draw(st.integers(0, len(key) - 1), label="position")
    c = data.draw(replacements.filter(lambda ch: ch != key[i]), label="replacement")
    assert rejected(key[:i] + c + key[i + 1 :])


@given(key_parts, st.data())
def test_a_substitution_that_keeps_the_shape_is_caught_by_the_checksum(
    parts: KeyParts, data: st.DataObject
) -> None:
    """Inside the key id or the secret, a base62 for a base62: only the checksum can tell."""
    key = format_key(parts)
    start = len(parts.prefix) + 1
    positions = [i for i in range(start, len(key) - CHECKSUM_LENGTH) if key[i] != "_"]
    i = data.draw(st.sampled_from(positions), label="position")
    c = data.draw(st.sampled_from(BASE62).filter(lambda ch: ch != key[i]), label="replacement")
    changed = key[:i] + c + key[i + 1 :]
    with pytest.raises(MalformedKeyError, match="checksum"):
        parse_key(changed)


@given(key_parts, st.data())
def test_adjacent_transpositions_are_rejected(parts: KeyParts, data: st.DataObject) -> None:
    key = format_key(parts)
    i = data.draw(st.integers(0, len(key) - 2), label="position")
    assume(key[i] != key[i + 1])
    swapped = key[:i] + key[i + 1] + key[i] + key[i + 2 :]
    assert rejected(swapped)


@given(key_parts, st.data())
def test_truncation_and_extension_are_rejected(parts: KeyParts, data: st.DataObject) -> None:
    key = format_key(parts)
    cut = data.draw(st.integers(1, len(key)), label="cut")
    assert rejected(key[:-cut])
    assert rejected(key[cut:])
    extra = data.draw(st.text(min_size=1, max_size=8), label="extra")
    assert rejected(key + extra)
    i = data.draw(st.integers(0, len(key)), label="insert at")
    assert rejected(key[:i] + extra + key[i:])
    j = data.draw(st.integers(0, len(key) - 1), label="delete at")
    assert rejected(key[:j] + key[j + 1 :])


@given(key_parts)
def test_whitespace_around_a_key_is_rejected(parts: KeyParts) -> None:
    key = format_key(parts)
    for text in (key + "\n", key + "\r\n", key + " ", " " + key, "\n" + key, key + "\x00"):
        assert rejected(text)


def test_a_rejection_never_repeats_the_key() -> None:
    key, _ = new_key()
    bad = key[:-1] + ("0" if key[-1] != "0" else "1")
    for text in (bad, key + "\n", key[:20]):
        with pytest.raises(MalformedKeyError) as caught:
            parse_key(text)
        assert text.strip() not in str(caught.value)
        assert key[: -CHECKSUM_LENGTH - 5] not in str(caught.value)


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_checksum_is_always_six_base62_characters(body: str) -> None:
    digest = checksum(body)
    assert len(digest) == CHECKSUM_LENGTH
    assert BASE62_RE.fullmatch(digest)
    value = 0
    for ch in digest:
        value = value * 62 + BASE62.index(ch)
    assert value == zlib.crc32(body.encode("ascii"))


def test_checksum_is_zero_padded() -> None:
    assert checksum("") == "000000"  # CRC32 of nothing is 0
    assert 62**CHECKSUM_LENGTH > 2**32


def test_new_keys_have_at_least_256_bits_of_secret() -> None:
    key, parts = new_key()
    assert parse_key(key) == parts
    assert len(parts.secret) >= 43
    assert BASE62_RE.fullmatch(parts.secret)
    assert len(parts.secret) * math.log2(62) >= 256
    assert len(parts.key_id) == KEY_ID_LENGTH
    assert parts.prefix == "mcp"
    assert parts.secret not in repr(parts)
    assert new_key("acme")[0].startswith("acme_")


def test_key_ids_and_secrets_are_unique_over_ten_thousand_keys() -> None:
    generated = [new_key()[1] for _ in range(10_000)]
    assert len({p.key_id for p in generated}) == 10_000
    assert len({p.secret for p in generated}) == 10_000


@pytest.mark.parametrize("prefix", ["", "MCP", "1mcp", "m_cp", "m-cp", "a" * 17, "mcp\n"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(InvalidInputError):
        new_key(prefix)


def test_secret_hash_is_sha256_hex() -> None:
    assert secret_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# --- rate limits, names, owners ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("100/1m", RateLimit(100, 60.0)),
        ("10/s", RateLimit(10, 1.0)),
        ("5000/1h", RateLimit(5000, 3600.0)),
        ("1/d", RateLimit(1, 86400.0)),
        ("30/90s", RateLimit(30, 90.0)),
        (" 100/1M ", RateLimit(100, 60.0)),
    ],
)
def test_parse_rate_limit(text: str, limit: RateLimit) -> None:
    assert parse_rate_limit(text) == limit


@pytest.mark.parametrize(
    "text",
    [
        *("", "100", "/1m", "100/", "0/1m", "-1/1m", "1.5/1m", "abc/1m", "100/xyz", "100/0s"),
        *("100/1y", "100 / 1m", "100/1m/2", "100/-1m", "100/m\n5"),
    ],
)
def test_parse_rate_limit_refuses(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_rate_limit(text)


def test_rate_limit_prints_as_it_is_written() -> None:
    assert str(RateLimit(100, 60.0)) == "100/1m"
    assert parse_rate_limit(str(RateLimit(10, 3600.0))) == RateLimit(10, 3600.0)


def test_check_name() -> None:
    assert check_name("ci-bot") == "ci-bot"
    assert check_name("  ci bot  ") == "ci bot"
    assert check_name("n" * MAX_NAME) == "n" * MAX_NAME
    assert check_name("déploiement ✓") == "déploiement ✓"
    for bad in ("", "   ", "n" * (MAX_NAME + 1), "ci\nbot", "ci\x00bot", "ci\x1b[31mbot", "a\x7f"):
        with pytest.raises(InvalidInputError):
            check_name(bad)


def test_check_owner() -> None:
    for good in ("platform", "team-a.b", "ci@example.com", "o" * 100, "al-b", "ÄÖ"):
        assert check_owner(good) == good
    for bad in ("", "a b", "a:b", "a{b", "a}b", "o" * 101, "a\tb", "a\nb", "a\x7f", " a"):
        with pytest.raises(InvalidInputError):
            check_owner(bad)


# --- RBAC --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("granted", "needed", "allowed"),
    [
        ({"files:read"}, "files:read", True),
        ({"files:read"}, "files:write", False),
        ({"files:*"}, "files:delete", True),
        ({"files:*"}, "weather:read", False),
        ({"*:read"}, "files:read", True),
        ({"*:read"}, "weather:read", True),
        ({"*:read"}, "files:write", False),
        ({"*"}, "admin:users", True),
        ({"*"}, "anything:else", True),
        (set(), "files:read", False),
        ({"files:read"}, "files:*", False),  # a narrow grant never satisfies a wide need
        ({"files:*"}, "files:*", True),
        ({"file:*"}, "files:read", False),  # no prefix matching
        ({"files:re"}, "files:read", False),
        ({"metrics:view", "files:read"}, "files:read", True),
    ],
)
def test_allows(granted: set[str], needed: str, allowed: bool) -> None:
    assert allows(granted, needed) is allowed


@pytest.mark.parametrize(
    "permission", ["files:read", "files:*", "*", "a.b-c_d:x.y-z_1", "*:read", "metrics:view"]
)
def test_check_permission_accepts(permission: str) -> None:
    """`*:read` is documented (rbac.check_permission: "either part may be `*`") and honoured
    by `allows`, so it must be grantable."""
    assert check_permission(permission) == permission


@pytest.mark.parametrize(
    "permission",
    [
        "",
        "files",
        "Files:read",
        "files:Read",
        "files:",
        ":read",
        "files:read:x",
        "files read",
        "files:read\n",
        " files:read",
        "1files:read",
        "files:**",
        "**",
        "f*:read",
        "files:re*",
    ],
)
def test_check_permission_refuses(permission: str) -> None:
    with pytest.raises(InvalidInputError):
        check_permission(permission)


def test_default_roles() -> None:
    assert DEFAULT_ROLES.effective(["guest"]) == {"weather:read"}
    assert DEFAULT_ROLES.effective(["user"]) == {"weather:read", "files:read"}
    assert DEFAULT_ROLES.effective(["user"], extra=["metrics:view"]) == {
        "weather:read",
        "files:read",
        "metrics:view",
    }
    assert DEFAULT_ROLES.effective(["guest", "premium"]) == {
        "weather:read",
        "weather:write",
        "files:read",
        "files:write",
    }
    assert DEFAULT_ROLES.effective(["admin"]) == {"*"}
    assert DEFAULT_ROLES.effective([]) == frozenset()
    assert allows(DEFAULT_ROLES.effective(["premium"]), "files:write")
    assert not allows(DEFAULT_ROLES.effective(["user"]), "files:write")
    assert allows(DEFAULT_ROLES.effective(["admin"]), "admin:users")
    for role in ("guest", "user", "premium", "admin"):
        assert DEFAULT_ROLES.check_role(role) == role
    for bad in ("root", "Admin", "", "user "):
        with pytest.raises(InvalidInputError):
            DEFAULT_ROLES.check_role(bad)


# --- expiry by the injectable clock ------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture
def keys(tmp_path: Path, clock: ManualClock) -> Iterator[ApiKeys]:
    """API keys on an SQLite store whose clock moves only when the test says so."""
    path = tmp_path / "mcpsec.db"
    store = SqliteStore(path, url=f"sqlite:///{path}", clock=clock)
    yield ApiKeys(store)
    store.close()


def test_expiry_follows_the_store_clock(clock: ManualClock, keys: ApiKeys) -> None:
    created = keys.create("short", ttl=60)
    lasting = keys.create("lasting", ttl=None)
    assert created.created_at.timestamp() == 1_700_000_000.0
    assert created.expires_at is not None
    assert created.expires_at.timestamp() == 1_700_000_060.0

    assert keys.verify(created.api_key).valid
    clock.advance(59.5)
    assert keys.verify(created.api_key).valid
    assert keys.show(created.key_id).last_used_at == to_datetime(clock.now())

    clock.advance(1.5)  # 61 s after creation
    verdict = keys.verify(created.api_key)
    assert (verdict.valid, verdict.reason) == (False, Reason.EXPIRED)
    shown = keys.show(created.key_id)
    assert shown.status is Status.EXPIRED
    assert shown.use_count == 2
    assert keys.verify(lasting.api_key).valid

    expired = keys.list(where=KeyFilter(status=StatusChoice.EXPIRED))
    assert [k.key_id for k in expired.keys] == [created.key_id]
    active = keys.list(where=KeyFilter(status=StatusChoice.ACTIVE))
    assert [k.key_id for k in active.keys] == [lasting.key_id]

    clock.advance(10 * 365 * 86400)
    assert keys.verify(lasting.api_key).valid


def test_the_exact_expiry_instant_is_expired(clock: ManualClock, keys: ApiKeys) -> None:
    created = keys.create("edge", ttl=10)
    clock.advance(10)
    assert keys.verify(created.api_key).reason is Reason.EXPIRED
    assert keys.show(created.key_id).status is Status.EXPIRED


def test_rotation_grace_and_filters_by_the_clock(clock: ManualClock, keys: ApiKeys) -> None:
    old = keys.create("ci-bot", ttl=30 * 86400)
    clock.advance(86400)
    rotation = keys.rotate(old.key_id, grace=3600)
    assert rotation.old_key_expires_at is not None
    assert rotation.old_key_expires_at.timestamp() == clock.now() + 3600
    clock.advance(3599)
    assert keys.verify(old.api_key).valid
    soon = keys.list(where=KeyFilter(expiring_within=60))
    assert [k.key_id for k in soon.keys] == [old.key_id]
    clock.advance(1)
    assert keys.verify(old.api_key).reason is Reason.EXPIRED
    assert keys.verify(rotation.api_key).valid
    clock.advance(1000)  # the old key was last used 1001 s ago, its successor 1000 s ago
    unused = keys.list(where=KeyFilter(unused_for=1000.5))
    assert [k.key_id for k in unused.keys] == [old.key_id]
