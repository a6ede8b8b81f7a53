"""Fault 3: a read-only replica given as the store.

Writes fail, exit 5, with a message that says the store is a read-only replica and what to
do; reads still work. Verifying an API key is a write (it counts the use in the same atomic
step), so on a replica a key that would be valid is "unavailable", never "valid": the replica
cannot count the use, and may not yet have a revocation the primary just took. A key the
replica already knows to be revoked is still refused as revoked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from mcpsec.core.api_keys import ApiKeys
from mcpsec.core.audit import AuditLog
from mcpsec.core.errors import StoreReadOnlyError
from mcpsec.store import open_store

from tests.support.cli import Cli, assert_store_failure
from tests.support.redis_servers import (
    RedisServer,
    command,
    require_binaries,
    start_redis_server,
)

pytestmark = pytest.mark.redis_server

READ_ONLY = "is a read-only replica and refused a write"
TO_PRIMARY = "point the store URL at the primary"
SYNC_TIMEOUT = 15.0
NO_REFILL = ("--capacity", "10", "--refill", "0")  # a bucket whose level a read can check


@dataclass
class Pair:
    primary: RedisServer
    replica: RedisServer


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """A primary and its replica, linked and in sync."""
    require_binaries("redis-server")
    folder = tmp_path_factory.mktemp("redis-replica")
    # Diskless sync waits 5 s by default for more replicas to come along: one will do.
    with (
        start_redis_server(folder / "primary", "--repl-diskless-sync-delay", "0") as primary,
        start_redis_server(
            folder / "replica", "--replicaof", "127.0.0.1", str(primary.port)
        ) as replica,
    ):
        wait_for_link(replica)
        yield Pair(primary, replica)


def wait_for_link(replica: RedisServer) -> None:
    deadline = time.monotonic() + SYNC_TIMEOUT
    while "master_link_status:up" not in command(replica.port, "INFO", "replication"):
        assert time.monotonic() < deadline, "the replica never linked to its primary"
        time.sleep(0.05)


def in_sync(pair: Pair) -> None:
    """Until the replica has every write the primary took so far (WAIT for one replica)."""
    assert command(pair.primary.port, "WAIT", "1", str(int(SYNC_TIMEOUT * 1000))) == ":1"


@dataclass
class Scene:
    cli: Cli
    valid: dict[str, Any]
    revoked: dict[str, Any]
    token: str


@pytest.fixture(scope="module")
def scene(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Scene:
    """State written on the primary (a key of an owner, a revoked key, a token, a bucket),
    replicated; the Cli points at the replica unless told otherwise."""
    cli = Cli.on_store(tmp_path_factory.mktemp("replica-cli"), pair.primary.url)
    valid = cli.document("keys", "create", "--name", "valid", "--owner", "team")
    revoked = cli.document("keys", "create", "--name", "revoked")
    assert cli("keys", "revoke", revoked["key_id"]).exit_code == 0
    token = cli.document("token", "mint", "--subject", "alice")["access_token"]
    assert cli("rate", "check", "alice", *NO_REFILL).exit_code == 0
    in_sync(pair)
    cli.env["MCPSEC_STORE_URL"] = pair.replica.url
    return Scene(cli, valid, revoked, token)


@pytest.mark.parametrize(
    "args",
    [
        ("keys", "create", "--name", "another"),
        ("keys", "revoke", "VALID"),
        ("keys", "revoke", "--owner", "team"),
        ("token", "revoke", "-"),
        ("token", "revoke", "--subject", "alice"),
        ("rate", "reset", "alice"),
    ],
    ids=" ".join,
)
def test_a_write_fails_saying_the_store_is_a_read_only_replica(
    scene: Scene, pair: Pair, args: tuple[str, ...]
) -> None:
    args = tuple(scene.valid["key_id"] if a == "VALID" else a for a in args)
    ran = scene.cli(*args, input=scene.token if "-" in args else None)
    line = assert_store_failure(ran, READ_ONLY, TO_PRIMARY, pair.replica.url)
    print(f"\n{' '.join(args)}: exit {ran.exit_code}: {line}")
    # Nothing changed: the primary still holds the key and the token valid.
    primary = {"MCPSEC_STORE_URL": pair.primary.url}
    assert (
        scene.cli("keys", "verify", "-", input=scene.valid["api_key"], env=primary).exit_code == 0
    )
    assert scene.cli("token", "verify", "-", input=scene.token, env=primary).exit_code == 0


def test_reads_still_work(scene: Scene) -> None:
    listed = scene.cli.document("keys", "list")
    assert {k["key_id"]: k["status"] for k in listed["keys"]} == {
        scene.valid["key_id"]: "active",
        scene.revoked["key_id"]: "revoked",
    }
    assert scene.cli.document("keys", "show", scene.valid["key_id"])["status"] == "active"
    assert scene.cli.document("rate", "show", "alice", *NO_REFILL)["tokens"] == 9
    tail = scene.cli("audit", "tail", "--json", "-n", "500")
    assert tail.exit_code == 0 and "key.created" in tail.stdout, tail
    token = scene.cli("token", "verify", "-", input=scene.token)
    assert (token.exit_code, token.stdout.split(":")[0]) == (0, "valid"), token


def test_a_revoked_key_is_refused_and_a_valid_one_is_never_called_valid(scene: Scene) -> None:
    revoked = scene.cli("keys", "verify", "-", input=scene.revoked["api_key"])
    assert (revoked.exit_code, revoked.stdout) == (1, "invalid: revoked\n"), revoked
    valid = scene.cli("keys", "verify", "-", input=scene.valid["api_key"])
    line = assert_store_failure(valid, READ_ONLY, TO_PRIMARY)
    print(f"\nkeys verify (valid key) on the replica: exit {valid.exit_code}: {line}")


def test_the_library_raises_the_read_only_error(scene: Scene, pair: Pair) -> None:
    """A server pointed at a replica by mistake refuses its callers; it never lets them in.
    The error keeps its family when the audit event is what the replica refused first, so
    a caller can still tell "read-only" from "unreachable"."""
    store = open_store(pair.replica.url)
    try:
        audit = AuditLog(store, scene.cli.env["MCPSEC_AUDIT_KEY"].encode())
        keys = ApiKeys(store, audit=audit)
        uses = keys.show(scene.valid["key_id"]).use_count
        with pytest.raises(StoreReadOnlyError, match=READ_ONLY):
            keys.verify(scene.valid["api_key"])
        with pytest.raises(StoreReadOnlyError, match=f"could not record key.created.*{READ_ONLY}"):
            keys.create("another")
        with pytest.raises(StoreReadOnlyError, match=f"could not record key.revoked.*{READ_ONLY}"):
            keys.revoke(scene.valid["key_id"])
        assert keys.show(scene.valid["key_id"]).use_count == uses
        audit.flush()
    finally:
        store.close()
