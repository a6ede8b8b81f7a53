"""What a Redis store's client sends: proof of "one round trip" from the client's side."""

from __future__ import annotations

from typing import Any

import pytest


def record_commands(client: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every command the client sends from now on, one tuple of arguments each."""
    sent: list[tuple[Any, ...]] = []
    real = client.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        sent.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(client, "execute_command", counting)
    return sent
