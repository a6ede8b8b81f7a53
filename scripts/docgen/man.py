"""The man page, mcpsec(1): every command with its options, exit codes, environment and files.

    text = render_man(load_tree())   # man/mcpsec.1

No date in `.TH`, so that regenerating is byte-identical.
"""

from __future__ import annotations

from collections.abc import Sequence

from docgen import roff
from docgen.environment import environment_rows, file_rows
from docgen.model import Arg, Node, Opt
from docgen.text import DO_NOT_EDIT, PROG, help_paragraphs, join_lines, split_examples

PRECEDENCE = "Flags win over environment variables, which win over the config file, which wins "
PRECEDENCE += "over the defaults."

MAN_SEE_ALSO = [
    ".BR sqlite3 (1),",
    ".BR redis\\-cli (1),",
    ".BR jq (1)",
    ".PP",
    "RFC 7636 (PKCE), RFC 7519 (JWT), RFC 8707 (resource indicators).",
    ".PP",
    "Completion scripts for bash, zsh and fish are generated with this page, in the",
    ".I completions",
    "folder of the source tree.",
]


def render_man(root: Node) -> str:
    from mcpsec import __version__
    from mcpsec.cli.errors import EXIT_CODES

    lines = [
        f'.\\" {DO_NOT_EDIT}',
        f'.TH {PROG.upper()} 1 "" {roff.macro_arg(f"{PROG} {__version__}")} "User Commands"',
        ".nh",  # no hyphenation: option names and URLs must read as typed
        ".ad l",
        *_man_head(root),
        ".SH GLOBAL OPTIONS",
        "Global options go before the command name.",
        *_option_items(root.options),
        ".SH COMMANDS",
    ]
    if root.help_option is not None:
        lines.append(f"Every command also takes {_option_tag(root.help_option)}.")
    for node in list(root.walk())[1:]:
        lines += _man_command(node)
    lines.append(".SH EXIT STATUS")
    for code, description in EXIT_CODES:
        lines += [".TP", roff.bold(str(code)), roff.text(description)]
    lines += [".SH ENVIRONMENT", roff.text(PRECEDENCE)]
    for var, description in environment_rows():
        lines += [".TP", roff.bold(var), roff.text(description)]
    lines.append(".SH FILES")
    for path, description in file_rows():
        lines += [".TP", roff.italic(path), roff.text(description)]
    lines += [".SH EXAMPLES", *_man_examples(root), ".SH SEE ALSO", *MAN_SEE_ALSO]
    return join_lines(lines)


def _man_head(root: Node) -> list[str]:
    """NAME, SYNOPSIS and DESCRIPTION: the app's help and its top-level commands."""
    name_line = root.summary.rstrip(".")
    if name_line[:2].istitle():  # "Security ..." but not "PKCE ..."
        name_line = name_line[0].lower() + name_line[1:]
    prose, _ = split_examples(root.help)
    if prose and " ".join(prose[0]) == root.summary:
        prose = prose[1:]
    synopsis = [
        f"{roff.bold(PROG)} [{roff.italic('GLOBAL OPTIONS')}] {roff.italic('COMMAND')} "
        f"[{roff.italic('OPTIONS')}] [{roff.italic('ARGS')}]...",
    ]
    if root.help_option is not None:
        longest = max(root.help_option.names, key=len)
        synopsis += [".br", f"{roff.bold(PROG)} [{roff.italic('COMMAND')}...] {roff.bold(longest)}"]
    commands = [x for c in root.children for x in (".TP", roff.bold(c.name), roff.text(c.summary))]
    return [
        ".SH NAME",
        f"{PROG} \\- {roff.escape(name_line)}",
        ".SH SYNOPSIS",
        *synopsis,
        ".SH DESCRIPTION",
        roff.text(root.summary),
        *roff.paragraphs(prose),
        ".PP",
        "Commands:",
        ".RS 4",
        *commands,
        ".RE",
    ]


def _man_command(node: Node) -> list[str]:
    prose, examples = split_examples(node.help)
    lines = [
        f".SS {roff.macro_arg(node.command_path)}",
        roff.bold(node.command_path) + " " + roff.text(node.usage),
    ]
    lines += roff.paragraphs(prose)
    if node.arguments:
        lines += [".PP", "Arguments:", ".RS 4", *_argument_items(node.arguments), ".RE"]
    options = [o for o in node.options if not o.is_help]
    if options:
        lines += [".PP", "Options:", ".RS 4", *_option_items(options), ".RE"]
    if node.children:
        lines += [".PP", "Commands:", ".RS 4"]
        for child in node.children:
            lines += [".TP", roff.bold(child.command_path), roff.text(child.summary)]
        lines.append(".RE")
    if examples:
        lines += [
            ".PP",
            "Example" + ("s:" if len(examples) > 1 else ":"),
            *roff.code_block(examples),
        ]
    return lines


def _option_tag(opt: Opt) -> str:
    tag = ", ".join(roff.bold(n) for n in opt.names)
    return tag if opt.metavar is None else f"{tag} {roff.italic(opt.metavar)}"


def _option_items(options: Sequence[Opt]) -> list[str]:
    lines: list[str] = []
    for opt in options:
        help_lines = [x for p in help_paragraphs(opt.help) for x in p]
        if opt.notes:
            help_lines.append(opt.notes)
        lines += [".TP", _option_tag(opt), *(roff.text(x) for x in help_lines)]
    return lines


def _argument_items(arguments: Sequence[Arg]) -> list[str]:
    lines: list[str] = []
    for arg in arguments:
        note = "" if arg.required else " (optional)"
        lines += [".TP", roff.italic(arg.metavar), roff.text((arg.help + note).strip())]
    return lines


def _man_examples(root: Node) -> list[str]:
    lines: list[str] = []
    for node in root.walk():
        _, examples = split_examples(node.help)
        if examples:
            lines += [".PP", roff.text(node.summary), *roff.code_block(examples)]
    return lines
