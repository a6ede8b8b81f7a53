"""Options shared by many commands, defined once so they read and behave the same everywhere."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mcpsec.core.errors import InvalidInputError

JSON_HELP = "Print one JSON document on stdout (for scripts)."
QUIET_HELP = "Print only the essential value, nothing else."
JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
RequiredPermission = Annotated[
    str | None, typer.Option("--permission", "-p", help="Also require this permission.")
]
QuietFlag = Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)]


def read_value(value: str | None, what: str) -> str:
    """An argument, or standard input for `-` (or when omitted and stdin is piped).

    Secrets and verifiers belong on stdin: argv is visible to every user through `ps`.
    Only the trailing newline that `echo` adds is dropped; other whitespace is an error
    the validators report.
    """
    if value is not None and value != "-":
        return value
    if sys.stdin is None:  # started with stdin closed (`<&-`)
        raise InvalidInputError(f"no {what} given, and standard input is closed")
    if value is None and sys.stdin.isatty():
        raise InvalidInputError(f"no {what} given; pass it as an argument, or `-` to read stdin")
    text = sys.stdin.read()
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise InvalidInputError(f"no {what} on standard input")
    return text


def read_credential(value: str | None, file: Path | None, what: str) -> str:
    """A token or key from an argument, `-` (stdin), or `--file` (0600, like every secret)."""
    if file is None:
        return read_value(value, what)
    if value is not None:
        raise InvalidInputError(f"give the {what} as an argument or with --file, not both")
    from mcpsec.core.secret_files import read_secret_file

    return read_secret_file(file).reveal().decode("utf-8", errors="replace")


FileOption = Annotated[
    Path | None,
    typer.Option("--file", "-f", metavar="PATH", help="Read it from this file (mode 0600)."),
]
