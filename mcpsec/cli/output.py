"""One object renders every result: JSON for scripts, the essential value for `--quiet`,
aligned plain lines when piped, Rich when a person is watching a terminal.

    out.result(pair)                     # a frozen dataclass or a mapping
    out.warn("plain PKCE is weak")       # stderr, never mixed into stdout

Results go to stdout, messages to stderr, so `mcpsec … --json | jq` always parses.
Rich is imported only when a table is drawn on a terminal (start-up cost).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import Enum, StrEnum
from pathlib import Path
from typing import IO, Any

PROGRAM = "mcpsec"


class Mode(StrEnum):
    HUMAN = "human"
    JSON = "json"
    QUIET = "quiet"


class Output:
    def __init__(
        self,
        mode: Mode = Mode.HUMAN,
        *,
        color: bool = True,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
    ) -> None:
        self.mode = mode
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.color = color and _isatty(self.stdout)

    def result(self, value: Any, *, human: Callable[[Any], str] | None = None) -> None:
        """Render a result; `human` may give the plain-text form when key/value lines won't do."""
        if self.mode is Mode.JSON:
            self.line(json.dumps(jsonable(value), indent=2, sort_keys=False))
        elif self.mode is Mode.QUIET:
            for item in map(jsonable, essentials(value)):
                self.line(item if isinstance(item, str) else json.dumps(item))
        elif human is not None:
            self.line(human(value))
        else:
            self.fields(jsonable(value))

    def fields(self, document: Mapping[str, Any]) -> None:
        rows = [(name, _plain(value)) for name, value in document.items()]
        if self.color:
            self._rich_table(rows)
            return
        width = max((len(name) for name, _ in rows), default=0)
        for name, value in rows:
            self.line(f"{name + ':':<{width + 1}}  {value}")

    def line(self, text: str = "") -> None:
        try:
            print(text, file=self.stdout, flush=True)
        except BrokenPipeError:
            # The reader left (`| head`). Finish quietly so the exit code stays the verdict's.
            _discard_stdout()

    def warn(self, message: str) -> None:
        print(f"{PROGRAM}: warning: {message}", file=self.stderr, flush=True)

    def note(self, message: str) -> None:
        """A progress or status message for people; silent under --quiet and --json."""
        if self.mode is Mode.HUMAN:
            print(message, file=self.stderr, flush=True)

    def _rich_table(self, rows: list[tuple[str, str]]) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for name, value in rows:
            table.add_row(name, value)
        Console(file=self.stdout).print(table)


def error_line(message: str, *, stream: IO[str] | None = None) -> None:
    """The single line every failure gets: `mcpsec: error: …`."""
    print(f"{PROGRAM}: error: {message}", file=stream or sys.stderr, flush=True)


def jsonable(value: Any) -> Any:  # noqa: PLR0911 - one return per shape
    """Dataclasses, enums, paths and datetimes as the stable JSON shapes documented per command."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def essentials(value: Any) -> list[Any]:
    """The fields a dataclass marks `metadata={"essential": True}`: what `--quiet` prints."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        marked = [f for f in dataclasses.fields(value) if f.metadata.get("essential")]
        return [getattr(value, f.name) for f in marked] or [value]
    return [value]


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value) or "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items()) or "-"
    return str(value)


def _discard_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
