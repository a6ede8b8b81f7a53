"""Redis backends, standalone, Sentinel and Cluster: one class, since scripts route by their
keys (redis_sentinel.py builds the client that finds a Sentinel service's primary).

    store = RedisStore.from_url(parse_store_url("redis://localhost:6379/0"), prefix="mcpsec:")

Key layout (every key of one entity shares a hash tag, so each script touches one slot;
kinds start with a letter, so the `_` families can never collide with a record kind):

    <prefix><kind>:{<id>}      a record: hash of field -> canonical JSON, plus `__exp`
    <prefix>_idx:{<kind>}      ids of a kind, a sorted set ordered by id (cursor listing)
    <prefix>_exp:{<kind>}      the same ids scored by expiry: hints for sweeping the index
    <prefix>_ver:{<kind>}      id -> version of its last registration in the index
    <prefix>_seq:{<kind>}      the kind's registration counter
    <prefix>_log:{<stream>}    a stream; each entry holds one field `d`, the JSON body
    <prefix>_rl:{<group>}:<name>
                               a token bucket: "<state> <capacity> <refill>" (bucket_take.lua)
    <prefix>_rli               "<group> <name>" of buckets that may not be full: listing
    <prefix>_mark:{<group>}:<name>
                               a mark: a number with an expiry (token revocations)
    <prefix>_doctor:{probe}    `doctor`'s ACL probe key (see redis_facts); holds nothing

A record and its index entry live in different slots, so they cannot change in one step.
Writers write the record, then register it (a new version); whoever finds a record gone
reads the version first and forgets the entry only if no registration came in between.
So a live record is never dropped from the index, and dead entries are swept as found.

Every read-modify-write is a Lua script with the server's `TIME`. The client never retries:
a script that timed out may have run, and running it twice would count twice. With
`wait_replicas`, each change of a record or a mark is followed by WAIT on its connection.
"""

from __future__ import annotations

import asyncio
import builtins
import re
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any, Final

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import SentinelConnectionPool

from mcpsec.core.durations import check_lifetime
from mcpsec.core.errors import ConfigError, InvalidInputError, StoreError
from mcpsec.store import codec
from mcpsec.store.interface import (
    KEEP_TTL,
    KEY_GRANT_FIELDS,
    KEY_KIND,
    BucketEntry,
    BucketLevel,
    BucketPage,
    BucketReply,
    BucketRequest,
    ChainedAppend,
    JSONValue,
    KeyOutcome,
    KeyTouch,
    LogEntry,
    Page,
    Record,
    StoreInfo,
    UpdateResult,
    UpdateStatus,
    _Keep,
    bucket_level,
    check_batch,
    check_buckets,
    check_fields,
    check_id,
    check_kind,
    check_limit,
    check_mark,
    check_prefix,
    check_retention,
    check_update,
)
from mcpsec.store.redis_async import AsyncTransport, open_async_client
from mcpsec.store.redis_direct import DirectCalls
from mcpsec.store.redis_errors import translate
from mcpsec.store.redis_facts import server_facts
from mcpsec.store.redis_options import RedisOptions, apply_options
from mcpsec.store.redis_sentinel import sentinel_client
from mcpsec.store.url import StoreUrl, redact_url

EXPIRY_FIELD: Final = "__exp"
_HEX: Final = re.compile(r"[0-9a-f]{1,128}")
LOG_FIELD: Final = "d"
SWEEP_PER_WRITE: Final = 20
_SCRIPTS: Final = (
    "record_put",
    "record_update",
    "index_add",
    "index_forget",
    "index_page",
    "key_touch",
    "mark_set",
    "marks_get",
    "bucket_take",
    "log_append_after",
)
MAX_CALLS: Final = 4096  # bucket calls kept built (see _bucket_call); dropped all when full
BUCKET_INDEX: Final = "_rli"  # sorted set of "<group> <name>" for every bucket not yet full

Client = redis.Redis | RedisCluster


class RedisStore:
    """Store on a Redis server, Sentinel service or cluster; safe to share between threads
    (pooled connections)."""

    def __init__(
        self,
        client: Any,
        *,
        url: str,
        prefix: str = "mcpsec:",
        timeout: float = 2.0,
        backend: str = "redis",
        async_opener: Callable[[], Any] | None = None,
        async_batching: bool = True,
        wait_replicas: int = 0,
    ) -> None:
        """`async_opener` makes an asyncio client for the async reads; without one (a client
        given directly, as in tests), they run the blocking client in a worker thread.
        `wait_replicas`: how many replicas must acknowledge each change of a record or a
        mark before it counts as made (see `_acknowledged`); 0 waits for none."""
        self.client = client
        self.url = url
        self.prefix = check_prefix(prefix)
        self.timeout = timeout
        self.backend = backend
        cluster = isinstance(client, RedisCluster)
        self.wait_replicas = _wait_replicas(wait_replicas, cluster, redact_url(url))
        self._scripts = {name: client.register_script(_source(name)) for name in _SCRIPTS}
        # A cluster routes each call by its keys through the client; a server is called direct.
        # Not a Sentinel pool's: its connections find the primary only when the pool connects
        # them, so a held one would go to localhost:6379, or to the old primary after a failover.
        direct = isinstance(client, redis.Redis) and not isinstance(
            client.connection_pool, SentinelConnectionPool
        )
        self._direct = DirectCalls(client.connection_pool) if direct else None
        self._calls: dict[Hashable, tuple[builtins.list[str], builtins.list[str]]] = {}
        self._async = (
            AsyncTransport(
                async_opener,
                {n: (s.sha, s.script) for n, s in self._scripts.items()},
                batching=async_batching,
            )
            if async_opener
            else None
        )

    @classmethod
    def from_url(
        cls,
        url: StoreUrl,
        *,
        prefix: str,
        timeout: float,
        options: RedisOptions | None = None,
        wait_replicas: int = 0,
    ) -> RedisStore:
        """A client with explicit timeouts and no retries, so a dead server fails fast, once;
        `options` (TLS files, credentials) apply alike to every flavour and to the async client."""
        # A setting the backend cannot honour is a config problem, told before any connect.
        _wait_replicas(wait_replicas, url.backend == "redis-cluster", url.redacted)
        url, extra = apply_options(url, options or RedisOptions())
        common: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
            "decode_responses": True,
            **extra,
        }
        client: Client
        try:
            if url.backend == "redis-cluster":
                client = RedisCluster(startup_nodes=_nodes(url), ssl=url.tls, **common)
            elif url.backend == "redis-sentinel":
                client = sentinel_client(url, common)
            else:
                client = redis.Redis.from_url(url.url, **common)
        except (redis.RedisError, RedisClusterException) as e:
            raise translate(e, url.redacted) from e
        except (ValueError, TypeError):
            # redis-py's message can quote part of the URL, password included: say it ourselves.
            raise ConfigError(
                f"store URL {url.redacted} cannot be parsed",
                hint="check the host and port, and percent-encode special characters "
                "in the user name and password",
            ) from None
        return cls(
            client,
            url=url.url,
            prefix=prefix,
            timeout=timeout,
            backend=url.backend,
            async_opener=lambda: open_async_client(url, timeout, extra),
            async_batching=url.backend != "redis-cluster",  # cluster pipelines refuse scripts
            wait_replicas=wait_replicas,
        )

    # -- records ---------------------------------------------------------------------------

    def put(
        self,
        kind: str,
        id: str,
        fields: Mapping[str, JSONValue],
        *,
        ttl: float | None = None,
        only_if_absent: bool = False,
    ) -> bool:
        check_kind(kind)
        check_id(id)
        check_fields(fields)
        check_lifetime(ttl)
        pairs = [item for pair in codec.encode_fields(fields).items() for item in pair]
        ttl_ms = _milliseconds(ttl) if ttl else ""
        with self._errors():
            written, expires_ms = self._run(
                "record_put",
                [self._record_key(kind, id)],
                "1" if only_if_absent else "0",
                ttl_ms,
                *pairs,
            )
            # Also when not written: the record may be ours from a try whose reply was lost.
            self._register(kind, id, int(expires_ms))
        return bool(written)

    def get(self, kind: str, id: str) -> Record | None:
        check_kind(kind)
        check_id(id)
        with self._errors():
            raw = self.client.hgetall(self._record_key(kind, id))
        return _record(kind, id, raw) if raw else None

    def get_many(self, kind: str, ids: Sequence[str]) -> builtins.list[Record | None]:
        check_kind(kind)
        for id in ids:
            check_id(id)
        with self._errors():
            raws = self._read_records(kind, ids)
        return [_record(kind, id, raw) if raw else None for id, raw in zip(ids, raws, strict=True)]

    def touch_key(self, key_id: str, secret_hash: str, accepted: Sequence[str] = ()) -> KeyTouch:
        key, args = self._touch_call(key_id, secret_hash, accepted)
        with self._errors():
            reply = self._run("key_touch", [key], *args)
        return _key_touch(reply)

    def _touch_call(
        self, key_id: str, secret_hash: str, accepted: Sequence[str]
    ) -> tuple[str, tuple[str, str]]:
        """The key and arguments of the key_touch script, checked: one place for both paths."""
        check_id(key_id)
        tokens = " ".join(_token(t) for t in accepted)
        return self._record_key(KEY_KIND, key_id), (f'"{_hex(secret_hash)}"', tokens)

    async def touch_key_async(
        self, key_id: str, secret_hash: str, accepted: Sequence[str] = ()
    ) -> KeyTouch:
        if self._async is None:
            return await asyncio.to_thread(self.touch_key, key_id, secret_hash, accepted)
        key, args = self._touch_call(key_id, secret_hash, accepted)
        with self._errors():
            reply = await self._async.run_batched("key_touch", [key], *args)
        return _key_touch(reply)

    def set_mark(self, group: str, name: str, value: float, *, ttl: float) -> float:
        check_mark(group, [name], value)
        check_lifetime(ttl)
        with self._errors():
            held = self._write(
                "mark_set", [self._mark_key(group, name)], repr(float(value)), _milliseconds(ttl)
            )
        return float(held)

    def get_marks(self, group: str, names: Sequence[str]) -> builtins.list[float | None]:
        check_mark(group, names)
        with self._errors():
            values = self._run("marks_get", [self._mark_key(group, n) for n in names])
        return [float(v) if v is not None else None for v in values]

    async def get_marks_async(
        self, group: str, names: Sequence[str]
    ) -> builtins.list[float | None]:
        if self._async is None:
            return await asyncio.to_thread(self.get_marks, group, names)
        check_mark(group, names)
        with self._errors():
            keys = [self._mark_key(group, n) for n in names]
            values = await self._async.run_batched("marks_get", keys)
        return [float(v) if v is not None else None for v in values]

    def take_buckets(
        self,
        group: str,
        requests: Sequence[BucketRequest],
        *,
        consume: bool = True,
        override_kind: str | None = None,
    ) -> BucketReply:
        memo = (group, tuple(requests), consume, override_kind)
        keys, args = self._bucket_call(memo, group, requests, consume, override_kind)
        with self._errors():
            reply = self._run("bucket_take", keys, *args, memo=memo)
            taken = _bucket_reply(requests, reply)
            if consume:
                self._index_buckets(group, taken)
        return taken

    async def take_buckets_async(
        self,
        group: str,
        requests: Sequence[BucketRequest],
        *,
        consume: bool = True,
        override_kind: str | None = None,
    ) -> BucketReply:
        if self._async is None:
            return await asyncio.to_thread(
                self.take_buckets, group, requests, consume=consume, override_kind=override_kind
            )
        memo = (group, tuple(requests), consume, override_kind)
        keys, args = self._bucket_call(memo, group, requests, consume, override_kind)
        with self._errors():
            taken = _bucket_reply(
                requests, await self._async.run_batched("bucket_take", keys, *args)
            )
            if consume and any(not lv.existed for lv in taken.levels):
                await asyncio.to_thread(self._index_buckets, group, taken)
        return taken

    def _bucket_call(
        self,
        memo: Hashable,
        group: str,
        requests: Sequence[BucketRequest],
        consume: bool,
        override_kind: str | None,
    ) -> tuple[builtins.list[str], builtins.list[str]]:
        """The script's keys and arguments, checked and built once per distinct call (a
        server decides for the same identities and limits over and over)."""
        found = self._calls.get(memo)
        if found is not None:
            return found
        check_buckets(group, requests)
        override = (
            self._record_key(check_kind(override_kind), group)
            if override_kind
            else self._bucket_key(group, None)  # never a key: nothing overrides
        )
        args = ["take" if consume else "peek"]
        for r in requests:
            args += [repr(float(r.capacity)), repr(float(r.refill)), repr(float(r.cost))]
            args.append("1" if r.overridable else "0")
        built = [override, *(self._bucket_key(group, r.name) for r in requests)], args
        if len(self._calls) >= MAX_CALLS:
            self._calls.clear()
        self._calls[memo] = built
        return built

    def _index_buckets(self, group: str, taken: BucketReply) -> None:
        """List the buckets this take created (they were full, so absent, before)."""
        created = [lv.name for lv in taken.levels if not lv.existed]
        if taken.allowed and created:
            members = {f"{group} {name}": 0 for name in created}
            self.client.zadd(self.prefix + BUCKET_INDEX, members, nx=True)

    def reset_buckets(self, group: str, names: Sequence[str] | None = None) -> int:
        check_id(group, "bucket group")
        with self._errors():
            if names is None:
                # Members are "<group> <name>"; "!" follows " ", and a group has no spaces.
                start, end = f"[{group} ", f"({group}!"
                members = self.client.zrangebylex(self.prefix + BUCKET_INDEX, start, end)
                names = [m.split(" ", 1)[1] for m in members]
            for name in names:
                check_id(name, "bucket name")
            if not names:
                return 0
            removed = int(self.client.delete(*(self._bucket_key(group, n) for n in names)))
            self.client.zrem(self.prefix + BUCKET_INDEX, *(f"{group} {n}" for n in names))
        return removed

    def list_buckets(self, *, cursor: str | None = None, limit: int = 100) -> BucketPage:
        check_limit(limit)
        start = f"({cursor}" if cursor else "-"
        with self._errors():
            members = self.client.zrangebylex(self.prefix + BUCKET_INDEX, start, "+", 0, limit)
            pairs = [m.split(" ", 1) for m in members]
            pipe = self.client.pipeline(transaction=False)
            for group, name in pairs:
                pipe.get(self._bucket_key(group, name))
            raws = pipe.execute() if pairs else []
            now = self.now()
            gone = [m for m, raw in zip(members, raws, strict=True) if not raw]
            if gone:  # expired when full: forget them
                self.client.zrem(self.prefix + BUCKET_INDEX, *gone)
        seen = [
            (group, _stored_level(name, raw, now))
            for (group, name), raw in zip(pairs, raws, strict=True)
            if raw
        ]
        entries = [BucketEntry(group, level) for group, level in seen if level is not None]
        return BucketPage(tuple(entries), members[-1] if len(members) == limit else None)

    def delete(self, kind: str, id: str) -> bool:
        check_kind(kind)
        check_id(id)
        with self._errors():
            version = self.client.hget(self._index_keys(kind)[2], id)  # before the record goes
            key = self._record_key(kind, id)
            deleted = int(
                self._acknowledged("DEL", key) if self.wait_replicas else self.client.delete(key)
            )
            if version is not None:
                self._forget(kind, "drop", [(id, version)])
        return deleted > 0

    def list(self, kind: str, *, cursor: str | None = None, limit: int = 100) -> Page:
        check_kind(kind)
        check_limit(limit)
        start = f"({cursor}" if cursor else "-"
        idx, _, versions, _ = self._index_keys(kind)
        with self._errors():
            reply = self._run("index_page", [idx, versions], start, limit)
            ids, seen = reply[0::2], reply[1::2]
            raws = self._read_records(kind, ids)
            # An id whose record expired (or was deleted mid-way) is skipped and forgotten.
            gone = [(id, v) for id, v, raw in zip(ids, seen, raws, strict=True) if not raw]
            if gone:
                self._forget(kind, "drop", gone)
        records = tuple(_record(kind, id, raw) for id, raw in zip(ids, raws, strict=True) if raw)
        return Page(records, ids[-1] if len(ids) == limit else None)

    def update(
        self,
        kind: str,
        id: str,
        *,
        set: Mapping[str, JSONValue] | None = None,
        increment: Mapping[str, int] | None = None,
        expect: Mapping[str, JSONValue] | None = None,
        ttl: float | _Keep | None = KEEP_TTL,
    ) -> UpdateResult:
        check_kind(kind)
        check_id(id)
        check_update(set, increment, expect)
        mode, ttl_ms = _expiry_mode(ttl)
        args = [mode, ttl_ms, len(expect or {}), len(set or {}), len(increment or {})]
        for name, value in (expect or {}).items():
            args += [name, codec.encode(value)]
        for name, value in (set or {}).items():
            args += [name, codec.encode(value)]
        for name, amount in (increment or {}).items():
            args += [name, str(amount)]
        # A new expiry is registered in the index next, and that write's wait covers this one.
        run = self._write if mode == "keep" else self._run
        with self._errors(), _not_integer_is_input_error():
            reply = run("record_update", [self._record_key(kind, id)], *args)
        status = UpdateStatus(reply[0])
        if status is UpdateStatus.MISSING:
            return UpdateResult(status, None)
        raw = dict(zip(reply[1::2], reply[2::2], strict=True))
        if status is UpdateStatus.UPDATED and mode != "keep":
            with self._errors():
                self._register(kind, id, int(raw.get(EXPIRY_FIELD) or 0))
        return UpdateResult(status, _record(kind, id, raw))

    # -- log -------------------------------------------------------------------------------

    def log_append(
        self, stream: str, fields: Mapping[str, JSONValue], *, maxlen: int | None = None
    ) -> LogEntry:
        check_kind(stream)
        check_retention(maxlen)
        body = codec.encode_document(fields)
        with self._errors():
            entry_id = self.client.xadd(
                self._log_key(stream), {LOG_FIELD: body}, maxlen=maxlen, approximate=True
            )
        return _entry(entry_id, {LOG_FIELD: body})

    def log_append_after(
        self,
        stream: str,
        entries: Sequence[Mapping[str, JSONValue]],
        *,
        after: str | None,
        maxlen: int | None = None,
        max_age: float | None = None,
    ) -> ChainedAppend:
        check_kind(stream)
        check_batch(entries)
        if after is not None:
            _position(after)
        check_retention(maxlen, max_age)
        bodies = [codec.encode_document(fields) for fields in entries]
        with self._errors():
            age_ms = str(_milliseconds(max_age)) if max_age is not None else ""
            reply = self._run(
                "log_append_after",
                [self._log_key(stream)],
                after or "",
                str(maxlen) if maxlen is not None else "",
                age_ms,
                *bodies,
            )
        if reply[0] == "ok":  # the entries as given: no need to decode what was just encoded
            return ChainedAppend(
                tuple(
                    LogEntry(i, _stream_time(i), dict(fields))
                    for i, fields in zip(reply[1:], entries, strict=True)
                ),
                None,
            )
        last = _entry(reply[1], {LOG_FIELD: reply[2]}) if reply[1] else None
        return ChainedAppend((), last)

    def log_read(
        self, stream: str, *, after: str | None = None, limit: int = 100, block: float = 0
    ) -> builtins.list[LogEntry]:
        check_kind(stream)
        check_limit(limit)
        key = self._log_key(stream)
        position = _position(after)
        deadline = time.monotonic() + block
        with self._errors():
            entries = self.client.xrange(key, f"({position}", "+", count=limit)
            # XREAD BLOCK longer than the socket timeout would fail as a timeout: wait in
            # short blocking reads until the caller's deadline.
            while not entries and (remaining := deadline - time.monotonic()) > 0:
                wait_ms = max(1, int(min(remaining, self.timeout / 2) * 1000))
                reply = self.client.xread({key: position}, count=limit, block=wait_ms)
                entries = reply[0][1] if reply else []
        return [_entry(entry_id, body) for entry_id, body in entries]

    def log_tail(self, stream: str, count: int) -> builtins.list[LogEntry]:
        check_kind(stream)
        check_limit(count)
        with self._errors():
            entries = self.client.xrevrange(self._log_key(stream), "+", "-", count=count)
        return [_entry(entry_id, body) for entry_id, body in reversed(entries)]

    # -- the rest --------------------------------------------------------------------------

    def now(self) -> float:
        with self._errors():
            seconds, micros = self._server_time()
        return int(seconds) + int(micros) / 1_000_000

    def info(self) -> StoreInfo:
        """The server's version and the facts `doctor` judges (see redis_facts), from the one
        node server-wide questions go to."""
        with self._errors():
            version, details = server_facts(
                self._one_node(),
                prefix=self.prefix,
                cluster=isinstance(self.client, RedisCluster),
                waits=self.wait_replicas > 0,
            )
        return StoreInfo(self.backend, redact_url(self.url), version, details)

    def close(self) -> None:
        if self._direct:
            self._direct.close()
        self.client.close()

    async def aclose(self) -> None:
        if self._async is not None:
            with self._errors():
                await self._async.aclose()

    # -- plumbing --------------------------------------------------------------------------

    def _record_key(self, kind: str, id: str) -> str:
        return self.prefix + kind + ":{" + id + "}"

    def _run(self, name: str, keys: Sequence[str], *args: Any, memo: Hashable = None) -> Any:
        """EVALSHA of one of our scripts, with every key it touches declared (one slot).

        NOSCRIPT means the script did not run (a restarted or new node), so loading it and
        calling again is safe; nothing else is ever retried. EVALSHA is called directly
        rather than through redis-py's Script wrapper: this is every verify's path.
        """
        script = self._scripts[name]
        if self._direct is None:
            call = self.client.execute_command
            try:
                return call("EVALSHA", script.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                call("SCRIPT", "LOAD", script.script)
                return call("EVALSHA", script.sha, len(keys), *keys, *args)
        direct = self._direct
        try:
            return direct.call("EVALSHA", script.sha, len(keys), *keys, *args, memo=memo)
        except redis.exceptions.NoScriptError:
            direct.call("SCRIPT", "LOAD", script.script)
            return direct.call("EVALSHA", script.sha, len(keys), *keys, *args, memo=memo)

    def _write(self, name: str, keys: Sequence[str], *args: Any) -> Any:
        """`_run` for a change of a record or a mark: with `wait_replicas`, it counts only
        once that many replicas have it."""
        if not self.wait_replicas:
            return self._run(name, keys, *args)
        script = self._scripts[name]
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return self._acknowledged(*command)
        except redis.exceptions.NoScriptError:  # it did not run: load it, then run it once
            self.client.script_load(script.script)
            return self._acknowledged(*command)

    def _acknowledged(self, *command: Any) -> Any:
        """Run `command`, then WAIT for `wait_replicas` replicas, in one pipeline and so on
        one connection: WAIT covers the writes of its own connection (and, the replication
        offset being one sequence, every write before them). The WAIT timeout is half the
        store timeout, so its reply comes before the socket gives up on it."""
        wait_ms = max(1, int(self.timeout * 500))
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command(*command)
        pipe.execute_command("WAIT", self.wait_replicas, wait_ms)
        reply, acknowledged = pipe.execute(raise_on_error=False)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(acknowledged, Exception):
            raise acknowledged
        if int(acknowledged) < self.wait_replicas:
            raise StoreError(
                f"the change is on the primary at {redact_url(self.url)}, but only "
                f"{acknowledged} of {self.wait_replicas} replica(s) acknowledged it within "
                f"{wait_ms} ms, so it may not survive a failover",
                hint="check the replicas (INFO replication on the primary), "
                "or lower store.wait_replicas",
            )
        return reply

    def _index_keys(self, kind: str) -> tuple[str, str, str, str]:
        """The id index, expiry hints, versions and counter of a kind: one slot."""
        tag = ":{" + kind + "}"
        return (
            self.prefix + "_idx" + tag,
            self.prefix + "_exp" + tag,
            self.prefix + "_ver" + tag,
            self.prefix + "_seq" + tag,
        )

    def _bucket_key(self, group: str, name: str | None) -> str:
        return self.prefix + "_rl:{" + group + "}" + (":" + name if name is not None else "")

    def _mark_key(self, group: str, name: str) -> str:
        return self.prefix + "_mark:{" + group + "}:" + name

    def _log_key(self, stream: str) -> str:
        return self.prefix + "_log:{" + stream + "}"

    def _read_records(self, kind: str, ids: Sequence[str]) -> builtins.list[dict[str, str]]:
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for id in ids:
            pipe.hgetall(self._record_key(kind, id))
        return builtins.list(pipe.execute())

    def _register(self, kind: str, id: str, expires_ms: int) -> None:
        """Index a record just written; then sweep the expired entries the index names.

        Registering always writes, after the record, so waiting for the replicas here covers
        the record too: a record that survives a failover is also listed."""
        keys = self._index_keys(kind)
        candidates = self._write("index_add", keys, id, expires_ms, SWEEP_PER_WRITE)
        if candidates:
            self._sweep(kind, builtins.list(zip(candidates[0::2], candidates[1::2], strict=True)))

    def _sweep(self, kind: str, candidates: Sequence[tuple[str, str]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for id, _ in candidates:
            pipe.exists(self._record_key(kind, id))
        alive = pipe.execute()
        gone = [c for c, exists in zip(candidates, alive, strict=True) if not exists]
        stale = [c for c, exists in zip(candidates, alive, strict=True) if exists]
        if gone:
            self._forget(kind, "drop", gone)
        if stale:  # a racing writer left an old expiry hint on a live record
            self._forget(kind, "unexpire", stale)

    def _forget(self, kind: str, mode: str, entries: Sequence[tuple[str, str]]) -> None:
        idx, exp, versions, _ = self._index_keys(kind)
        args = [mode, *(item for entry in entries for item in entry)]
        self._run("index_forget", [idx, exp, versions], *args)

    def _one_node(self) -> Any:
        """Server-wide questions (time, version) go to one node, also on a cluster."""
        if isinstance(self.client, RedisCluster):
            node = self.client.get_default_node()  # type: ignore[no-untyped-call]
            return node.redis_connection or self.client
        return self.client

    def _server_time(self) -> Any:
        """TIME from the server; on a cluster, from the default node, else the next primary.

        The default node's own connection would never tell the cluster client that it died:
        its slot map is refreshed only when a command sent through it fails, so after a
        failover `now()` (which key create, show, list and revoke call first) would fail for
        good. Sent through the cluster client, a refused TIME refreshes the map; and TIME
        changes nothing, so asking the next primary is safe (a timeout is not retried).
        """
        if not isinstance(self.client, RedisCluster):
            return self.client.time()
        tried: set[str] = set()
        while True:
            node = self._untried_primary(tried)
            try:
                return self.client.execute_command("TIME", target_nodes=node)  # type: ignore[no-untyped-call]
            except redis.ConnectionError:
                tried.add(node.name)
                if self._untried_primary(tried) is None:
                    raise

    def _untried_primary(self, tried: set[str]) -> Any:
        """The cluster's default node, else a primary of its current map, not yet tried."""
        default = self.client.get_default_node()
        nodes = [default, *self.client.get_primaries()] if default else self.client.get_primaries()
        return next((node for node in nodes if node.name not in tried), None)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (redis.RedisError, RedisClusterException) as e:
            raise translate(e, redact_url(self.url)) from e
        except OSError as e:  # a socket error the client did not wrap (TLS errors included)
            error = redis.ConnectionError(str(e))
            error.__cause__ = e
            raise translate(error, redact_url(self.url)) from e


def _wait_replicas(count: int, cluster: bool, where: str) -> int:
    """The count, checked. Not on a cluster: there WAIT would go to some node, not to the
    one that took the write, and its pipelines refuse scripts."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"store.wait_replicas must be a whole number >= 0, not {count!r}")
    if count and cluster:
        raise ConfigError(
            f"store.wait_replicas is not supported on the Redis Cluster at {where}",
            hint="set store.wait_replicas to 0 (MCPSEC_STORE_WAIT_REPLICAS) for a cluster",
        )
    return count


def _bucket_reply(requests: Sequence[BucketRequest], reply: Sequence[Any]) -> BucketReply:
    """The script's reply: allowed, then seven values per bucket (see bucket_take.lua)."""
    levels = []
    for i, r in enumerate(requests):
        capacity, refill, tokens, full_in, retry_in, existed, overridden = reply[
            1 + i * 7 : 8 + i * 7
        ]
        levels.append(
            BucketLevel(
                r.name,
                float(capacity),
                float(refill),
                float(tokens),
                _seconds(retry_in),
                _seconds(full_in),
                existed == 1,
                overridden == 1,
            )
        )
    return BucketReply(reply[0] == 1, tuple(levels))


def _seconds(microseconds: int | str) -> float | None:
    value = float(microseconds)
    return None if value < 0 else value / 1_000_000


def _stored_level(name: str, raw: str, now: float) -> BucketLevel | None:
    """A bucket as bucket_take.lua stores it, "<state> <capacity> <refill>", seen at `now`:
    with refill, the state is the microsecond it will be full; without, the tokens used."""
    try:
        state, capacity, refill = (float(part) for part in raw.split(" "))
    except ValueError:
        return None  # not written by mcpsec: nothing to show
    used = max(0.0, state / 1_000_000 - now) * refill if refill > 0 else state
    return bucket_level(name, capacity, refill, capacity - used, 1.0, existed=True)


def _nodes(url: StoreUrl) -> builtins.list[ClusterNode]:
    return [ClusterNode(host, port) for host, port in url.nodes]  # type: ignore[no-untyped-call]


@contextmanager
def _not_integer_is_input_error() -> Iterator[None]:
    try:
        yield
    except redis.ResponseError as e:
        if "NOTINTEGER" not in str(e):
            raise
        field = str(e).split("NOTINTEGER field ", 1)[-1].split(" ", 1)[0]
        raise InvalidInputError(f"field {field} does not hold an integer", field=field) from None


def _hex(digest: str) -> str:
    """A hex digest, checked: it goes into the script as JSON text without json.dumps."""
    if not _HEX.fullmatch(digest):
        raise InvalidInputError("a secret hash must be lowercase hex", field="secret_hash")
    return digest


def _token(token: str) -> str:
    if not token or any(c.isspace() or c == '"' for c in token):
        raise InvalidInputError(f"grant token {token!r} is not allowed", field="accepted")
    return token


def _source(name: str) -> str:
    return resources.files("mcpsec.store").joinpath(f"scripts/{name}.lua").read_text()


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _expiry_mode(ttl: float | _Keep | None) -> tuple[str, int | str]:
    if isinstance(ttl, _Keep):
        return "keep", ""
    if ttl is None:
        return "persist", ""
    check_lifetime(ttl)
    return "set", _milliseconds(ttl)


def _position(after: str | None) -> str:
    if after is None:
        return "0-0"
    head, _, tail = after.partition("-")
    if not (head.isdigit() and tail.isdigit()):
        raise InvalidInputError(f"log position {after!r} is not one this store wrote")
    return after


def _record(kind: str, id: str, raw: Mapping[str, str]) -> Record:
    expiry = raw.get(EXPIRY_FIELD) or ""
    fields = {name: codec.decode(value) for name, value in raw.items() if name != EXPIRY_FIELD}
    return Record(kind, id, fields, int(expiry) / 1000 if expiry else None)


def _key_touch(reply: Sequence[Any]) -> KeyTouch:
    outcome = KeyOutcome(reply[0])
    if outcome is KeyOutcome.UNKNOWN:
        return KeyTouch(outcome)
    return KeyTouch(outcome, dict(zip(KEY_GRANT_FIELDS, codec.decode(reply[1]), strict=True)))


def _entry(entry_id: str, body: Mapping[str, str]) -> LogEntry:
    if LOG_FIELD not in body:
        raise StoreError(f"log entry {entry_id} was not written by mcpsec")
    return LogEntry(entry_id, _stream_time(entry_id), codec.decode(body[LOG_FIELD]))


def _stream_time(entry_id: str) -> float:
    """A stream entry id starts with the server's time in milliseconds."""
    return int(entry_id.partition("-")[0]) / 1000
