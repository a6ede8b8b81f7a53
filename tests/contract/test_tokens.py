"""Tokens over every backend: mint, verify, revoke, refresh and reuse detection of
`mcpsec.core.tokens` on SQLite, fakeredis, a real redis-server and a real Redis Cluster.

Token times come from a ManualClock given to `Tokens`; the stores keep their own clocks (the
SQLite store's system clock, Redis's `TIME`). That is sound because every mark and family
record is written with a relative lifetime, so the two clocks never have to agree.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcpsec.core.audit import AuditLog
from mcpsec.core.clock import ManualClock, to_datetime
from mcpsec.core.errors import InvalidInputError, MCPSecError, StoreError, StoreUnavailableError
from mcpsec.core.rbac import SEED_PERMISSIONS
from mcpsec.core.roles import DEFAULT_ROLES
from mcpsec.core.secret_files import Secret
from mcpsec.core.signing_keys import Algorithm, Keyring
from mcpsec.core.token_ids import parse_jti, subject_tag
from mcpsec.core.token_keys import CONFIG_SECRET_KID, TokenKeys
from mcpsec.core.token_rules import Reason
from mcpsec.core.tokens import MAX_LIVE, AsyncTokens, MintedTokens, Tokens
from mcpsec.store import Store

if TYPE_CHECKING:
    from .conftest import StoreTarget

NOW = 1_700_000_000.0
AUD = "https://mcp.example.com"
SECRET = b"s" * 48
ACCESS_TTL = 1800
REFRESH_TTL = 7 * 86400
ACCESS_CLAIMS = {"sub", "iss", "aud", "iat", "nbf", "exp", "jti", "type", "roles"}
ACCESS_CLAIMS |= {"permissions", "scope"}
REFRESH_CLAIMS = {"sub", "iss", "aud", "iat", "nbf", "exp", "jti", "type", "fam"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def keys(tmp_path: Path) -> TokenKeys:
    """An EdDSA keyring that signs, and the config secret beside it that only verifies."""
    ring = Keyring(tmp_path / "ring")
    ring.generate(Algorithm.EDDSA)
    return TokenKeys.load(ring, Secret(SECRET, "test"))


def make_tokens(store: Store, keys: TokenKeys, clock: ManualClock, **options: Any) -> Tokens:
    return Tokens(store, keys, audience=AUD, clock=clock, **options)


@pytest.fixture
def tokens(store: Store, keys: TokenKeys, clock: ManualClock) -> Tokens:
    return make_tokens(store, keys, clock)


def claims_of(token: str | None) -> dict[str, Any]:
    assert token is not None
    return dict(jwt.decode(token, options={"verify_signature": False}))


def refresh_of(minted: MintedTokens | None) -> str:
    assert minted is not None and minted.refresh_token is not None
    return minted.refresh_token


def rotate(tokens: Tokens, refresh_token: str) -> MintedTokens:
    result = tokens.refresh(refresh_token)
    assert result.valid and result.reason is None, result.reason
    assert result.tokens is not None
    return result.tokens


def reason_of(tokens: Tokens, token: str, **options: Any) -> Reason | None:
    return tokens.verify(token, **options).reason


# --- mint and verify ---------------------------------------------------------------------------


def test_mint_then_verify_carries_the_documented_claims(tokens: Tokens, keys: TokenKeys) -> None:
    minted = tokens.mint("alice", roles=["user"], permissions=["metrics:view"])
    verdict = tokens.verify(minted.access_token)
    assert verdict.valid and verdict.reason is None
    claims = verdict.claims
    assert set(claims) == ACCESS_CLAIMS | {"fam"}
    assert claims["sub"] == "alice"
    assert claims["iss"] == "mcpsec"
    assert claims["aud"] == AUD
    assert claims["iat"] == claims["nbf"] == int(NOW)
    assert claims["exp"] == int(NOW) + ACCESS_TTL
    assert claims["jti"] == minted.jti
    assert parse_jti(minted.jti).tag == subject_tag("alice")
    assert parse_jti(minted.jti).exp == claims["exp"]
    assert claims["type"] == "access"
    assert claims["roles"] == ["user"]
    assert claims["permissions"] == ["files:read", "metrics:view", "weather:read"]
    assert claims["scope"] == "files:read metrics:view weather:read"
    assert claims["fam"] == claims_of(minted.refresh_token)["fam"]
    assert minted.token_type == "bearer"
    assert minted.expires_in == ACCESS_TTL
    header = jwt.get_unverified_header(minted.access_token)
    assert header["alg"] == "EdDSA"
    assert keys.signing is not None and header["kid"] == keys.signing.kid


def test_the_refresh_token_carries_only_its_ids(tokens: Tokens) -> None:
    minted = tokens.mint("alice", roles=["admin"], permissions=["metrics:view"])
    claims = claims_of(minted.refresh_token)
    assert set(claims) == REFRESH_CLAIMS
    assert claims["type"] == "refresh"
    assert claims["sub"] == "alice"
    assert claims["aud"] == AUD
    assert claims["iat"] == claims["nbf"] == int(NOW)
    assert claims["exp"] == int(NOW) + REFRESH_TTL
    assert parse_jti(claims["jti"]).exp == claims["exp"]
    assert claims["jti"] != minted.jti
    assert claims["fam"] == claims_of(minted.access_token)["fam"]


def test_secrets_stay_out_of_repr(tokens: Tokens) -> None:
    minted = tokens.mint("alice")
    assert minted.access_token not in repr(minted)
    assert refresh_of(minted) not in repr(minted)


def test_no_refresh_gives_an_access_token_without_a_family(tokens: Tokens) -> None:
    minted = tokens.mint("alice", roles=["user"], refresh=False)
    assert minted.refresh_token is None
    verdict = tokens.verify(minted.access_token)
    assert verdict.valid
    assert "fam" not in verdict.claims
    assert set(verdict.claims) == ACCESS_CLAIMS


def test_a_shorter_ttl_is_kept_across_refreshes(tokens: Tokens, clock: ManualClock) -> None:
    minted = tokens.mint("alice", ttl=60)
    assert minted.expires_in == 60
    assert claims_of(minted.access_token)["exp"] == int(NOW) + 60
    clock.advance(30)
    renewed = rotate(tokens, refresh_of(minted))
    assert renewed.expires_in == 60
    assert claims_of(renewed.access_token)["exp"] == int(NOW) + 30 + 60


def test_hs256_only_setup_mints_verifies_and_refreshes(store: Store, clock: ManualClock) -> None:
    tokens = make_tokens(store, TokenKeys.load(None, Secret(SECRET, "test")), clock)
    minted = tokens.mint("alice", roles=["user"])
    header = jwt.get_unverified_header(minted.access_token)
    assert header["alg"] == "HS256"
    assert header["kid"] == CONFIG_SECRET_KID
    assert tokens.verify(minted.access_token).valid
    renewed = rotate(tokens, refresh_of(minted))
    assert tokens.verify(renewed.access_token).valid


def test_secret_signed_tokens_still_verify_once_a_keyring_signs(
    store: Store, keys: TokenKeys, clock: ManualClock
) -> None:
    before = make_tokens(store, TokenKeys.load(None, Secret(SECRET, "test")), clock)
    minted = before.mint("alice")
    after = make_tokens(store, keys, clock)
    assert after.verify(minted.access_token).valid
    assert jwt.get_unverified_header(after.mint("alice").access_token)["alg"] == "EdDSA"


def test_mint_refuses_bad_input(tokens: Tokens) -> None:
    for call in (
        lambda: tokens.mint(""),
        lambda: tokens.mint("alice\n"),
        lambda: tokens.mint("alice", roles=["emperor"]),
        lambda: tokens.mint("alice", permissions=["files"]),
        lambda: tokens.mint("alice", audience="has space"),
    ):
        with pytest.raises(InvalidInputError):
            call()


def test_mint_refuses_a_subject_that_is_not_utf8(tokens: Tokens) -> None:
    """argv bytes that are not UTF-8 arrive as lone surrogates: an input error, not a crash."""
    with pytest.raises(InvalidInputError) as caught:
        tokens.mint("\udcff")
    assert caught.value.field == "subject"
    with pytest.raises(InvalidInputError):
        tokens.revoke_subject("\udcff")


# --- what verify refuses -----------------------------------------------------------------------


def test_verify_with_a_permission(tokens: Tokens) -> None:
    user = tokens.mint("alice", roles=["user"], permissions=["metrics:view"]).access_token
    assert tokens.verify(user, permission="files:read").valid
    assert tokens.verify(user, permission="metrics:view").valid  # an extra permission
    assert reason_of(tokens, user, permission="files:write") is Reason.INSUFFICIENT_PERMISSION
    assert reason_of(tokens, user, permission="admin:users") is Reason.INSUFFICIENT_PERMISSION
    verdict = tokens.verify(user, permission="files:delete")
    assert not verdict.valid and verdict.claims["sub"] == "alice"


def test_verify_with_wildcard_grants(tokens: Tokens) -> None:
    admin = tokens.mint("root", roles=["admin"]).access_token
    assert claims_of(admin)["permissions"] == ["*"]
    for needed in ("admin:users", "files:delete", "anything:else"):
        assert tokens.verify(admin, permission=needed).valid
    files = tokens.mint("bob", permissions=["files:*"]).access_token
    assert tokens.verify(files, permission="files:delete").valid
    assert reason_of(tokens, files, permission="weather:read") is Reason.INSUFFICIENT_PERMISSION


def test_verify_refuses_a_malformed_permission(tokens: Tokens) -> None:
    token = tokens.mint("alice").access_token
    with pytest.raises(InvalidInputError):
        tokens.verify(token, permission="not a permission")


def test_verify_checks_the_audience(tokens: Tokens) -> None:
    ours = tokens.mint("alice").access_token
    assert reason_of(tokens, ours, audience="https://other.example") is Reason.WRONG_AUDIENCE
    theirs = tokens.mint("alice", audience="https://other.example").access_token
    assert reason_of(tokens, theirs) is Reason.WRONG_AUDIENCE
    assert tokens.verify(theirs, audience="https://other.example").valid
    unbound = tokens.mint("alice", audience=None).access_token
    assert "aud" not in claims_of(unbound)
    assert reason_of(tokens, unbound) is Reason.WRONG_AUDIENCE


def test_verify_checks_the_issuer(store: Store, keys: TokenKeys, clock: ManualClock) -> None:
    other = make_tokens(store, keys, clock, issuer="someone-else")
    token = other.mint("alice").access_token
    assert reason_of(make_tokens(store, keys, clock), token) is Reason.WRONG_ISSUER


def test_a_refresh_token_is_not_an_access_token(tokens: Tokens) -> None:
    minted = tokens.mint("alice")
    assert reason_of(tokens, refresh_of(minted)) is Reason.WRONG_TYPE
    result = tokens.refresh(minted.access_token)
    assert not result.valid and result.reason is Reason.WRONG_TYPE and result.tokens is None


def test_tokens_of_a_foreign_key_are_refused(
    store: Store, clock: ManualClock, tmp_path: Path
) -> None:
    ring = Keyring(tmp_path / "foreign")
    ring.generate(Algorithm.EDDSA)
    foreign = make_tokens(store, TokenKeys.load(ring, Secret(b"o" * 48, "other")), clock)
    ours = make_tokens(store, TokenKeys.load(None, Secret(SECRET, "test")), clock)
    minted = foreign.mint("alice")
    assert reason_of(ours, minted.access_token) is Reason.UNKNOWN_KEY
    assert ours.refresh(refresh_of(minted)).reason is Reason.UNKNOWN_KEY


def test_a_changed_claim_breaks_the_signature(tokens: Tokens) -> None:
    header, payload, signature = tokens.mint("alice", roles=["guest"]).access_token.split(".")
    forged = claims_of(f"{header}.{payload}.{signature}") | {"roles": ["admin"]}
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    assert reason_of(tokens, f"{header}.{forged_payload}.{signature}") is Reason.BAD_SIGNATURE


def test_a_jti_that_names_another_subject_is_malformed(store: Store, clock: ManualClock) -> None:
    """Signed with our own key: a `jti` of alice's on bob's token would look up the wrong
    revocation marks, so it is refused."""
    tokens = make_tokens(store, TokenKeys.load(None, Secret(SECRET, "test")), clock)
    claims = claims_of(tokens.mint("alice", refresh=False).access_token)
    headers = {"kid": CONFIG_SECRET_KID}
    for changed in ({"sub": "bob"}, {"exp": claims["exp"] - 1}):
        token = jwt.encode(claims | changed, SECRET, algorithm="HS256", headers=headers)
        assert reason_of(tokens, token) is Reason.MALFORMED
    no_family = claims_of(tokens.mint("alice").refresh_token)
    del no_family["fam"]
    token = jwt.encode(no_family, SECRET, algorithm="HS256", headers=headers)
    assert tokens.refresh(token).reason is Reason.MALFORMED


def test_verify_says_expired_after_the_ttl(tokens: Tokens, clock: ManualClock) -> None:
    token = tokens.mint("alice").access_token
    clock.advance(ACCESS_TTL - 1)
    assert tokens.verify(token).valid
    clock.advance(1)
    assert reason_of(tokens, token) is Reason.EXPIRED


def test_leeway_forgives_a_little_skew(store: Store, keys: TokenKeys, clock: ManualClock) -> None:
    tokens = make_tokens(store, keys, clock, leeway=5)
    token = tokens.mint("alice").access_token
    clock.advance(-5)
    assert tokens.verify(token).valid
    clock.advance(5 + ACCESS_TTL + 4)
    assert tokens.verify(token).valid
    clock.advance(1)
    assert reason_of(tokens, token) is Reason.EXPIRED


def test_verify_says_not_yet_valid_before_nbf(tokens: Tokens, clock: ManualClock) -> None:
    token = tokens.mint("alice").access_token
    clock.advance(-1)
    assert reason_of(tokens, token) is Reason.NOT_YET_VALID


# --- revoke ------------------------------------------------------------------------------------


def test_revoke_a_token(tokens: Tokens, clock: ManualClock) -> None:
    minted = tokens.mint("alice")
    other = tokens.mint("alice")
    revocation = tokens.revoke(minted.access_token)
    assert revocation.target == "token"
    assert revocation.jti == minted.jti
    assert revocation.subject_tag == subject_tag("alice")
    assert revocation.revoked is True
    assert revocation.revoked_at == to_datetime(NOW)
    assert revocation.until == to_datetime(int(NOW) + ACCESS_TTL + 1)
    assert reason_of(tokens, minted.access_token) is Reason.REVOKED
    assert tokens.verify(other.access_token).valid  # only that one
    assert tokens.refresh(refresh_of(minted)).valid  # its family lives on


def test_revoke_is_idempotent(tokens: Tokens) -> None:
    token = tokens.mint("alice").access_token
    assert tokens.revoke(token).revoked
    assert tokens.revoke(token).revoked
    assert reason_of(tokens, token) is Reason.REVOKED


def test_revoke_a_refresh_token(tokens: Tokens) -> None:
    minted = tokens.mint("alice")
    revocation = tokens.revoke(refresh_of(minted))
    assert revocation.revoked
    assert revocation.jti == claims_of(minted.refresh_token)["jti"]
    assert revocation.until == to_datetime(int(NOW) + REFRESH_TTL + 1)
    assert tokens.refresh(refresh_of(minted)).reason is Reason.REVOKED
    assert tokens.verify(minted.access_token).valid


def test_revoke_by_jti(tokens: Tokens) -> None:
    minted = tokens.mint("alice")
    revocation = tokens.revoke_jti(minted.jti)
    assert revocation.target == "jti"
    assert revocation.revoked and revocation.jti == minted.jti
    assert reason_of(tokens, minted.access_token) is Reason.REVOKED
    with pytest.raises(InvalidInputError):
        tokens.revoke_jti("not-a-jti")


def test_revoking_an_expired_token_changes_nothing(
    tokens: Tokens, clock: ManualClock, store: Store
) -> None:
    minted = tokens.mint("alice")
    clock.advance(ACCESS_TTL + 1)
    revocation = tokens.revoke(minted.access_token)
    assert revocation.revoked is False
    assert revocation.until is None
    assert tokens.revoke_jti(minted.jti).revoked is False
    assert store.get_marks(subject_tag("alice"), ["j:" + minted.jti]) == [None]


def test_revoke_refuses_a_token_that_is_not_ours(
    tokens: Tokens, store: Store, clock: ManualClock, tmp_path: Path
) -> None:
    ring = Keyring(tmp_path / "foreign")
    ring.generate(Algorithm.EDDSA)
    foreign = make_tokens(store, TokenKeys.load(ring, None), clock).mint("alice")
    with pytest.raises(InvalidInputError):
        tokens.revoke(foreign.access_token)
    with pytest.raises(InvalidInputError):
        tokens.revoke("not.a.token")
    assert store.get_marks(subject_tag("alice"), ["j:" + foreign.jti]) == [None]


def test_revoke_subject_revokes_everything_issued_before(
    tokens: Tokens, clock: ManualClock
) -> None:
    first = tokens.mint("alice", roles=["user"])
    renewed = rotate(tokens, refresh_of(first))
    bare = tokens.mint("alice", refresh=False)
    bob = tokens.mint("bob")
    clock.advance(0.25)
    revocation = tokens.revoke_subject("alice")
    assert revocation.target == "subject" and revocation.revoked
    assert revocation.subject_tag == subject_tag("alice") and revocation.jti is None
    assert revocation.until is not None
    assert revocation.until >= to_datetime(NOW + 0.25 + REFRESH_TTL)
    for token in (first.access_token, renewed.access_token, bare.access_token):
        assert reason_of(tokens, token) is Reason.REVOKED
    for refresh_token in (refresh_of(first), refresh_of(renewed)):
        assert tokens.refresh(refresh_token).reason is Reason.REVOKED
    assert tokens.verify(bob.access_token).valid
    assert tokens.refresh(refresh_of(bob)).valid


def test_a_token_minted_after_the_cut_off_is_valid(tokens: Tokens, clock: ManualClock) -> None:
    tokens.revoke_subject("alice")
    clock.advance(0.5)  # `iat` has whole seconds: the same second errs closed
    same_second = tokens.mint("alice")
    assert reason_of(tokens, same_second.access_token) is Reason.REVOKED
    clock.advance(0.5)
    later = tokens.mint("alice")
    assert tokens.verify(later.access_token).valid
    assert tokens.verify(rotate(tokens, refresh_of(later)).access_token).valid


def test_revoke_subject_refuses_a_bad_subject(tokens: Tokens) -> None:
    with pytest.raises(InvalidInputError):
        tokens.revoke_subject(" ")


def test_a_revocation_is_seen_through_another_store_object(
    store_target: StoreTarget, keys: TokenKeys, clock: ManualClock
) -> None:
    """What the CLI revokes is what a server refuses on its next request."""
    if not store_target.reopenable:
        pytest.skip("fakeredis data lives in one client object: nothing to reopen")
    cli = make_tokens(store_target.open(), keys, clock)
    server = make_tokens(store_target.open(), keys, clock)
    minted = cli.mint("alice")
    assert server.verify(minted.access_token).valid
    cli.revoke(minted.access_token)
    assert reason_of(server, minted.access_token) is Reason.REVOKED


# --- refresh -----------------------------------------------------------------------------------


def test_refresh_rotates(tokens: Tokens, clock: ManualClock) -> None:
    minted = tokens.mint("alice", roles=["user"], permissions=["metrics:view"])
    clock.advance(10)
    renewed = rotate(tokens, refresh_of(minted))
    assert renewed.access_token != minted.access_token
    assert renewed.refresh_token not in (None, minted.refresh_token)
    old, new = claims_of(minted.access_token), tokens.verify(renewed.access_token).claims
    for name in ("sub", "aud", "roles", "permissions", "scope", "fam"):
        assert new[name] == old[name]
    assert new["iat"] == int(NOW) + 10
    assert new["jti"] == renewed.jti != minted.jti
    assert tokens.verify(minted.access_token).valid  # rotation does not revoke
    clock.advance(10)
    assert tokens.verify(rotate(tokens, refresh_of(renewed)).access_token).valid


def test_a_spent_refresh_token_presented_again_revokes_the_family(
    tokens: Tokens, clock: ManualClock
) -> None:
    minted = tokens.mint("alice", roles=["user"])
    unrelated = tokens.mint("alice", roles=["user"])
    clock.advance(1)
    first = rotate(tokens, refresh_of(minted))
    clock.advance(1)
    second = rotate(tokens, refresh_of(first))
    clock.advance(tokens.reuse_leeway + 1)
    reused = tokens.refresh(refresh_of(minted))
    assert not reused.valid and reused.reason is Reason.REUSE_DETECTED and reused.tokens is None
    for token in (minted.access_token, first.access_token, second.access_token):
        assert reason_of(tokens, token) is Reason.REVOKED
    assert tokens.refresh(refresh_of(second)).reason is Reason.REUSE_DETECTED  # the newest
    assert tokens.refresh(refresh_of(first)).reason is Reason.REUSE_DETECTED
    assert tokens.verify(unrelated.access_token).valid  # another family of the same subject
    assert tokens.refresh(refresh_of(unrelated)).valid


def test_within_the_reuse_leeway_a_second_presentation_gets_its_own_pair(
    store: Store, keys: TokenKeys, clock: ManualClock
) -> None:
    tokens = make_tokens(store, keys, clock, reuse_leeway=2)
    minted = tokens.mint("alice")
    first = rotate(tokens, refresh_of(minted))
    clock.advance(1)
    again = rotate(tokens, refresh_of(minted))
    assert again.access_token != first.access_token
    assert again.refresh_token != first.refresh_token
    clock.advance(1)  # exactly the leeway after the token was spent
    third = rotate(tokens, refresh_of(minted))
    for pair in (minted, first, again, third):
        assert tokens.verify(pair.access_token).valid
    for pair in (first, again):
        assert tokens.verify(rotate(tokens, refresh_of(pair)).access_token).valid
    clock.advance(0.5)  # past the leeway: now it is reuse
    assert tokens.refresh(refresh_of(minted)).reason is Reason.REUSE_DETECTED
    assert reason_of(tokens, third.access_token) is Reason.REVOKED


def test_every_refresh_token_handed_out_can_be_used(
    store: Store, keys: TokenKeys, clock: ManualClock
) -> None:
    """Forks within the leeway are capped by refusing the next one, never by dropping a
    refresh token already handed out (which would later look like reuse)."""
    tokens = make_tokens(store, keys, clock, reuse_leeway=5)
    minted = tokens.mint("alice")
    first = rotate(tokens, refresh_of(minted))
    forks = [first] + [rotate(tokens, refresh_of(minted)) for _ in range(MAX_LIVE - 1)]
    with pytest.raises(MCPSecError, match="newest refresh token"):
        tokens.refresh(refresh_of(minted))  # one fork too many: refused, family intact
    clock.advance(10)
    for fork in forks:
        result = tokens.refresh(refresh_of(fork))
        assert result.valid, result.reason


def test_a_refresh_after_revoke_subject_is_revoked(tokens: Tokens, clock: ManualClock) -> None:
    minted = tokens.mint("alice")
    clock.advance(5)
    tokens.revoke_subject("alice")
    clock.advance(5)
    result = tokens.refresh(refresh_of(minted))
    assert not result.valid and result.reason is Reason.REVOKED and result.tokens is None


def test_the_family_ends_when_its_first_refresh_token_would_have_expired(
    store: Store, keys: TokenKeys, clock: ManualClock
) -> None:
    tokens = make_tokens(store, keys, clock, access_ttl=600, refresh_ttl=3600)
    minted = tokens.mint("alice")
    end = claims_of(minted.refresh_token)["exp"]
    assert end == int(NOW) + 3600
    current = minted
    for _ in range(3):
        clock.advance(1000)
        current = rotate(tokens, refresh_of(current))
        assert claims_of(current.refresh_token)["exp"] == end
    clock.advance(end - clock.now())
    assert tokens.refresh(refresh_of(current)).reason is Reason.EXPIRED


# --- inspect -----------------------------------------------------------------------------------


def test_inspect_shows_claims_unverified_with_the_revocation(tokens: Tokens) -> None:
    minted = tokens.mint("alice", roles=["user"])
    seen = tokens.inspect(minted.access_token)
    assert seen.verified is False
    assert seen.revoked is False and seen.revocation_note is None
    assert seen.claims == claims_of(minted.access_token)
    assert seen.header["alg"] == "EdDSA"
    assert seen.now == NOW
    tokens.revoke(minted.access_token)
    assert tokens.inspect(minted.access_token).revoked is True
    assert tokens.inspect(refresh_of(minted)).revoked is False


def test_inspect_believes_nothing(tokens: Tokens, clock: ManualClock, store: Store) -> None:
    expired = tokens.mint("alice").access_token
    clock.advance(ACCESS_TTL + 100)
    assert tokens.inspect(expired).claims["sub"] == "alice"
    foreign = jwt.encode({"sub": "x"}, b"f" * 48, algorithm="HS256")
    seen = tokens.inspect(foreign)
    assert seen.claims == {"sub": "x"} and seen.verified is False
    assert seen.revoked is None and seen.revocation_note is not None
    with pytest.raises(InvalidInputError):
        tokens.inspect("not a jwt")


# --- the store fails: closed -------------------------------------------------------------------


class MarksDown:
    """A real store whose revocation marks cannot be read."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def get_marks(self, group: str, names: Sequence[str]) -> list[float | None]:
        raise StoreUnavailableError("the store did not answer")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_verify_fails_closed_when_the_store_cannot_answer(
    store: Store, keys: TokenKeys, clock: ManualClock
) -> None:
    tokens = make_tokens(cast(Store, MarksDown(store)), keys, clock)
    minted = tokens.mint("alice", roles=["admin"])
    with pytest.raises(StoreError):
        tokens.verify(minted.access_token)
    with pytest.raises(StoreError):
        tokens.verify(minted.access_token, permission="files:read")
    with pytest.raises(StoreError):
        tokens.refresh(refresh_of(minted))
    seen = tokens.inspect(minted.access_token)
    assert seen.revoked is None
    assert seen.revocation_note is not None and "unknown" in seen.revocation_note
    assert make_tokens(store, keys, clock).verify(minted.access_token).valid  # it was fine


def test_a_token_refused_on_its_face_never_opens_the_store(
    keys: TokenKeys, clock: ManualClock
) -> None:
    def no_store() -> Store:
        raise AssertionError("the store was opened")

    tokens = Tokens(no_store, keys, audience=AUD, clock=clock)
    assert reason_of(tokens, "not.a.token") is Reason.MALFORMED
    forged = jwt.encode({"sub": "x"}, b"f" * 48, algorithm="HS256", headers={"kid": "nope"})
    assert reason_of(tokens, forged) is Reason.UNKNOWN_KEY


# --- async -------------------------------------------------------------------------------------


def test_async_tokens_follow_the_same_rules(tokens: Tokens) -> None:
    async def scenario() -> tuple[bool, Reason | None]:
        wrapped = AsyncTokens(tokens)
        try:
            minted = await wrapped.mint("alice", roles=["user"])
            valid = (await wrapped.verify(minted.access_token)).valid
            await wrapped.revoke(minted.access_token)
            return valid, (await wrapped.verify(minted.access_token)).reason
        finally:
            await wrapped.aclose()

    assert asyncio.run(scenario()) == (True, Reason.REVOKED)


def test_async_verify_records_each_verdict_in_the_audit_log(
    store: Store, keys: TokenKeys, clock: ManualClock
) -> None:
    """A server's verdicts are audited like the CLI's: valid, revoked, and a malformed
    token named only by its keyed HMAC; concurrent verifications all land in one chain."""
    log = AuditLog(store, b"a" * 32, actor="server")
    tokens = Tokens(store, keys, audience=AUD, clock=clock, audit=log)

    async def scenario() -> tuple[str, str]:
        wrapped = AsyncTokens(tokens)
        try:
            minted = await wrapped.mint("alice", roles=["user"])
            await asyncio.gather(*(wrapped.verify(minted.access_token) for _ in range(5)))
            await wrapped.revoke(minted.access_token)
            await wrapped.verify(minted.access_token)
            await wrapped.verify("not.a.token")
            return minted.jti, minted.access_token
        finally:
            await wrapped.aclose()

    jti, access_token = asyncio.run(scenario())
    verdicts = [e for e in log.events() if e.type == "token.verified"]
    assert [(e.outcome, e.reason) for e in verdicts] == [
        *[("allowed", None)] * 5,
        ("denied", Reason.REVOKED.value),
        ("denied", Reason.MALFORMED.value),
    ]
    assert {e.jti for e in verdicts[:6]} == {jti}
    assert verdicts[-1].credential == log.credential("not.a.token")
    assert log.verify().intact
    assert access_token not in repr(list(log.events()))


# --- property: any subject and grants round-trip -----------------------------------------------

SUBJECTS = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=100
).filter(lambda s: s.strip() != "")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    subject=SUBJECTS,
    roles=st.lists(st.sampled_from(sorted(DEFAULT_ROLES.roles)), unique=True),
    extra=st.lists(st.sampled_from(SEED_PERMISSIONS), unique=True),
    refresh=st.booleans(),
)
def test_mint_verify_round_trips(
    tokens: Tokens, subject: str, roles: list[str], extra: list[str], refresh: bool
) -> None:
    minted = tokens.mint(subject, roles=roles, permissions=extra, refresh=refresh)
    verdict = tokens.verify(minted.access_token)
    assert verdict.valid, verdict.reason
    assert verdict.claims["sub"] == subject
    assert verdict.claims["roles"] == roles
    expected = sorted(DEFAULT_ROLES.effective(roles, extra))
    assert verdict.claims["permissions"] == expected
    assert verdict.claims["scope"] == " ".join(expected)
    assert parse_jti(minted.jti).tag == subject_tag(subject)
    assert (minted.refresh_token is not None) == refresh
