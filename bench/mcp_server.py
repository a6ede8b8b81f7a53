"""Tool calls per second through the MCP SDK's client: the example server guarded by mcpsec.

    .venv/bin/python bench/mcp_server.py             # its own redis-server on a free port
    .venv/bin/python bench/mcp_server.py --url redis://127.0.0.1:6379/0 --n 500 --json

Two servers, each under uvicorn (log level warning) in its own process on a free loopback
port, so that their CPU is not the client's. Guarded: examples/mcp_server.py itself, run as
its docs say: `guarded_app(build_server(guard, sandbox), guard)` with the Guard from
`load_settings` of an environment that points XDG_CONFIG_HOME and XDG_DATA_HOME at a temp
folder, the store at the bench's Redis under a fresh key prefix, and the server's resource
and token audience at its URL. The folder's config gives the `user` role a rate limit of
10**9 refilling at 10**9 a second, so no call is ever refused (yet every call is still
charged, one Lua script on Redis), and holds an HS256 secret as `mcpsec config init` writes
one. Unguarded: the same four tools, with the same bodies and the example's own constants,
on a plain `MCPServer("mcpsec-example", log_level="WARNING")` with no auth, serving
`server.streamable_http_app()` (this script's hidden `--serve-plain` mode).

On the guarded server every HTTP request is authenticated by the SDK through mcpsec's
verifier (an API key: one store round trip that checks and counts it; an access token: the
signature and claims checked, then its revocation looked up), and every `tools/call` body is
read by mcpsec's gate: the tool's permission checked, the rate limit charged, and one
`tool.called` event appended to the audit chain, before the SDK runs the tool. Both kinds of
bearer credential are measured, each on its own session: an API key made with
`ApiKeys.create(roles=["user"])` and an access token from `Tokens.mint(roles=["user"])`.

The client is the SDK's own: `streamable_http_client` on an `httpx2.AsyncClient` (carrying
the `Authorization: Bearer` header) and a `ClientSession`, initialized once per server and
credential (three sessions, kept for the whole run), each call `call_tool("get_weather",
{"city": "london"})`; a call counts as failed when it raises or its result `is_error`. Two
modes: `--concurrency` calls in flight on each session at once (worker tasks sharing one
session: the SDK multiplexes concurrent requests, each its own POST, over the client's
connection pool), then one at a time. Every way gets `WARMUP` untimed calls first. Rounds
are interleaved: the three ways one after another, in reverse order every other round; the
figures are medians of the rounds, the server's and the client's CPU per call measured over
the same rounds (from /proc on Linux: the server's whole process, its threads included).
The client runs in this one Python process, so what it costs per call is in every figure
alike: the overhead it shows is mcpsec's share of a whole SDK round trip, not of the
server's work alone (the server CPU per call column shows that).

Target: mcpsec's overhead, 1 - guarded/unguarded calls per second, at most 15%, for each
credential and mode. After the run (untimed) the guarded server is stopped and the audit
chain walked once with `AuditLog.verify()`: it must be intact, and hold one allowed
`tool.called` event per call made with each credential, warm-ups included. A benchmark
reports; it always exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

# bench/ is no installed package: make the repo root importable from any working directory.
_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

