"""The asyncio transport to Redis, for the reads a server makes on every request.

    transport = AsyncTransport(lambda: open_async_client(url, timeout), scripts)
    await transport.run("marks_get", keys)

The same Lua scripts and the same keys as the blocking client: only the socket handling
differs, so an asyncio server waits on Redis without a worker thread per request. A client
belongs to the event loop it first ran in, so there is one per loop.

`run_batched` is for the scripts every request runs (the revocation check, the rate-limit
take): calls made in the same turn of the event loop go out as one pipeline, still one
script and one slot each, so 32 requests in flight cost one write and one read of the
socket instead of 32 of each. Each call gets its own reply or error; nothing is retried
but a script the server lost (NOSCRIPT: it did not run), so a take is never charged twice.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis
from redis.backoff import NoBackoff

from mcpsec.store.url import StoreUrl

MAX_IN_FLIGHT: Final = 32


def open_async_client(url: StoreUrl, timeout: float, extra: Mapping[str, Any] | None = None) -> Any:
    """An asyncio client with the blocking client's settings: explicit timeouts, no retries,
    and `extra`, the same TLS and credential arguments (see redis_options.apply_options)."""
    import redis.asyncio as aredis
    from redis.asyncio.retry import Retry

    common: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": True,
        **(extra or {}),
    }
    if url.backend == "redis-cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in url.nodes],
            ssl=url.tls,
            **common,
        )
    if url.backend == "redis-sentinel":
        from mcpsec.store.redis_sentinel import async_sentinel_client

        return async_sentinel_client(url, common)
    return aredis.Redis.from_url(url.url, **common)


class AsyncTransport:
    """EVALSHA of our scripts over an asyncio client, one client per event loop."""

    def __init__(
        self,
        opener: Callable[[], Any],
        scripts: Mapping[str, tuple[str, str]],
        *,
        batching: bool = True,
    ) -> None:
        """`scripts` maps a script's name to its (sha1, source). `batching=False` for a
        cluster, whose pipelines refuse scripts: there each call goes on its own."""
        self._opener = opener
        self._batching = batching
        self._scripts = scripts
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._waiting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[_Call]] = (
            weakref.WeakKeyDictionary()
        )
        self._sending: set[asyncio.Task[None]] = set()  # held until each batch is sent
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._held: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Held] = (
            weakref.WeakKeyDictionary()
        )  # the connection each loop's batches go over

    async def run_batched(self, name: str, keys: Sequence[str], *args: Any) -> Any:
        """`run`, sent in one pipeline with the other calls of this turn of the loop."""
        if not self._batching:
            return await self.run(name, keys, *args)
        loop = asyncio.get_running_loop()
        call = _Call(name, tuple(keys), args, loop.create_future())
        waiting = self._waiting.get(loop)
        if waiting is None:
            waiting = self._waiting[loop] = []
            loop.call_soon(self._flush, loop)
        waiting.append(call)
        return await call.future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        calls = self._waiting.pop(loop, [])
        if calls:
            task = loop.create_task(self._send(calls))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, calls: list[_Call]) -> None:
        """One pipeline for the batch; each caller gets its own reply or error. A script the
        server lost (NOSCRIPT) is loaded once and its calls sent again, both over the held
        connection: the pool's may reach another node (a Sentinel's, around a failover),
        and the calls would then meet NOSCRIPT forever."""
        try:
            replies = await self._pipeline(calls)
            lost = [c for c, r in zip(calls, replies, strict=True) if _is_noscript(r)]
            if lost:
                names = sorted({c.name for c in lost})
                again = dict(zip(map(id, lost), await self._pipeline(lost, names), strict=True))
                replies = [again.get(id(c), r) for c, r in zip(calls, replies, strict=True)]
        except BaseException as e:
            for call in calls:
                if not call.future.done():
                    call.future.set_exception(e)
            if isinstance(e, asyncio.CancelledError):
                raise
            return
        for call, reply in zip(calls, replies, strict=True):
            if call.future.done():  # the caller was cancelled
                continue
            if isinstance(reply, BaseException):
                call.future.set_exception(reply)
            else:
                call.future.set_result(reply)

    async def _pipeline(self, calls: Sequence[_Call], load: Sequence[str] = ()) -> list[Any]:
        """The batch written at once on this loop's held connection, the replies read in
        order (an error reply is that call's reply), after SCRIPT LOAD of the scripts named
        in `load`. redis-py's pipeline object costs more CPU than the scripts themselves;
        its connection does the protocol, AUTH and TLS. A failed write or read drops the
        connection, so a late reply is never read as the answer to the next batch."""
        loop = asyncio.get_running_loop()
        held = self._held.get(loop)
        if held is None:
            held = self._held[loop] = _Held()
        commands = [("SCRIPT", "LOAD", self._scripts[name][1]) for name in load]
        commands += [
            ("EVALSHA", self._scripts[c.name][0], len(c.keys), *c.keys, *c.args) for c in calls
        ]
        async with held.lock:
            if held.connection is not None and await _hung_up(held.connection):
                stale, held.connection = held.connection, None
                await stale.disconnect()  # nothing was sent on it: replaced below
            if held.connection is None:
                # Held only once connected: a connection whose connect failed would connect
                # on its own at the next send, and a Sentinel pool's would then skip asking
                # the sentinels and go to localhost:6379.
                fresh = (await self._client()).connection_pool.make_connection()
                await fresh.connect()
                held.connection = fresh
            connection = held.connection
            try:
                packed = connection.pack_commands(commands)
                await connection.send_packed_command(packed, check_health=False)
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(await connection.read_response())
                    except redis.exceptions.ResponseError as e:
                        replies.append(e)
            except BaseException:
                held.connection = None
                await connection.disconnect()
                raise
        refused = next((r for r in replies[: len(load)] if isinstance(r, Exception)), None)
        if refused is not None:  # an ACL rule, say: clearer than the NOSCRIPT that follows
            raise refused
        return replies[len(load) :]

    async def run(self, name: str, keys: Sequence[str], *args: Any) -> Any:
        """Like the blocking `_run`: reload the script only on NOSCRIPT, retry nothing else.

        At most MAX_IN_FLIGHT calls per event loop wait on the server at once: a burst of
        requests must not open a connection each (and overflow the server's accept queue).
        """
        client = await self._client()
        sha, source = self._scripts[name]
        async with self._slot():
            try:
                return await client.evalsha(sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                await client.script_load(source)
                return await client.evalsha(sha, len(keys), *keys, *args)

    def _slot(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(MAX_IN_FLIGHT)
        return slots

    async def aclose(self) -> None:
        """Close this event loop's client (each loop's client must be closed in that loop)."""
        loop = asyncio.get_running_loop()
        held = self._held.pop(loop, None)
        if held is not None and held.connection is not None:
            await held.connection.disconnect()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()

    async def _client(self) -> Any:
        """This loop's client, set up once: redis-py's cluster client, first used by many
        coroutines at once, would discover the cluster many times over and drop connections."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is not None:
            return client
        lock = self._opening.get(loop)
        if lock is None:
            lock = self._opening[loop] = asyncio.Lock()
        async with lock:
            client = self._clients.get(loop)
            if client is None:
                client = self._opener()
                await client.initialize()
                self._clients[loop] = client
        return client


async def _hung_up(connection: Any) -> bool:
    """Whether the server hung up on this idle connection (a restart, say): the event loop
    has already read its end of file, so asking costs no system call. Replacing it before
    sending makes a restarted Redis cost no failed request."""
    try:
        return bool(await connection.can_read())
    except (redis.ConnectionError, OSError):
        return True


@dataclass
class _Held:
    """One event loop's connection for batches, and the lock that gives it to one at a time."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    connection: Any = None


@dataclass(frozen=True)
class _Call:
    name: str
    keys: tuple[str, ...]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]


def _is_noscript(reply: Any) -> bool:
    return isinstance(reply, redis.exceptions.NoScriptError) or (
        isinstance(reply, redis.exceptions.ResponseError) and str(reply).startswith("NOSCRIPT")
    )
