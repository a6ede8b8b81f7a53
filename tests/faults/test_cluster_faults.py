"""Fault 6: a Redis Cluster of 3 primaries and 3 replicas on loopback, started by this module.

A primary is killed (SIGKILL) while one thread verifies API keys and takes from rate-limit
buckets in every primary's slots, and the event loop does the same through the asyncio
client. Until the replica takes over, a call either answers correctly or raises a StoreError
(never "valid" for a revoked key, never another exception); after it, every slot works again
through the same store objects, with revocations holding and use counts still counting.
Then a slot holding a key is moved to another primary under a store that has the old slot
map cached: the ASK while it moves and the MOVED after it are followed.

Recovery times are printed (`pytest -s`), never asserted: deadlines only stop a hang.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest
from mcpsec.core.api_keys import ApiKeys, AsyncApiKeys, CreatedKey, Reason, Verdict
from mcpsec.core.errors import StoreError
from mcpsec.core.key_records import Status
from mcpsec.core.ratelimit import AsyncRateLimiter, Decision, Limit, RateLimiter, RatePolicy
from mcpsec.store import Store
from mcpsec.store.redis_store import RedisStore
from redis.crc import key_slot

from tests.support.cli import Cli, Ran, assert_store_failure
from tests.support.cluster_topology import (
    NodeLine,
    begin_migration,
    cluster_nodes,
    finish_migration,
    has_taken_over,
    keys_in_slot,
    migrate_keys,
    replica_of,
    slot_owner,
    wait_until_replicated,
)
from tests.support.redis_servers import RedisClusterProcs, require_binaries, start_redis_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NODE_TIMEOUT_MS = 1000  # cluster-node-timeout: a failover takes a few of these
TIMEOUT = 1.0  # the store timeout
DEADLINE = 60.0  # generous: only there so that a broken recovery cannot hang the run
ROOMY = Limit.of(1_000_000, 0)  # never runs out here: every answer must be "allowed"
TIGHT = Limit.of(2, 0)  # two takes, then denied for good (no refill)
T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcs]:
    """This module's own cluster: its tests kill a primary, which must poison no other test."""
    require_binaries("redis-server", "redis-cli")
    folder = tmp_path_factory.mktemp("cluster-faults")
    with start_redis_cluster(folder, replicas=1, node_timeout_ms=NODE_TIMEOUT_MS) as procs:
        yield procs


@pytest.fixture
def stores(cluster: RedisClusterProcs, stores: Callable[..., Store]) -> Callable[[], RedisStore]:
    """The conftest's `stores` (the test's prefix, all closed after it), on the cluster."""

    def open_one() -> RedisStore:
        store = stores(cluster.url, timeout=TIMEOUT)
        assert isinstance(store, RedisStore)
        return store

    return open_one


@pytest.fixture
def cli(tmp_path: Path, cluster: RedisClusterProcs, prefix: str) -> Callable[..., Ran]:
    """The real `mcpsec` command on the cluster, in an empty home, as a runbook runs it."""
    mcpsec = Cli(tmp_path, MCPSEC_STORE_PREFIX=prefix, MCPSEC_STORE_TIMEOUT="1s")
    return partial(mcpsec.process, "--store", cluster.url)


# -- what a correct answer is ---------------------------------------------------------------


@dataclass
class Tally:
    """Answers for one key or identity: those that count a use (or take a token), and the
    errors, each of which may or may not have counted (the reply could be what was lost)."""

    counted: int = 0
    errors: int = 0


@dataclass
class Ledger:
    """Every answer given while the cluster was broken, checked as it came."""

    keys: dict[str, Tally] = field(default_factory=dict)
    identities: dict[str, Tally] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def verdict(self, key: CreatedKey, revoked: bool, outcome: Verdict | BaseException) -> None:
        with self.lock:
            tally = self.keys.setdefault(key.key_id, Tally())
            if isinstance(outcome, BaseException):
                self._error(tally, outcome)
            elif revoked and (outcome.valid or outcome.reason is not Reason.REVOKED):
                self.problems.append(f"revoked key {key.key_id} answered {outcome}")
            elif not revoked and not outcome.valid:
                self.problems.append(f"active key {key.key_id} answered {outcome}")
            elif outcome.valid:
                tally.counted += 1

    def decision(self, identity: str, outcome: Decision | BaseException) -> None:
        with self.lock:
            tally = self.identities.setdefault(identity, Tally())
            if isinstance(outcome, BaseException):
                self._error(tally, outcome)
            elif outcome.store_unavailable:  # fail-closed: the store did not answer
                tally.errors += 1
                self.errors["rate decision: store_unavailable (fail-closed: denied)"] += 1
            elif not outcome.allowed:
                self.problems.append(f"identity {identity} was denied: {outcome}")
            else:
                tally.counted += 1

    def _error(self, tally: Tally, error: BaseException) -> None:
        text = str(error)
        if not isinstance(error, StoreError) or "\n" in text or "Traceback" in text:
            self.problems.append(f"{type(error).__name__}: {text!r}")
            return
        tally.errors += 1
        self.errors[f"{type(error).__name__}: {_shape(text)}"] += 1


def _shape(message: str) -> str:
    """A message without its ports, so that equal failures count as one kind."""
    return " ".join("<addr>" if "127.0.0.1:" in word else word for word in message.split())[:160]


@dataclass
class Population:
    """API keys (one active, one revoked) and identities (roomy and tight) in each
    primary's slots, by the id of the primary serving them when they were made."""

    active: dict[str, CreatedKey]
    revoked: dict[str, CreatedKey]
    roomy: dict[str, str]
    tight: dict[str, str]

    def pairs(self) -> list[tuple[CreatedKey, bool]]:
        return [(k, False) for k in self.active.values()] + [
            (k, True) for k in self.revoked.values()
        ]


def populate(keys: ApiKeys, nodes: Sequence[NodeLine], stem: str) -> Population:
    primaries = [n for n in nodes if n.is_primary]
    active: dict[str, CreatedKey] = {}
    revoked: dict[str, CreatedKey] = {}
    for _ in range(200):  # ids are random: a third land in each primary's slots
        if len(revoked) == len(primaries):
            break
        created = keys.create(f"{stem}-bot", roles=["user"])
        owner = slot_owner(nodes, slot_of(created.key_id)).id
        if owner not in active:
            active[owner] = created
        elif owner not in revoked:
            keys.revoke(created.key_id)
            revoked[owner] = created
    assert len(revoked) == len(primaries), "no key landed in some primary's slots"
    return Population(
        active,
        revoked,
        {n.id: identity_in(n, f"{stem}-roomy") for n in primaries},
        {n.id: identity_in(n, f"{stem}-tight") for n in primaries},
    )


def slot_of(name: str) -> int:
    """The cluster slot of a key, or of a hash tag's content (an API key id, an identity)."""
    return key_slot(name.encode())


def identity_in(node: NodeLine, stem: str) -> str:
    """An identity whose buckets (hash tag {identity}) live in the node's slots."""
    return next(f"{stem}-{i}" for i in range(100_000) if node.serves(slot_of(f"{stem}-{i}")))


def identity_at(slot: int, stem: str) -> str:
    """An identity whose buckets live in exactly this slot (about 16384 tries)."""
    return next(f"{stem}-{i}" for i in range(1_000_000) if slot_of(f"{stem}-{i}") == slot)


# -- the killed primary ----------------------------------------------------------------------


class Hammer(threading.Thread):
    """Verifies every key and takes from every roomy bucket, round after round, through
    one store object, recording each answer in the ledger, until stopped."""

    def __init__(self, keys: ApiKeys, limiter: RateLimiter, pop: Population, ledger: Ledger):
        super().__init__(daemon=True)
        self.keys, self.limiter, self.pop, self.ledger = keys, limiter, pop, ledger
        self.stopped = threading.Event()
        self.rounds = 0

    def run(self) -> None:
        while not self.stopped.is_set():
            for key, revoked in self.pop.pairs():
                self.ledger.verdict(key, revoked, _call(partial(self.keys.verify, key.api_key)))
            for identity in self.pop.roomy.values():
                decision = _call(partial(self.limiter.check, identity, limit=ROOMY))
                self.ledger.decision(identity, decision)
            self.rounds += 1
            time.sleep(0.01)


def _call(call: Callable[[], T]) -> T | BaseException:
    try:
        return call()
    except Exception as e:  # judged by the ledger: only StoreError is allowed
        return e


async def async_round(
    akeys: AsyncApiKeys, alimiter: AsyncRateLimiter, pop: Population, ledger: Ledger
) -> None:
    """One concurrent burst: every key verified and every roomy bucket taken from, at once,
    as a server's requests arrive."""
    pairs = pop.pairs()
    verdicts = await asyncio.gather(
        *(akeys.verify(k.api_key) for k, _ in pairs), return_exceptions=True
    )
    for (key, revoked), verdict in zip(pairs, verdicts, strict=True):
        ledger.verdict(key, revoked, verdict)
    identities = list(pop.roomy.values())
    decisions = await asyncio.gather(
        *(alimiter.check(i, limit=ROOMY) for i in identities), return_exceptions=True
    )
    for identity, decision in zip(identities, decisions, strict=True):
        ledger.decision(identity, decision)


def until_recovered(check: Callable[[], None]) -> tuple[float, int]:
    """Seconds until `check` passes, and how many StoreErrors it raised before that."""
    started, failures = time.monotonic(), 0
    while True:
        try:
            check()
        except StoreError:
            failures += 1
            assert time.monotonic() - started < DEADLINE, "no recovery after the takeover"
            time.sleep(0.02)
            continue
        return time.monotonic() - started, failures


def test_a_killed_primary_is_replaced_and_every_slot_answers_again(
    cluster: RedisClusterProcs, stores: Callable[[], RedisStore], cli: Callable[..., Ran]
) -> None:
    store = stores()
    keys, limiter = ApiKeys(store), RateLimiter(store, RatePolicy(fail_open=False))
    akeys, alimiter = AsyncApiKeys(keys), AsyncRateLimiter(limiter)
    nodes = cluster_nodes(next(n.port for n in cluster.nodes if n.running))
    pop = populate(keys, nodes, "fo")
    made = cli("keys", "create", "--name", "cli-bot", "--role", "user", "--quiet")
    assert made.exit_code == 0, made.stderr
    cli_key = made.stdout.strip()
    assert keys.verify(cli_key).valid  # what the command wrote, the library reads

    # The victim is the primary the client asks server-wide questions (TIME) of: the node
    # a store object that sat idle through the failover would still be stuck on.
    default = store.client.get_default_node()
    victim = next(n for n in nodes if n.port == default.port)
    replica = replica_of(nodes, victim.id)
    idle = stores()
    idle.client.set_default_node(idle.client.get_node(port=victim.port, host="127.0.0.1"))
    idle_keys = ApiKeys(idle)
    assert idle_keys.show(pop.active[victim.id].key_id).use_count == 0

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(async_round(akeys, alimiter, pop, Ledger()))  # connected
        before = {k.key_id: keys.show(k.key_id).use_count for k, _ in pop.pairs()}
        taken = {
            i: ROOMY.capacity - limiter.show(i, limit=ROOMY).tokens for i in pop.roomy.values()
        }
        for node in nodes:
            if node.is_primary:
                wait_until_replicated(node.port, replica_of(nodes, node.id).port)

        ledger = Ledger()
        hammer = Hammer(keys, limiter, pop, ledger)
        alive = [n.port for n in nodes if n.id != victim.id]
        next(n for n in cluster.nodes if n.port == victim.port).kill()
        killed = time.monotonic()
        hammer.start()
        during = [
            cli("keys", "verify", "-", input=pop.revoked[victim.id].api_key),
            cli("keys", "verify", "-", input=pop.active[victim.id].api_key),
        ]
        async_rounds = 0
        while not has_taken_over(alive, victim.id, replica.port):
            assert time.monotonic() - killed < DEADLINE, "the replica never took over"
            loop.run_until_complete(async_round(akeys, alimiter, pop, ledger))
            async_rounds += 1
            time.sleep(0.02)
        took_over = time.monotonic() - killed
        hammer.stopped.set()
        hammer.join(timeout=DEADLINE)
        assert not hammer.is_alive()

        assert ledger.problems == []
        assert ledger.errors, "the dead primary was never noticed"
        assert during[0].exit_code in (1, 5), during[0]
        assert during[1].exit_code in (0, 5), during[1]
        cli_lines = [assert_store_failure(ran) for ran in during if ran.exit_code == 5]

        # An idle store object, whose server-wide node (TIME: key show, create and revoke
        # ask it) is the dead primary: it answers at once, and its keyed calls follow.
        other = next(k for owner, k in pop.active.items() if owner != victim.id)
        idle_started = time.monotonic()
        assert idle_keys.show(other.key_id).status is Status.ACTIVE
        assert idle_keys.show(pop.active[victim.id].key_id).status is Status.ACTIVE
        assert idle_keys.create("after-bot").key_id
        idle_recovery = time.monotonic() - idle_started

        def verify_victim_keys() -> None:
            assert keys.verify(pop.active[victim.id].api_key).valid
            assert keys.verify(pop.revoked[victim.id].api_key).reason is Reason.REVOKED

        sync_recovery = until_recovered(verify_victim_keys)

        def verify_victim_keys_async() -> None:
            verdict = loop.run_until_complete(akeys.verify(pop.active[victim.id].api_key))
            assert verdict.valid

        async_recovery = until_recovered(verify_victim_keys_async)

        # Recovered: now every slot must answer, first time, through the same objects.
        after = Ledger()
        for _ in range(3):
            for key, revoked in pop.pairs():
                after.verdict(key, revoked, _call(partial(keys.verify, key.api_key)))
            for identity in pop.roomy.values():
                after.decision(identity, _call(partial(limiter.check, identity, limit=ROOMY)))
            loop.run_until_complete(async_round(akeys, alimiter, pop, after))
        assert after.problems == [] and not after.errors, (after.problems, after.errors)
        for identity in pop.tight.values():  # in every slot range: two takes, then denied
            answers = [limiter.check(identity, limit=TIGHT) for _ in range(3)]
            assert [d.allowed for d in answers] == [True, True, False], answers
            assert [d.remaining for d in answers] == [1, 0, 0]
            assert answers[2].retry_after is None  # no refill: never
        denied = loop.run_until_complete(alimiter.check(pop.tight[victim.id], limit=TIGHT))
        assert not denied.allowed and not denied.store_unavailable

        # Use counts kept counting: every counted answer is there, and at most the errors'
        # calls more (an error may hide a call that ran); nothing acknowledged was lost.
        for key, _ in pop.pairs():
            count = keys.show(key.key_id).use_count
            outage = ledger.keys.get(key.key_id, Tally())
            low = before[key.key_id] + outage.counted + after.keys[key.key_id].counted
            assert low <= count <= low + outage.errors, key.key_id
        for identity in pop.roomy.values():
            used = ROOMY.capacity - limiter.show(identity, limit=ROOMY).tokens
            outage = ledger.identities.get(identity, Tally())
            least = taken[identity] + outage.counted + after.identities[identity].counted
            assert least <= used <= least + outage.errors, identity

        # A change through the same objects after the failover, and a new process reading it.
        revoked_now = pop.active[victim.id]
        assert keys.revoke(revoked_now.key_id).status is Status.REVOKED
        assert keys.verify(revoked_now.api_key).reason is Reason.REVOKED
        verdict = loop.run_until_complete(akeys.verify(revoked_now.api_key))
        assert verdict.reason is Reason.REVOKED
        checked = cli("keys", "verify", "-", input=revoked_now.api_key)
        assert checked.exit_code == 1, checked
        assert cli("keys", "verify", "-", input=cli_key).exit_code == 0
        assert cli("keys", "revoke", other.key_id).exit_code == 0
        assert keys.verify(other.api_key).reason is Reason.REVOKED
        loop.run_until_complete(akeys.aclose())
    finally:
        loop.close()

    print(
        f"\ncluster failover: replica {replica.port} took over from {victim.port} "
        f"{took_over:.2f} s after the kill; meanwhile {hammer.rounds} sync and "
        f"{async_rounds} async rounds, errors: {dict(ledger.errors)}; CLI during the "
        f"outage: exit {[r.exit_code for r in during]} {cli_lines}\n"
        f"after the takeover: an idle store answered in {idle_recovery:.3f} s; sync verify "
        f"recovered in {sync_recovery[0]:.3f} s after {sync_recovery[1]} unavailable "
        f"answer(s), async in {async_recovery[0]:.3f} s after {async_recovery[1]}"
    )


# -- a slot moved under a cached slot map -----------------------------------------------------


def test_a_slot_moved_under_a_cached_map_is_followed(
    cluster: RedisClusterProcs, stores: Callable[[], RedisStore], prefix: str
) -> None:
    store = stores()
    keys, limiter = ApiKeys(store), RateLimiter(store, RatePolicy(fail_open=False))
    akeys, alimiter = AsyncApiKeys(keys), AsyncRateLimiter(limiter)
    created = keys.create("moving-bot", roles=["user"])
    record_key = f"{prefix}key:{{{created.key_id}}}"
    slot = slot_of(created.key_id)
    nodes = cluster_nodes(next(n.port for n in cluster.nodes if n.running))
    source = slot_owner(nodes, slot)
    target = next(n for n in nodes if n.is_primary and n.id != source.id)
    identity = identity_at(slot, "moving")  # its buckets in the very slot that moves
    loop = asyncio.new_event_loop()

    def every_path(label: str, ledger: Ledger) -> None:
        """Verify and take through the sync and the asyncio client, each answer judged."""
        ledger.verdict(created, False, _call(lambda: keys.verify(created.api_key)))
        ledger.decision(identity, _call(lambda: limiter.check(identity, limit=ROOMY)))
        verdict: Verdict | BaseException = _call(
            lambda: loop.run_until_complete(akeys.verify(created.api_key))
        )
        ledger.verdict(created, False, verdict)
        decision: Decision | BaseException = _call(
            lambda: loop.run_until_complete(alimiter.check(identity, limit=ROOMY))
        )
        ledger.decision(identity, decision)
        assert ledger.problems == [], (label, ledger.problems)

    try:
        warm = Ledger()
        every_path("warm", warm)  # both clients now hold the slot map naming the source
        assert not warm.errors
        assert store.client.get_node_from_key(record_key).port == source.port

        begin_migration(slot, source, target)
        moving = Ledger()
        every_path("migrating, nothing moved yet", moving)
        migrate_keys(source, target, [record_key])
        every_path("the key moved: ASK", moving)
        rest = keys_in_slot(source.port, slot)  # the bucket, and any other test's keys
        if rest:
            migrate_keys(source, target, rest)
        every_path("everything moved: ASK", moving)
        finish_migration(slot, target, [n.port for n in nodes if n.is_primary])
        assert store.client.get_node_from_key(record_key).port == source.port  # stale map

        moved = Ledger()
        every_path("moved: MOVED", moved)
        assert not moved.errors, moved.errors  # MOVED is followed, "no retries" or not
        assert store.client.get_node_from_key(record_key).port == target.port
        assert moving.keys[created.key_id].errors == 0  # single-key scripts follow ASK

        revoked = keys.revoke(created.key_id)  # a write, after the move
        assert revoked.status is Status.REVOKED
        assert keys.verify(created.api_key).reason is Reason.REVOKED
        verdict = loop.run_until_complete(akeys.verify(created.api_key))
        assert verdict.reason is Reason.REVOKED
        uses = sum(ledger.keys[created.key_id].counted for ledger in (warm, moving, moved))
        takes = sum(ledger.identities[identity].counted for ledger in (warm, moving, moved))
        assert keys.show(created.key_id).use_count == uses
        used = ROOMY.capacity - limiter.show(identity, limit=ROOMY).tokens
        errors = moving.identities[identity].errors
        assert takes <= used <= takes + errors
        loop.run_until_complete(akeys.aclose())
    finally:
        loop.close()

    print(
        f"\nslot {slot} moved from {source.port} to {target.port}: key verifications "
        f"followed ASK and MOVED with no error; rate decisions while the slot was migrating: "
        f"{moving.identities[identity].counted} answered, "
        f"{moving.identities[identity].errors} unavailable ({dict(moving.errors)}); "
        f"after the move: all answered"
    )
