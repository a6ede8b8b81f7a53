"""Async entry points over the sync rules: one implementation, run in a worker thread.

    class AsyncThings:
        def __init__(self, things: Things) -> None:
            self.verify = in_thread(things.verify)

The store clients are blocking; a worker thread keeps the event loop free while a call
waits on the store, and keeps one copy of every rule.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def in_thread(method: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(method)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.to_thread(method, *args, **kwargs)

    return run
