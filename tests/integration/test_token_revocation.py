"""Token revocation on a real redis-server and a real Redis Cluster.

- verify's revocation check is one EVALSHA that reaches one node and touches one slot;
- concurrent refreshes of one refresh token, from real threads: reuse detection holds;
- a revocation mark lives as long as what it revokes would have, and no longer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from mcpsec.core.clock import ManualClock
from mcpsec.core.secret_files import Secret
from mcpsec.core.signing_keys import Algorithm, Keyring
from mcpsec.core.token_ids import subject_tag
from mcpsec.core.token_keys import TokenKeys
from mcpsec.core.token_rules import Reason
from mcpsec.core.tokens import MintedTokens, RefreshResult, Tokens
from mcpsec.store import Store, open_store
from mcpsec.store.redis_store import RedisStore
from redis.cluster import RedisCluster
from redis.crc import key_slot

from tests.support.sent_commands import record_commands

pytestmark = pytest.mark.redis_server

THREADS = 16
SLACK_MS = 2000  # between computing a lifetime and reading PTTL back


@pytest.fixture
def keys(tmp_path: Path) -> TokenKeys:
    ring = Keyring(tmp_path / "ring")
    ring.generate(Algorithm.EDDSA)
    return TokenKeys.load(ring, Secret(b"s" * 48, "test"))


def refresh_of(minted: MintedTokens | None) -> str:
    assert minted is not None and minted.refresh_token is not None
    return minted.refresh_token


def mark_key(store: RedisStore, subject: str, name: str) -> str:
    return store._mark_key(subject_tag(subject), name)


# --- one command, one slot -------------------------------------------------------------------


def command_counts(nodes: list[redis.Redis]) -> dict[str, int]:
    """`node/command` -> calls, as each server counts them (INFO itself left out)."""
    counts = {}
    for n, client in enumerate(nodes):
        for name, value in client.info("commandstats").items():
            if name != "cmdstat_info":
                counts[f"{n}/{name.removeprefix('cmdstat_')}"] = int(value["calls"])
    return counts


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """What was called in between, and how often."""
    changes = {name: calls - before.get(name, 0) for name, calls in after.items()}
    return {name: made for name, made in changes.items() if made}


@pytest.mark.parametrize("outcome", ["valid", "revoked", "cut-off", "no-family", "denied"])
def test_verify_checks_revocation_in_one_command_to_one_slot(
    store: RedisStore,
    keys: TokenKeys,
    nodes: list[redis.Redis],
    monkeypatch: pytest.MonkeyPatch,
    outcome: str,
) -> None:
    tokens = Tokens(store, keys)
    minted = tokens.mint("alice", roles=["user"], refresh=outcome != "no-family")
    if outcome == "revoked":
        tokens.revoke(minted.access_token)
    if outcome == "cut-off":
        tokens.revoke_subject("alice")
    tokens.verify(minted.access_token)  # the script is loaded on the slot's node once
    permission = "files:write" if outcome == "denied" else "files:read"

    before = command_counts(nodes)
    sent = record_commands(store, monkeypatch)
    verdict = tokens.verify(minted.access_token, permission=permission)
    monkeypatch.undo()
    after = command_counts(nodes)

    expected = {
        "valid": (True, None),
        "revoked": (False, Reason.REVOKED),
        "cut-off": (False, Reason.REVOKED),
        "no-family": (True, None),
        "denied": (False, Reason.INSUFFICIENT_PERMISSION),
    }[outcome]
    assert (verdict.valid, verdict.reason) == expected
    assert [a[0] for a in sent] == ["EVALSHA"]
    numkeys = int(sent[0][2])
    sent_keys = list(sent[0][3 : 3 + numkeys])
    names = ["j:" + minted.jti, "s"]
    if outcome != "no-family":
        names.append("f:" + verdict.claims["fam"])
    assert sent_keys == [mark_key(store, "alice", n) for n in names]
    assert len({key_slot(k.encode()) for k in sent_keys}) == 1
    # The server saw one EVALSHA, and the MGET inside it, on one node: the slot's owner.
    changes = delta(before, after)
    (node,) = {name.split("/")[0] for name in changes}
    assert changes == {f"{node}/evalsha": 1, f"{node}/mget": 1}
    if isinstance(store.client, RedisCluster):
        owner = store.client.get_node_from_key(sent_keys[0])
        kwargs = nodes[int(node)].connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"]) == (owner.host, owner.port)


def test_every_mark_of_a_subject_is_in_one_slot(store: RedisStore, keys: TokenKeys) -> None:
    tokens = Tokens(store, keys)
    minted = tokens.mint("{alice} with braces", roles=["user"])
    fam = tokens.verify(minted.access_token).claims["fam"]
    tokens.revoke(minted.access_token)
    tokens.revoke_subject("{alice} with braces")
    names = ["j:" + minted.jti, "s", "x", "f:" + fam]
    marks = [mark_key(store, "{alice} with braces", n) for n in names]
    assert len({key_slot(k.encode()) for k in marks}) == 1
    assert all("{" + subject_tag("{alice} with braces") + "}" in k for k in marks)
    # the revocation marks were really written where verify reads them
    assert store.client.exists(*marks[:3]) == 3


def test_a_token_refused_on_its_face_costs_no_command(
    store: RedisStore, keys: TokenKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock(time.time())
    tokens = Tokens(store, keys, clock=clock)
    minted = tokens.mint("alice", refresh=False)
    clock.advance(tokens.access_ttl)
    sent = record_commands(store, monkeypatch)
    assert tokens.verify(minted.access_token).reason is Reason.EXPIRED
    assert tokens.verify("not.a.token").reason is Reason.MALFORMED
    assert sent == []


# --- concurrent refreshes --------------------------------------------------------------------


def refresh_at_once(tokens: Tokens, refresh_token: str) -> list[RefreshResult]:
    """THREADS real threads present the same refresh token, released together."""
    barrier = threading.Barrier(THREADS)

    def one(_: int) -> RefreshResult:
        barrier.wait(timeout=10)
        return tokens.refresh(refresh_token)

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, range(THREADS)))


def check_no_leeway(tokens: Tokens) -> None:
    minted = tokens.mint("alice", roles=["user"])
    results = refresh_at_once(tokens, refresh_of(minted))
    won = [r for r in results if r.valid]
    lost = [r for r in results if not r.valid]
    assert len(won) <= 1
    assert {r.reason for r in lost} <= {Reason.REUSE_DETECTED, Reason.REVOKED}
    assert any(r.reason is Reason.REUSE_DETECTED for r in lost)
    issued = [r.tokens for r in won if r.tokens is not None]
    for pair in [minted, *issued]:
        assert tokens.verify(pair.access_token).reason is Reason.REVOKED
    for pair in issued:
        assert not tokens.refresh(refresh_of(pair)).valid


def check_within_leeway(tokens: Tokens) -> None:
    minted = tokens.mint("alice", roles=["user"])
    results = refresh_at_once(tokens, refresh_of(minted))
    assert [r.reason for r in results] == [None] * THREADS
    issued = [r.tokens for r in results if r.tokens is not None]
    assert len({pair.access_token for pair in issued}) == THREADS
    assert len({pair.refresh_token for pair in issued}) == THREADS
    for pair in [minted, *issued]:
        verdict = tokens.verify(pair.access_token, permission="files:read")
        assert verdict.valid, verdict.reason


def test_concurrent_reuse_without_leeway_revokes_the_family(
    store: RedisStore, keys: TokenKeys
) -> None:
    check_no_leeway(Tokens(store, keys, reuse_leeway=0))


def test_concurrent_refreshes_within_the_leeway_all_succeed(
    store: RedisStore, keys: TokenKeys
) -> None:
    check_within_leeway(Tokens(store, keys, reuse_leeway=5))


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield opened
    opened.close()


@pytest.mark.parametrize("leeway", [0, 5])
def test_concurrent_refreshes_on_sqlite(
    sqlite_store: Store, keys: TokenKeys, leeway: float
) -> None:
    tokens = Tokens(sqlite_store, keys, reuse_leeway=leeway)
    (check_within_leeway if leeway else check_no_leeway)(tokens)


# --- how long revocations live ---------------------------------------------------------------


def pttl_ms(store: RedisStore, key: str) -> int:
    left = int(store.client.pttl(key))
    assert left > 0, f"{key} has no expiry ({left})"
    return left


def test_a_revoked_token_is_remembered_for_its_remaining_life(
    store: RedisStore, keys: TokenKeys
) -> None:
    clock = ManualClock(time.time())
    tokens = Tokens(store, keys, access_ttl=600, leeway=5, clock=clock)
    minted = tokens.mint("alice")
    clock.advance(100)
    tokens.revoke(minted.access_token)
    exp = tokens.inspect(minted.access_token).claims["exp"]
    expected_ms = (exp - clock.now() + 5 + 1) * 1000  # about 506 s
    left = pttl_ms(store, mark_key(store, "alice", "j:" + minted.jti))
    assert expected_ms - SLACK_MS <= left <= expected_ms + 1
    assert 500_000 < left < 510_000


def test_a_revoked_refresh_token_is_remembered_for_its_life(
    store: RedisStore, keys: TokenKeys
) -> None:
    clock = ManualClock(time.time())
    tokens = Tokens(store, keys, refresh_ttl=3600, clock=clock)
    minted = tokens.mint("alice")
    revocation = tokens.revoke(refresh_of(minted))
    assert revocation.jti is not None
    left = pttl_ms(store, mark_key(store, "alice", "j:" + revocation.jti))
    expected_ms = (int(clock.now()) + 3600 - clock.now() + 1) * 1000
    assert expected_ms - SLACK_MS <= left <= expected_ms + 1


def test_a_subject_cut_off_lives_at_least_a_refresh_lifetime(
    store: RedisStore, keys: TokenKeys
) -> None:
    clock = ManualClock(time.time())
    tokens = Tokens(store, keys, access_ttl=600, refresh_ttl=3600, leeway=2, clock=clock)
    tokens.mint("alice")
    clock.advance(1000)
    tokens.revoke_subject("alice")  # the family minted earlier ends sooner than this
    left = pttl_ms(store, mark_key(store, "alice", "s"))
    expected_ms = (3600 + 2) * 1000
    assert expected_ms - SLACK_MS <= left <= expected_ms + 1


def test_a_subject_cut_off_outlives_the_longest_token(store: RedisStore, keys: TokenKeys) -> None:
    clock = ManualClock(time.time())
    tokens = Tokens(store, keys, refresh_ttl=3600, clock=clock)
    minted = tokens.mint("alice", ttl=10_000, refresh=False)  # outlives a refresh lifetime
    tokens.revoke_subject("alice")
    left = pttl_ms(store, mark_key(store, "alice", "s"))
    exp = tokens.inspect(minted.access_token).claims["exp"]
    expected_ms = (exp - clock.now()) * 1000
    assert expected_ms - SLACK_MS <= left <= expected_ms + 1
    assert tokens.verify(minted.access_token).reason is Reason.REVOKED


def test_a_family_mark_lives_until_the_family_ends(store: RedisStore, keys: TokenKeys) -> None:
    clock = ManualClock(time.time())
    tokens = Tokens(store, keys, access_ttl=600, refresh_ttl=3600, clock=clock)
    minted = tokens.mint("alice")
    fam = tokens.verify(minted.access_token).claims["fam"]
    end = tokens.inspect(refresh_of(minted)).claims["exp"]
    clock.advance(3200)
    renewed = tokens.refresh(refresh_of(minted))
    assert renewed.valid and renewed.tokens is not None
    clock.advance(tokens.reuse_leeway + 1)
    assert tokens.refresh(refresh_of(minted)).reason is Reason.REUSE_DETECTED
    # the access token minted at +3200 s lives past the family's end: the mark covers it
    access_exp = tokens.inspect(renewed.tokens.access_token).claims["exp"]
    assert access_exp > end
    left = pttl_ms(store, mark_key(store, "alice", "f:" + fam))
    expected_ms = (access_exp + 1 - clock.now()) * 1000
    assert expected_ms - SLACK_MS <= left <= expected_ms + 1
    assert tokens.verify(renewed.tokens.access_token).reason is Reason.REVOKED
