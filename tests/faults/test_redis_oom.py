"""Fault 4: `maxmemory` reached, with `noeviction` (the policy mcpsec needs).

A create or a revocation fails cleanly, exit 5, in one line that names the memory, and
leaves nothing half-written: no key record that nobody holds, no revocation that half holds.
Freed memory, the same commands succeed.

Why no Lua script can half-apply: Redis decides "out of memory" once, when a script starts,
and refuses only the script's first write; once a script has written, its later writes run
too (Redis cannot stop a script in the middle, and does not roll one back). So each script is
all or nothing. What can half-apply is a change made of two scripts: a record and its index
entry live in different slots, and the memory may run out between the two. The tests below
put the limit exactly there, with a real server, by lowering `maxmemory` between two calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from mcpsec.core.api_keys import ApiKeys
from mcpsec.core.audit import AuditLog
from mcpsec.core.errors import StoreError
from mcpsec.core.key_records import OWNER_KIND
from mcpsec.store import KEY_KIND, Store
from mcpsec.store.redis_store import RedisStore

from tests.support.cli import AUDIT_KEY, Cli, assert_store_failure
from tests.support.redis_servers import (
    RedisServer,
    command,
    require_binaries,
    start_redis_server,
)

pytestmark = pytest.mark.redis_server

OUT_OF_MEMORY = "is out of memory and refused a write"
WHAT_TO_DO = "raise maxmemory or free space"
BALLAST = 2_000_000  # bytes of junk under another prefix, freed to end the fault
OVER = 500_000  # bytes the limit is set below the memory in use (a safe margin)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require_binaries("redis-server")
    folder = tmp_path_factory.mktemp("redis-oom")
    with start_redis_server(folder, "--maxmemory-policy", "noeviction") as started:
        yield started


def used_memory(server: RedisServer) -> int:
    info = command(server.port, "INFO", "memory")
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return int(fields["used_memory"])


@contextmanager
def memory_full(server: RedisServer) -> Iterator[None]:
    """Junk under another prefix fills the server past a limit just below its use; freeing
    the junk (DEL works at the limit) ends the fault, as an operator would."""
    command(server.port, "SET", "junk:ballast", "x" * BALLAST)
    command(server.port, "CONFIG", "SET", "maxmemory", str(used_memory(server) - OVER))
    try:
        yield
    finally:
        command(server.port, "DEL", "junk:ballast")
        command(server.port, "CONFIG", "SET", "maxmemory", "0")


def test_writes_fail_in_one_line_and_nothing_half_written_stays(
    server: RedisServer, tmp_path: Path
) -> None:
    cli = Cli.on_store(tmp_path, server.url, MCPSEC_STORE_PREFIX="oom-cli:")
    valid = cli.document("keys", "create", "--name", "valid", "--owner", "team")
    token = cli.document("token", "mint", "--subject", "alice")["access_token"]
    with memory_full(server):
        for args, secret in [
            (("keys", "create", "--name", "late", "--owner", "team"), None),
            (("keys", "revoke", valid["key_id"]), None),
            (("token", "revoke", "-"), token),
            (("rate", "reset", "alice"), None),
        ]:
            ran = cli(*args, input=secret)
            line = assert_store_failure(ran, OUT_OF_MEMORY, WHAT_TO_DO)
            print(f"\n{' '.join(args)}: exit {ran.exit_code}: {line}")
        # Reads still answer: no key was added, the key is still active, the token valid.
        listed = cli.document("keys", "list")["keys"]
        assert [k["key_id"] for k in listed] == [valid["key_id"]]
        assert [k["status"] for k in listed] == ["active"]
        assert cli("token", "verify", "-", input=token).exit_code == 0
        # Verifying a valid key counts its use: refused, never "valid" without the count.
        counted = cli("keys", "verify", "-", input=valid["api_key"])
        print(f"keys verify (valid key): {assert_store_failure(counted, OUT_OF_MEMORY)}")
    assert cli("keys", "verify", "-", input=valid["api_key"]).exit_code == 0
    # Memory freed: the same commands go through, and the revocations hold.
    late = cli.document("keys", "create", "--name", "late", "--owner", "team")
    assert cli("keys", "revoke", valid["key_id"]).exit_code == 0
    assert cli("token", "revoke", "-", input=token).exit_code == 0
    assert cli("keys", "verify", "-", input=valid["api_key"]).stdout == "invalid: revoked\n"
    assert cli("token", "verify", "-", input=token).stdout.startswith("invalid: revoked")
    assert cli("keys", "verify", "-", input=late["api_key"]).exit_code == 0


def fill_after(store: RedisStore, server: RedisServer, script: str, key_part: str) -> None:
    """Fault injection, once: the server reaches maxmemory right after `script` ran on a key
    holding `key_part`, before the next call, as another writer filling it would make it."""
    run = store._run

    def then_full(name: str, keys: Any, *args: Any, **options: Any) -> Any:
        reply = run(name, keys, *args, **options)
        if name == script and key_part in keys[0]:
            store._run = run  # type: ignore[method-assign]
            command(server.port, "CONFIG", "SET", "maxmemory", "1")
        return reply

    store._run = then_full  # type: ignore[method-assign]


@pytest.fixture
def store(server: RedisServer, stores: Callable[..., Store]) -> Iterator[RedisStore]:
    """A store under the test's own prefix; the memory limit lifted again after the test."""
    opened = stores(server.url)
    assert isinstance(opened, RedisStore)
    try:
        yield opened
    finally:
        command(server.port, "CONFIG", "SET", "maxmemory", "0")


def records(server: RedisServer, store: RedisStore, kind: str) -> list[str]:
    """The ids of every record of a kind in Redis itself, listed or not."""
    with redis.Redis(port=server.port, decode_responses=True) as client:
        found = client.scan_iter(match=f"{store.prefix}{kind}:*")
        return sorted(name.split(":{", 1)[1].rstrip("}") for name in found)


@pytest.mark.parametrize(
    ("script", "key_part"),
    [
        pytest.param("record_put", f":{KEY_KIND}:{{", id="after-the-key-record"),
        pytest.param("index_add", f":_idx:{{{OWNER_KIND}}}", id="after-the-owner-entry"),
    ],
)
def test_a_create_that_runs_out_of_memory_midway_leaves_no_key_behind(
    server: RedisServer, store: RedisStore, script: str, key_part: str
) -> None:
    """The key record written, then its index entry refused (or the owner's entry written,
    then the key refused): the create fails and takes back what it wrote, so no key is
    left that nobody holds and `keys list` cannot show."""
    keys = ApiKeys(store)
    kept = keys.create("kept", owner="team")
    fill_after(store, server, script, key_part)
    with pytest.raises(StoreError, match=OUT_OF_MEMORY):
        keys.create("late", owner="team")
    assert records(server, store, KEY_KIND) == [kept.key_id]
    assert records(server, store, OWNER_KIND) == [f"team:{kept.key_id}"]
    command(server.port, "CONFIG", "SET", "maxmemory", "0")
    assert [k.key_id for k in keys.list().keys] == [kept.key_id]
    assert [k.key_id for k in keys.list(owner="team").keys] == [kept.key_id]


@pytest.mark.parametrize(
    ("script", "holds"), [("log_append_after", False), ("record_update", True)]
)
def test_a_revocation_that_runs_out_of_memory_either_holds_or_fails(
    server: RedisServer, store: RedisStore, script: str, holds: bool
) -> None:
    """Memory gone after the audit event (the revocation refused: the command fails, the
    key stays valid) or after the revocation itself (it holds, and the command says so)."""
    audit = AuditLog(store, AUDIT_KEY.encode())
    keys = ApiKeys(store, audit=audit)
    key = keys.create("bot")
    fill_after(store, server, script, ":_log:{" if script == "log_append_after" else ":key:{")
    try:
        keys.revoke(key.key_id)
        failed = False
    except StoreError as e:
        assert OUT_OF_MEMORY in str(e)
        failed = True
    command(server.port, "CONFIG", "SET", "maxmemory", "0")
    audit.flush()
    verdict = keys.verify(key.api_key)
    assert (failed, verdict.valid) == (not holds, not holds), verdict
