"""What a local Redis Cluster looks like right now, and the operator moves fault tests make.

    nodes = cluster_nodes(port)                              # CLUSTER NODES, parsed
    owner = slot_owner(nodes, slot)                          # the primary serving a slot
    wait_until_replicated(owner.port, replica_of(nodes, owner.id).port)
    has_taken_over(alive, dead_id, replica_port)             # after a kill: served again?
    begin_migration(slot, source, target)                    # IMPORTING, then MIGRATING
    migrate_keys(source, target, keys_in_slot(source.port, slot))
    finish_migration(slot, target, primary_ports)            # SETSLOT NODE: MOVED from now

Everything here talks to the nodes over plain RESP (tests.support.redis_servers.command) or a
plain client per node, never through the cluster client under test: a test must see the
cluster as it is, not as the client believes it is.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from tests.support.redis_servers import command


@dataclass(frozen=True)
class NodeLine:
    """One line of CLUSTER NODES: who a node is, what it serves, whom it replicates."""

    id: str
    port: int
    flags: frozenset[str]
    primary_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags and "fail" not in self.flags

    def serves(self, slot: int) -> bool:
        return any(low <= slot <= high for low, high in self.slots)


def cluster_nodes(port: int) -> list[NodeLine]:
    """The cluster as the node on `port` sees it."""
    return [_node_line(line) for line in command(port, "CLUSTER", "NODES").splitlines() if line]


def _node_line(line: str) -> NodeLine:
    fields = line.split()
    address = fields[1].split("@", 1)[0]
    ranges = []
    for part in fields[8:]:
        if part.startswith("["):  # a slot being imported or migrated: not served yet
            continue
        low, _, high = part.partition("-")
        ranges.append((int(low), int(high or low)))
    return NodeLine(
        fields[0],
        int(address.rsplit(":", 1)[1]),
        frozenset(fields[2].split(",")),
        None if fields[3] == "-" else fields[3],
        tuple(ranges),
    )


def slot_owner(nodes: Sequence[NodeLine], slot: int) -> NodeLine:
    return next(n for n in nodes if n.is_primary and n.serves(slot))


def replica_of(nodes: Sequence[NodeLine], primary_id: str) -> NodeLine:
    return next(n for n in nodes if n.primary_id == primary_id and "fail" not in n.flags)


def _cluster_ok(port: int) -> bool:
    try:
        return "cluster_state:ok" in command(port, "CLUSTER", "INFO")
    except (OSError, RuntimeError):
        return False


def _is_primary(port: int) -> bool:
    try:
        return "role:master" in command(port, "INFO", "replication")
    except (OSError, RuntimeError):
        return False


def has_taken_over(alive: Sequence[int], dead_id: str, replica_port: int) -> bool:
    """Whether the replica of the dead primary says it is a primary, every live node says
    `cluster_state:ok`, and none names the dead node as serving any slot.

    `cluster_state:ok` alone is not enough: right after a kill, before the node timeout
    passes, the nodes still say ok and still send the dead node's slots to it.
    """
    if not (_is_primary(replica_port) and all(_cluster_ok(port) for port in alive)):
        return False
    views = [cluster_nodes(port) for port in alive]
    return not any(n.id == dead_id and n.slots for view in views for n in view)


def begin_migration(slot: int, source: NodeLine, target: NodeLine) -> None:
    """The first two steps of moving a slot (the order redis-cli uses): the target imports,
    then the source migrates; from now on the source answers ASK for keys it no longer has."""
    command(target.port, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source.id)
    command(source.port, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target.id)


def migrate_keys(source: NodeLine, target: NodeLine, keys: Sequence[str]) -> None:
    """MIGRATE the given keys (all in the migrating slot) from source to target."""
    with redis.Redis(port=source.port, decode_responses=True, socket_timeout=5) as client:
        client.execute_command(
            "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "REPLACE", "KEYS", *keys
        )


def finish_migration(slot: int, target: NodeLine, primaries: Sequence[int]) -> None:
    """Assign the slot to the target on every primary (target first, as redis-cli does;
    replicas refuse SETSLOT and learn it by gossip); from now on the source answers MOVED."""
    for port in sorted(primaries, key=lambda p: p != target.port):
        command(port, "CLUSTER", "SETSLOT", str(slot), "NODE", target.id)


def wait_until_replicated(primary: int, replica: int, *, timeout: float = 10.0) -> None:
    """Until the replica has applied everything the primary had written when asked: what
    was acknowledged before a kill must be there after the failover (replication is async)."""
    target = _offset(primary, "master_repl_offset")
    deadline = time.monotonic() + timeout
    while _offset(replica, "slave_repl_offset") < target:
        if time.monotonic() > deadline:
            raise AssertionError(f"replica {replica} did not catch up with primary {primary}")
        time.sleep(0.02)


def _offset(port: int, name: str) -> int:
    for line in command(port, "INFO", "replication").splitlines():
        if line.startswith(name + ":"):
            return int(line.partition(":")[2])
    return -1


def keys_in_slot(port: int, slot: int) -> list[str]:
    with redis.Redis(port=port, decode_responses=True, socket_timeout=5) as client:
        found: list[str] = client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
    return found
