"""Held connections for the calls every request makes: one per thread, used directly.

    direct = DirectCalls(client.connection_pool)
    direct.call("EVALSHA", sha, 1, key, arg)

redis-py's client takes a connection from its pool, runs its retry and observability
wrappers and gives the connection back on every command: measured on one CPU, that was
17 µs of a 37 µs EVALSHA. A verify, a revocation check and a rate decision are one script
call each, so they go over a connection this thread keeps, sent and read directly. Nothing
is retried here either; a failed send or read closes the connection (redis-py does that),
so a late reply can never be read by the next call, and the next call reconnects.
A connection the server hung up on while it sat idle (a restart, an idle timeout) is
replaced before anything is sent on it: a restarted Redis costs no failed call.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Hashable
from typing import Any

import redis

# Seconds a thread's connection sits unused before the next call polls it for a hang-up
# (2 µs): a connection in constant use skips the poll, and a restart is over in no less.
IDLE_CHECK = 0.01
MAX_PACKED = 4096  # encoded commands kept; all are dropped when full (cheap, and bounded)


class DirectCalls:
    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._local = threading.local()
        self._lock = threading.Lock()
        self._held: list[Any] = []
        self._packed: dict[Hashable, list[bytes]] = {}

    def call(self, *args: Any, memo: Hashable = None) -> Any:
        """Send one command and read its reply. With `memo`, a hashable name for exactly
        these arguments, the encoded command is kept and reused: a server deciding for the
        same identity again need not encode the same script call again."""
        connection = self._connection()
        if memo is None:
            connection.send_command(*args)
        else:
            packed = self._packed.get(memo)
            if packed is None:
                if len(self._packed) >= MAX_PACKED:
                    self._packed.clear()
                packed = self._packed[memo] = connection.pack_command(*args)
            connection.send_packed_command(packed, check_health=False)
        return connection.read_response()

    def close(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for connection in held:
            connection.disconnect()
        self._local = threading.local()

    def _connection(self) -> Any:
        """This thread's connection; a forked child makes its own (a socket is not shared)."""
        local = self._local
        connection = getattr(local, "connection", None)
        if connection is None or local.pid != os.getpid():
            connection = self._pool.make_connection()
            local.connection, local.pid, local.used = connection, os.getpid(), 0.0
            with self._lock:
                self._held.append(connection)
        elif time.monotonic() - local.used > IDLE_CHECK and hung_up(connection):
            connection.disconnect()  # nothing was sent on it: the send below reconnects
        local.used = time.monotonic()
        return connection


def hung_up(connection: Any) -> bool:
    """Whether an idle connection has something to read: there is nothing to read between
    our calls (every reply is read), so that is the server's end of file (or a reply no
    call is waiting for), and the connection must not carry the next command. One poll of
    the socket, no round trip."""
    if connection._sock is None:  # not connected: the next send connects
        return False
    try:
        return bool(connection.can_read(timeout=0))
    except (redis.ConnectionError, OSError):
        return True
