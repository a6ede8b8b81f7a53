"""Held connections for the calls every request makes: one per thread, used directly.

    direct = DirectCalls(client.connection_pool)
    direct.call("EVALSHA", sha, 1, key, arg)

redis-py's client takes a connection from its pool, runs its retry and observability
wrappers and gives the connection back on every command: measured on one CPU, that was
17 µs of a 37 µs EVALSHA. A verify, a revocation check and a rate decision are one script
call each, so they go over a connection this thread keeps, sent and read directly. Nothing
is retried here either; a failed send or read closes the connection (redis-py does that),
so a late reply can never be read by the next call, and the next call reconnects.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import redis


class DirectCalls:
    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._local = threading.local()
        self._lock = threading.Lock()
        self._held: list[Any] = []

    def call(self, *args: Any) -> Any:
        connection = self._connection()
        connection.send_command(*args)
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
            local.connection, local.pid = connection, os.getpid()
            with self._lock:
                self._held.append(connection)
        return connection
