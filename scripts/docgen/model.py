"""The command tree of a Typer app as plain data: commands, options, arguments and choices.

    root = tree_of(app)                        # or load_tree() for mcpsec's own app
    [node.command_path for node in root.walk()]  # "mcpsec", "mcpsec pkce", ...

Everything is read from the click objects (never from rendered help), so the renderers see the
same tree whatever the terminal.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docgen.text import PROG, one_line

REPO = Path(__file__).resolve().parents[2]

# Names that end up in shell code must be plain words, so the scripts can use them unquoted in
# word lists and `case` patterns: no spaces, quotes, globs or `$`.
_SAFE_NAME = re.compile(r"-{0,2}[A-Za-z0-9][A-Za-z0-9_-]*")  # commands and options
_SAFE_CHOICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+@%,/=-]*")


@dataclass(frozen=True)
class Opt:
    names: tuple[str, ...]  # short names first, then long ones
    help: str  # the option's own help text
    notes: str  # "[default: S256]", "[required]", as `--help` shows them
    metavar: str | None  # None for a flag
    choices: tuple[str, ...]
    files: bool  # the value is a path
    is_help: bool = False


@dataclass(frozen=True)
class Arg:
    metavar: str
    help: str
    required: bool
    many: bool
    choices: tuple[str, ...]
    files: bool


@dataclass(frozen=True)
class Node:
    path: tuple[str, ...]  # ("mcpsec", "pkce", "generate")
    help: str
    usage: str  # the pieces after the command path: "[OPTIONS] COMMAND [ARGS]..."
    options: tuple[Opt, ...]  # declaration order, the help option last
    arguments: tuple[Arg, ...]
    children: tuple[Node, ...]  # sorted by name

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def command_path(self) -> str:
        return " ".join(self.path)

    @property
    def summary(self) -> str:
        """The first paragraph of the help, on one line."""
        return one_line(self.help)

    @property
    def help_option(self) -> Opt | None:
        return next((o for o in self.options if o.is_help), None)

    @property
    def valued(self) -> tuple[str, ...]:
        return tuple(sorted(n for o in self.options if o.metavar is not None for n in o.names))

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(sorted(n for o in self.options for n in o.names))

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, parents before children."""
        yield self
        for child in self.children:
            yield from child.walk()


def _option_choices() -> dict[str, tuple[str, ...]]:
    """Choices of options declared as plain `str` (Typer cannot see them), by option name.

    An option typed with an Enum or Literal needs no row: its choices are read from Typer.
    """
    from mcpsec.core import pkce

    return {"--method": tuple(m.value for m in pkce.Method)}


def load_tree() -> Node:
    """Walk the live app, nested groups included."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from mcpsec.cli.app import app

    return tree_of(app, _option_choices())


def tree_of(app: Any, extra_choices: Mapping[str, tuple[str, ...]] | None = None) -> Node:
    """The command tree of any Typer app; `extra_choices` as in `_option_choices`."""
    import typer
    import typer.main

    command = typer.main.get_command(app)
    ctx = typer.Context(command, info_name=PROG, **command.context_settings)
    return _node(command, ctx, (PROG,), extra_choices or {})


def _node(
    command: Any, ctx: Any, path: tuple[str, ...], extra: Mapping[str, tuple[str, ...]]
) -> Node:
    import typer
    from typer.core import TyperArgument, TyperGroup, TyperOption

    params = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
    help_param = command.get_help_option(ctx)
    children: list[Node] = []
    if isinstance(command, TyperGroup):
        for name in sorted(command.commands):
            sub = command.commands[name]
            if sub.hidden:
                continue
            sub_ctx = typer.Context(sub, parent=ctx, info_name=name, **sub.context_settings)
            children.append(_node(sub, sub_ctx, (*path, name), extra))
    return Node(
        path=path,
        help=command.help or "",
        usage=" ".join(command.collect_usage_pieces(ctx)),
        options=tuple(
            _opt(p, ctx, extra, is_help=p is help_param)
            for p in params
            if isinstance(p, TyperOption)
        ),
        arguments=tuple(_arg(p) for p in params if isinstance(p, TyperArgument)),
        children=tuple(children),
    )


def _opt(param: Any, ctx: Any, extra: Mapping[str, tuple[str, ...]], *, is_help: bool) -> Opt:
    names = tuple(sorted([*param.opts, *param.secondary_opts], key=lambda n: (len(n) > 2, n)))
    takes_value = not (param.is_flag or param.count)
    choices = _choices(param) or next((extra[n] for n in names if n in extra), ())
    record = param.get_help_record(ctx)
    help_text = param.help or ""
    notes = (
        record[1][len(help_text) :].strip() if record and record[1].startswith(help_text) else ""
    )
    return Opt(
        names=names,
        help=help_text,
        notes=notes,
        metavar=(param.metavar or param.name.upper()) if takes_value else None,
        choices=choices if takes_value else (),
        files=takes_value and _is_path(param),
        is_help=is_help,
    )


def _arg(param: Any) -> Arg:
    return Arg(
        metavar=param.metavar or param.name.upper(),
        help=getattr(param, "help", None) or "",
        required=bool(param.required),
        many=param.nargs == -1,
        choices=_choices(param),
        files=_is_path(param),
    )


def _choices(param: Any) -> tuple[str, ...]:
    """Choices from an Enum/Literal annotation (Typer) or a `click.Choice` type."""
    descriptor = getattr(param, "type_descriptor", None)
    found = getattr(descriptor, "choices", None) or getattr(
        getattr(param, "type", None), "choices", None
    )
    return tuple(str(getattr(c, "value", c)) for c in found or ())


def _is_path(param: Any) -> bool:
    descriptor = getattr(param, "type_descriptor", None)
    return bool(descriptor is not None and (descriptor.is_path or descriptor.is_file))


def check_words(root: Node) -> None:
    """Refuse a name the scripts could not carry as a plain word (a bug in the CLI, not here)."""
    for node in root.walk():
        names = [node.name, *node.option_names]
        choices = [c for o in node.options for c in o.choices]
        choices += [c for a in node.arguments for c in a.choices]
        bad = [n for n in names if not _SAFE_NAME.fullmatch(n)]
        bad += [c for c in choices if not _SAFE_CHOICE.fullmatch(c)]
        if bad:
            raise ValueError(f"{node.command_path}: cannot complete {bad} as plain words")
