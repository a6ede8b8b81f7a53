"""The installed `mcpsec` entry point: the last line of defence against a traceback."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

from mcpsec.cli import errors
from mcpsec.cli.group import wants_verbose
from mcpsec.cli.output import error_line


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; an exception that is not an mcpsec error is a bug, reported in one line."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        import typer.main

        from mcpsec.cli.app import app

        command = typer.main.get_command(app)
        code: int = command.main(args, prog_name="mcpsec", standalone_mode=False)
    except KeyboardInterrupt:
        error_line("interrupted")
        code = errors.INTERRUPTED
    except Exception as e:
        if wants_verbose(args):
            traceback.print_exc()
        error_line(
            # The message itself could quote a secret it choked on; only --verbose shows it.
            f"internal error: {type(e).__name__} "
            "(this is a bug; run with --verbose for details and please report it)"
        )
        code = errors.INTERNAL
    _quiet_broken_pipe()
    return code


def _quiet_broken_pipe() -> None:
    """If a reader closed our stdout (`| head`), don't let the final flush print a warning."""
    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
