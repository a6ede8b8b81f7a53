"""The root command class: every failure becomes one line and the documented exit code.

Typer's standalone mode would print Rich panels and tracebacks; this runs the app in
non-standalone mode and renders errors itself, so `CliRunner` tests and the installed
command behave the same. Unknown exceptions are bugs and propagate (see `main.main`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any, ClassVar

import typer
from typer.core import HAS_RICH, TyperGroup

from mcpsec.cli import errors, fast_params
from mcpsec.cli.output import error_line
from mcpsec.core.errors import MCPSecError


class LazyCommands(MutableMapping[str, Any]):
    """Subcommands by name, each imported and built only when first looked up: `mcpsec pkce
    generate` does not pay for building the keys, config or doctor commands. Listing the
    names costs nothing; `--help` and the docs generator load them all."""

    def __init__(self, loaded: Mapping[str, Any], lazy: Mapping[str, str]) -> None:
        self._loaded: dict[str, Any] = dict(loaded)
        self._lazy = {name: spec for name, spec in lazy.items() if name not in loaded}

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded and name in self._lazy:
            self._loaded[name] = _load(name, self._lazy[name])
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self._loaded.pop(name, None)
        self._lazy.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*self._loaded, *self._lazy}))

    def __len__(self) -> int:
        return len({*self._loaded, *self._lazy})


def _load(name: str, spec: str) -> Any:
    """`module:attribute`, a Typer app, as a click command named `name`."""
    import importlib

    import typer.main

    module_name, _, attribute = spec.partition(":")
    command = typer.main.get_command(getattr(importlib.import_module(module_name), attribute))
    command.name = name
    return command


class MCPSecGroup(TyperGroup):
    lazy_commands: ClassVar[Mapping[str, str]] = {}  # name -> "module:typer_app"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = LazyCommands(self.commands, self.lazy_commands)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        code = self.run(args, prog_name, complete_var, windows_expand_args, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def run(
        self,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        windows_expand_args: bool,
        **extra: Any,
    ) -> int:
        fast_params.install()
        try:
            result = super().main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except MCPSecError as e:
            error_line(str(e))
            if e.__cause__ is not None and wants_verbose(args):
                print(f"  caused by {type(e.__cause__).__name__}: {e.__cause__}", file=sys.stderr)
            return errors.exit_code_for(e)
        except typer.TyperException as e:  # click's usage errors and bad parameters
            return _usage_error(e, help_shown=HAS_RICH and self.rich_markup_mode is not None)
        except typer.Abort:
            error_line("aborted")
            return errors.INTERRUPTED
        except BrokenPipeError:
            return errors.OK  # `mcpsec … | head` closed the pipe: not an error
        return result if isinstance(result, int) else errors.OK


def wants_verbose(args: Sequence[str] | None) -> bool:
    """`--verbose`/`-v` among the options (before any `--`); read before parsing succeeds."""
    options = list(sys.argv[1:] if args is None else args)
    if "--" in options:
        options = options[: options.index("--")]
    return "--verbose" in options or "-v" in options


def _usage_error(error: typer.TyperException, *, help_shown: bool) -> int:
    """One line naming the problem; a group called without a command shows its help instead."""
    ctx = getattr(error, "ctx", None)
    if type(error).__name__ == "NoArgsIsHelpError":
        if not help_shown:  # Rich prints the help while the error is being built
            print(error.format_message())
        return errors.USAGE
    message = error.format_message()
    if message.startswith("Got unexpected extra argument"):
        # Click quotes the arguments, and a stray one may be a token or key: never echo it.
        message = "got more arguments than the command takes"
    if ctx is not None:
        message += f" (see `{ctx.command_path} --help`)"
    error_line(message)
    return int(getattr(error, "exit_code", errors.USAGE)) or errors.USAGE
