"""The fish completion script: `complete` rules guarded by the command path typed so far.

text = render_fish(load_tree())   # completions/mcpsec.fish
"""

from __future__ import annotations

from collections.abc import Sequence

from docgen.model import Node, Opt
from docgen.text import DO_NOT_EDIT, join_lines, one_line

FISH_HELPERS = """\
# The command path typed so far: `mcpsec`, `mcpsec pkce`, `mcpsec pkce generate`...
function __mcpsec_path
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l path mcpsec
    set -l skip 0
    for token in $tokens
        if test $skip = 1
            set skip 0
        else if test "$token" = --
            break
        else if string match -q -- '-*' $token
            if contains -- $token (__mcpsec_valued $path)
                set skip 1
            end
        else if contains -- $token (__mcpsec_subcommands $path)
            set path "$path $token"
        end
    end
    echo $path
end

function __mcpsec_at --argument-names expected
    test (__mcpsec_path) = "$expected"
end

complete -c mcpsec -f
"""


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_table(function: str, what: str, rows: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    lines = [f"# {what}", f"function {function} --argument-names path", "    switch $path"]
    for path, words in rows:
        if words:
            lines += [
                f"        case {_fish_quote(path)}",
                f"            printf '%s\\n' {' '.join(words)}",
            ]
    return [*lines, "    end", "end", ""]


def _fish_option(node: Node, opt: Opt) -> str:
    parts = ["complete -c mcpsec", "-n", _fish_quote(f'__mcpsec_at "{node.command_path}"')]
    for name in opt.names:
        if name.startswith("--"):
            parts += ["-l", name[2:]]
        elif len(name) == 2:
            parts += ["-s", name[1:]]
        else:
            parts += ["-o", name[1:]]
    if opt.metavar is not None:
        parts += ["-r", "-F"] if opt.files else ["-x"]
        if opt.choices:
            parts += ["-a", _fish_quote(" ".join(opt.choices))]
    return " ".join([*parts, "-d", _fish_quote(one_line(opt.help))])


def _fish_node(node: Node) -> list[str]:
    at = ["complete -c mcpsec", "-n", _fish_quote(f'__mcpsec_at "{node.command_path}"')]
    lines = [f"# {node.command_path}"]
    for child in node.children:
        lines.append(" ".join([*at, "-a", child.name, "-d", _fish_quote(child.summary)]))
    for arg in node.arguments:
        if arg.choices:
            lines.append(" ".join([*at, "-a", _fish_quote(" ".join(arg.choices))]))
        if arg.files:
            lines.append(" ".join([*at, "-F"]))
    lines += [_fish_option(node, o) for o in node.options]
    return [*lines, ""]


def render_fish(root: Node) -> str:
    nodes = list(root.walk())
    subs = [(n.command_path, [c.name for c in n.children]) for n in nodes]
    valued = [(n.command_path, list(n.valued)) for n in nodes]
    lines = [
        "# fish completion for mcpsec.",
        f"# {DO_NOT_EDIT}",
        "# Install: copy it to ~/.config/fish/completions/mcpsec.fish.",
        "",
        *_fish_table("__mcpsec_subcommands", "The subcommands of a command path.", subs),
        *_fish_table("__mcpsec_valued", "The options of a command path that take a value.", valued),
    ]
    body = [line for node in nodes for line in _fish_node(node)]
    return join_lines(lines) + FISH_HELPERS + "\n" + join_lines(body).rstrip("\n") + "\n"
