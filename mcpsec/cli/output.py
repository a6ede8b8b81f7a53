"""One object renders every result: JSON for scripts, the essential value for `--quiet`,
aligned plain lines when piped, Rich when a person is watching a terminal.

    out.result(pair)                     # a frozen dataclass or a mapping
    out.warn("plain PKCE is weak")       # stderr, never mixed into stdout

Results go to stdout, messages to stderr, so `mcpsec … --json | jq` always parses.
Rich is imported only when a table is drawn on a terminal (start-up cost).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from enum import Enum, StrEnum
from pathlib import Path
from typing import IO, Any

from mcpsec.cli.errors import OutputError

PROGRAM = "mcpsec"
BOLD, RESET = "\033[1m", "\033[0m"


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
        self.stdout: IO[str] | None = stdout or sys.stdout
        self.stderr: IO[str] | None = stderr or sys.stderr
        self.color = color and self.stdout is not None and _isatty(self.stdout)

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

    def listing(
        self,
        items: Sequence[Any],
        columns: Sequence[str],
        row: Callable[[Any], Sequence[str]],
        *,
        document: Any = None,
    ) -> None:
        """A list result: a table for people, `document` (or the items) as JSON, and the
        essential field of each item, one per line, for --quiet."""
        if self.mode is Mode.HUMAN:
            self.table(columns, [row(item) for item in items])
        elif self.mode is Mode.JSON:
            self.result(items if document is None else document)
        else:
            self.result(list(items))

    def fields(self, document: Mapping[str, Any]) -> None:
        """Aligned `name: value` lines. Values are never wrapped: a verifier or key split over
        two lines breaks copy-paste."""
        rows = [(name, _plain(value)) for name, value in document.items()]
        width = max((len(name) for name, _ in rows), default=0)
        for name, value in rows:
            label = f"{name + ':':<{width + 1}}"
            self.line(f"{BOLD}{label}{RESET}  {value}" if self.color else f"{label}  {value}")

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """Rows under headed columns: Rich on a terminal, space-aligned text when piped (one
        row per line, so `grep`, `awk` and `cut` work)."""
        if self.color:
            self._rich_table(columns, rows)
            return
        widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
        for row in (columns, *rows):
            self.line("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())

    def _rich_table(self, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in columns:
            table.add_column(column, no_wrap=True, overflow="ellipsis")
        for row in rows:
            table.add_row(*row)
        Console(file=self.stdout).print(table)

    @contextlib.contextmanager
    def live(self) -> Iterator[Callable[[Sequence[str], Sequence[Sequence[str]], str], None]]:
        """A table that refreshes: redrawn in place on a terminal (Rich Live), or printed
        anew after a blank line when piped, so `watch … | tee log` keeps every refresh."""
        if not self.color:

            def reprint(
                columns: Sequence[str], rows: Sequence[Sequence[str]], caption: str
            ) -> None:
                self.line(caption)
                self.table(columns, rows)
                self.line()

            yield reprint
            return
        from rich.console import Console
        from rich.live import Live
        from rich.table import Table

        with Live(console=Console(file=self.stdout), auto_refresh=False) as live:

            def redraw(columns: Sequence[str], rows: Sequence[Sequence[str]], caption: str) -> None:
                table = Table(box=None, header_style="bold", pad_edge=False, caption=caption)
                for column in columns:
                    table.add_column(column, no_wrap=True, overflow="ellipsis")
                for row in rows:
                    table.add_row(*row)
                live.update(table, refresh=True)

            yield redraw

    def line(self, text: str = "") -> None:
        if self.stdout is None:  # started with stdout closed (`>&-`): nowhere to write
            raise OutputError("standard output is closed; nothing could be printed")
        try:
            print(text, file=self.stdout, flush=True)
        except BrokenPipeError:
            # The reader left (`| head`). Finish quietly so the exit code stays the verdict's.
            _discard_stdout()
        except OSError as e:
            raise OutputError(f"cannot write to standard output: {e.strerror}") from e

    def warn(self, message: str) -> None:
        _to_stderr(f"{PROGRAM}: warning: {message}", self.stderr)

    def note(self, message: str) -> None:
        """A progress or status message for people; silent under --quiet and --json."""
        if self.mode is Mode.HUMAN:
            _to_stderr(message, self.stderr)


def error_line(message: str, *, stream: IO[str] | None = None) -> None:
    """The single line every failure gets: `mcpsec: error: …`."""
    _to_stderr(f"{PROGRAM}: error: {message}", stream or sys.stderr)


def _to_stderr(text: str, stream: IO[str] | None) -> None:
    """Messages never fail a command: with stderr closed or full, they are dropped."""
    if stream is None:
        return
    with contextlib.suppress(OSError):
        print(text, file=stream, flush=True)


def escape_unprintable(text: str) -> str:
    """Control and formatting characters (C0, C1, bidi overrides) as `\\xNN`/`\\uNNNN`: what
    came from an untrusted source (a token being inspected) must not drive the terminal."""
    import unicodedata

    return "".join(
        (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
        if unicodedata.category(c) in {"Cc", "Cf"}
        else c
        for c in text
    )


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
    """The fields a dataclass marks `metadata={"essential": True}`: what `--quiet` prints;
    for a list, those of each item, one per line."""
    if isinstance(value, list | tuple):
        return [item for element in value for item in essentials(element)]
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
    """Point fd 1 at /dev/null, so later writes and the final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
