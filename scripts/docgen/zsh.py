"""The zsh completion function: one `_arguments` function per command path.

text = render_zsh(load_tree())   # completions/mcpsec.zsh
"""

from __future__ import annotations

from docgen.model import Arg, Node, Opt
from docgen.text import DO_NOT_EDIT, one_line

ZSH_HEAD = """\
#compdef mcpsec
# zsh completion for mcpsec.
# {do_not_edit}
# Install: copy it as _mcpsec into a folder of $fpath, then restart zsh (or run compinit).
"""

ZSH_TAIL = """
if [ "$funcstack[1]" = "_mcpsec" ]; then
  _mcpsec "$@"
else
  compdef _mcpsec mcpsec
fi
"""


def _sq(text: str) -> str:
    """Single-quoted for sh/zsh."""
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_escape(text: str, specials: str) -> str:
    for char in "\\" + specials:
        text = text.replace(char, "\\" + char)
    return text


def _zsh_option(opt: Opt) -> list[str]:
    description = _zsh_escape(one_line(opt.help), "[]:")
    value = ""
    if opt.metavar is not None:
        action = "_files" if opt.files else f"({' '.join(opt.choices)})" if opt.choices else " "
        value = f":{_zsh_escape(opt.metavar, ':')}:{action}"

    def spec(name: str) -> str:
        suffix = "" if opt.metavar is None else "=" if name.startswith("--") else "+"
        return f"{name}{suffix}[{description}]{value}"

    if len(opt.names) == 1:
        return [_sq(spec(opt.names[0]))]
    exclusive = "(" + " ".join(opt.names) + ")"
    return [_sq(exclusive + spec(name)) for name in opt.names]


def _zsh_argument(index: int, arg: Arg) -> str:
    action = "_files" if arg.files else f"({' '.join(arg.choices)})" if arg.choices else " "
    position = "*" if arg.many else str(index)
    optional = ":" if not arg.required and not arg.many else ""
    return _sq(f"{position}:{optional}{_zsh_escape(arg.metavar, ':')}:{action}")


def _zsh_function_name(node: Node) -> str:
    return "_" + "_".join(part.replace("-", "_") for part in node.path)


def _zsh_function(node: Node) -> list[str]:
    specs = [s for o in node.options for s in _zsh_option(o)]
    lines = [f"{_zsh_function_name(node)}() {{"]
    if not node.children:
        specs += [_zsh_argument(i, a) for i, a in enumerate(node.arguments, start=1)]
        if not specs:
            return [*lines, "  _message 'no arguments'", "}"]
        lines += [
            "  _arguments -s \\",
            *(f"    {s} \\" for s in specs[:-1]),
            f"    {specs[-1]}",
            "}",
        ]
        return lines
    specs += ["'1: :->command'", "'*:: :->argument'"]
    lines += [
        '  local curcontext="$curcontext" state state_descr line ret=1',
        "  typeset -A opt_args",
        "  _arguments -C -s \\",
        *(f"    {s} \\" for s in specs[:-1]),
        f"    {specs[-1]} && ret=0",
        "  case $state in",
        "    command)",
        "      local -a commands",
        "      commands=(",
        *(f"        {_sq(_zsh_escape(c.name, ':') + ':' + c.summary)}" for c in node.children),
        "      )",
        f"      _describe -t commands {_sq(node.command_path + ' command')} commands && ret=0",
        "      ;;",
        "    argument)",
        '      curcontext="${curcontext%:*:*}:' + "-".join(node.path) + '-$words[1]:"',
        "      case $words[1] in",
        *(f"        {c.name}) {_zsh_function_name(c)} && ret=0 ;;" for c in node.children),
        "      esac",
        "      ;;",
        "  esac",
        "  return ret",
        "}",
    ]
    return lines


def render_zsh(root: Node) -> str:
    blocks = ["\n".join(_zsh_function(node)) + "\n" for node in root.walk()]
    return ZSH_HEAD.format(do_not_edit=DO_NOT_EDIT) + "\n" + "\n".join(blocks) + ZSH_TAIL
