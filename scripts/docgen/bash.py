"""The bash completion script: a table of every command path, walked at TAB time.

    text = render_bash(load_tree())   # completions/mcpsec.bash

Static shell functions, so a TAB costs no Python start-up.
"""

from __future__ import annotations

from docgen.model import Node
from docgen.text import DO_NOT_EDIT, join_lines

BASH_HEAD = """\
# bash completion for mcpsec                                         -*- shell-script -*-
# {do_not_edit}
# Install: source it from ~/.bashrc, or copy it to
# ~/.local/share/bash-completion/completions/mcpsec.

# Sets _mcpsec_subs (subcommands), _mcpsec_opts (options), _mcpsec_valued (options that take
# a value), _mcpsec_argwords (choices of positional arguments) and _mcpsec_argfiles (1 when a
# positional argument is a path) for the command path in $1.
_mcpsec_spec() {{
    _mcpsec_subs='' _mcpsec_opts='' _mcpsec_valued='' _mcpsec_argwords='' _mcpsec_argfiles=0
    case "$1" in
"""

BASH_MIDDLE = """\
    esac
}

# Sets _mcpsec_kind to `words` (with the choices in _mcpsec_values), `files`, or nothing
# (free text) for the value of option $2 of the command path $1.
_mcpsec_option_values() {
    _mcpsec_kind='' _mcpsec_values=''
    case "$1 $2" in
"""

BASH_TAIL = """\
    esac
}

_mcpsec() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev='' path='mcpsec' word option='' prefix=''
    local i=1 endopts=0 line
    local _mcpsec_subs _mcpsec_opts _mcpsec_valued _mcpsec_argwords _mcpsec_argfiles
    local _mcpsec_kind _mcpsec_values
    COMPREPLY=()
    _mcpsec_spec "$path"
    # Find the command path before the cursor, stepping over options and their values.
    while [ "$i" -lt "$COMP_CWORD" ]; do
        word="${COMP_WORDS[i]}"
        if [ "$endopts" = 1 ]; then
            :
        elif [ "$word" = '--' ]; then
            endopts=1
        elif [[ "$word" == -* ]]; then
            if [[ " $_mcpsec_valued " == *" $word "* ]]; then
                i=$((i + 1))
                # bash splits `--opt=value` into three words when `=` is a word break.
                [ "${COMP_WORDS[i]}" = '=' ] && i=$((i + 1))
            fi
        elif [[ " $_mcpsec_subs " == *" $word "* ]]; then
            path="$path $word"
            _mcpsec_spec "$path"
        fi
        i=$((i + 1))
    done
    [ "$COMP_CWORD" -ge 1 ] && prev="${COMP_WORDS[COMP_CWORD - 1]}"
    if [ "$endopts" = 1 ]; then
        :
    elif [ "$cur" = '=' ] && [[ "$prev" == --* ]]; then
        option="$prev" cur=''
    elif [ "$prev" = '=' ] && [ "$COMP_CWORD" -ge 2 ]; then
        option="${COMP_WORDS[COMP_CWORD - 2]}"
    elif [[ "$cur" == --*=* ]]; then
        option="${cur%%=*}" prefix="${cur%%=*}=" cur="${cur#*=}"
    elif [[ " $_mcpsec_valued " == *" $prev "* ]]; then
        option="$prev"
    fi
    if [ -n "$option" ]; then
        _mcpsec_option_values "$path" "$option"
    elif [ "$endopts" = 0 ] && [[ "$cur" == -* ]]; then
        _mcpsec_kind=words _mcpsec_values="$_mcpsec_opts"
    elif [ -n "$_mcpsec_subs" ]; then
        _mcpsec_kind=words _mcpsec_values="$_mcpsec_subs"
    elif [ -n "$_mcpsec_argwords" ]; then
        _mcpsec_kind=words _mcpsec_values="$_mcpsec_argwords"
    elif [ "$_mcpsec_argfiles" = 1 ]; then
        _mcpsec_kind=files
    elif [ "$endopts" = 0 ]; then
        _mcpsec_kind=words _mcpsec_values="$_mcpsec_opts"
    fi
    case "$_mcpsec_kind" in
        words)
            while IFS= read -r line; do
                [ -n "$line" ] && COMPREPLY+=("$prefix$line")
            done < <(compgen -W "$_mcpsec_values" -- "$cur")
            ;;
        files)
            compopt -o filenames 2>/dev/null
            while IFS= read -r line; do
                COMPREPLY+=("$prefix$line")
            done < <(compgen -f -- "$cur")
            ;;
    esac
    return 0
}

complete -F _mcpsec mcpsec
"""


def render_bash(root: Node) -> str:
    spec: list[str] = []
    values: list[str] = []
    for node in root.walk():
        argwords = sorted({c for a in node.arguments for c in a.choices})
        argfiles = int(any(a.files for a in node.arguments))
        spec += [
            f"        '{node.command_path}')",
            f"            _mcpsec_subs='{' '.join(c.name for c in node.children)}'",
            f"            _mcpsec_opts='{' '.join(node.option_names)}'",
            f"            _mcpsec_valued='{' '.join(node.valued)}'",
            f"            _mcpsec_argwords='{' '.join(argwords)}' _mcpsec_argfiles={argfiles}",
            "            ;;",
        ]
        values += _bash_values(node)
    head = BASH_HEAD.format(do_not_edit=DO_NOT_EDIT)
    return head + join_lines(spec) + BASH_MIDDLE + join_lines(values) + BASH_TAIL


def _bash_values(node: Node) -> list[str]:
    """`case` branches of `_mcpsec_option_values` for the options of one command path."""
    branches = []
    for opt in node.options:
        kind = "words" if opt.choices else "files" if opt.files else ""
        if opt.metavar is None or not kind:
            continue
        words = f" _mcpsec_values='{' '.join(opt.choices)}'" if opt.choices else ""
        for name in opt.names:
            branches.append(f"        '{node.command_path} {name}') _mcpsec_kind={kind}{words} ;;")
    return branches
