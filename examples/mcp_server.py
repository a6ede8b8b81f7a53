"""An MCP server guarded by mcpsec: weather, a sandboxed folder of files, and a user list.

    pip install 'mcpsec[server]'
    MCPSEC_SERVER_RESOURCE=http://127.0.0.1:8000/mcp python examples/mcp_server.py --port 8000

Everything about security comes from mcpsec's config and store, the same ones the `mcpsec`
CLI manages: API keys and tokens from `mcpsec keys create` / `mcpsec token mint` are the
bearer credentials, the permissions below (or `[server.tools]` in the config) decide who may
call what, `[rate.roles.*]` and `[server.tool_costs]` the rate limits, and every decision
lands in the audit log (`mcpsec audit tail -f`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from mcpsec.core.config import load_settings
from mcpsec.core.errors import MCPSecError
from mcpsec.server import Guard, auth_options, guarded_app

MAX_READ: Final = 1024 * 1024  # bytes a read_file returns at most
MAX_WRITE: Final = 64 * 1024  # bytes a write_file may store
FORECASTS: Final = {"london": "rain, 12°C", "paris": "sun, 18°C", "tokyo": "cloudy, 16°C"}
USERS: Final = ["alice", "bob", "carol"]
Tool = Callable[..., Any]  # a tool function, as the guard's decorator takes and returns it


def inside(sandbox: Path, relative: str) -> Path:
    """The file `relative` names inside the sandbox; refused if it would lead outside it
    (`..`, an absolute path, a symlink out) or names nothing sensible."""
    if not relative or "\x00" in relative or len(relative) > 255:
        raise ToolError("give a file name inside the sandbox")
    candidate = (sandbox / relative).resolve()
    if candidate == sandbox or not candidate.is_relative_to(sandbox):
        raise ToolError(f"{relative!r} is outside the sandbox")
    return candidate


def build_server(guard: Guard, sandbox: Path) -> MCPServer:
    server = MCPServer("mcpsec-example", log_level="WARNING", **auth_options(guard))
    add_tools(server, sandbox, guard.requires)
    return server


def _open_to_all(permission: str) -> Callable[[Tool], Tool]:
    return lambda function: function


def add_tools(
    server: MCPServer,
    sandbox: Path,
    requires: Callable[[str], Callable[[Tool], Tool]] = _open_to_all,
) -> None:
    """The four tools, each with the permission it needs declared through `requires` (the
    guard's decorator; by default none, for the unguarded server bench/mcp_server.py runs)."""
    root = sandbox.resolve()

    @requires("weather:read")
    @server.tool()
    def get_weather(city: str) -> str:
        """Today's weather in a city."""
        return FORECASTS.get(city.strip().lower(), "no forecast for that city")

    @requires("files:read")
    @server.tool()
    def read_file(path: str) -> str:
        """A text file from the sandbox folder."""
        target = inside(root, path)
        if not target.is_file():  # a folder, or nothing at all
            raise ToolError(f"no file {path!r}")
        if target.stat().st_size > MAX_READ:
            raise ToolError(f"{path!r} is larger than {MAX_READ} bytes")
        return target.read_text(encoding="utf-8", errors="replace")

    @requires("files:write")
    @server.tool()
    def write_file(path: str, text: str) -> str:
        """Write a text file into the sandbox folder."""
        data = text.encode("utf-8")
        if len(data) > MAX_WRITE:
            raise ToolError(f"at most {MAX_WRITE} bytes may be written")
        target = inside(root, path)
        if target.is_dir():
            raise ToolError(f"{path!r} is a folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.parent.resolve().is_relative_to(root):
            raise ToolError(f"{path!r} is outside the sandbox")
        target.write_bytes(data)
        return f"wrote {len(data)} bytes to {path}"

    @requires("admin:users")
    @server.tool()
    def list_users() -> list[str]:
        """Everyone who has an account."""
        return USERS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--sandbox", type=Path, default=Path("sandbox"))
    args = parser.parse_args(argv)
    try:
        guard = Guard.from_settings(load_settings(os.environ))
        args.sandbox.mkdir(parents=True, exist_ok=True)
        app = guarded_app(build_server(guard, args.sandbox), guard)
    except (MCPSecError, OSError) as e:
        print(f"mcp_server: {e}", file=sys.stderr)
        return 4
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
