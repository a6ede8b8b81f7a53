"""What a Redis store sends: proof of "one round trip" from the client's side."""

from __future__ import annotations

from typing import Any

import pytest


def record_commands(target: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every command sent from now on, one tuple of arguments each.

    `target` is a RedisStore (both its client and its held per-thread connections, which
    carry the scripts every request runs, are watched) or a bare redis-py client.
    """
    sent: list[tuple[Any, ...]] = []
    store_direct = getattr(target, "_direct", None)
    client = getattr(target, "client", target)
    for owner, name in ((client, "execute_command"), (store_direct, "call")):
        if owner is None:
            continue
        real = getattr(owner, name)

        def counting(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            sent.append(args)
            return _real(*args, **kwargs)

        monkeypatch.setattr(owner, name, counting)
    return sent
