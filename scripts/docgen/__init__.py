"""Shell completions and the man page, generated from the live Typer app.

    files = generate()             # {"completions/mcpsec.bash": "...", "man/mcpsec.1": "..."}
    stale = stale_files(files)     # the ones that differ from what is committed

One module per output (`bash`, `zsh`, `fish`, `man`), all rendering the same `model.Node` tree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from docgen.bash import render_bash
from docgen.fish import render_fish
from docgen.man import render_man
from docgen.model import REPO, Node, check_words, load_tree, tree_of
from docgen.zsh import render_zsh

__all__ = ["RENDERERS", "REPO", "generate", "render_all", "stale_files", "tree_of"]

# By path relative to the repository; the order is the order files are written and reported.
RENDERERS: dict[str, Callable[[Node], str]] = {
    "completions/mcpsec.bash": render_bash,
    "completions/mcpsec.zsh": render_zsh,
    "completions/mcpsec.fish": render_fish,
    "man/mcpsec.1": render_man,
}


def generate() -> dict[str, str]:
    """Every generated file, by its path relative to the repository."""
    return render_all(load_tree())


def render_all(root: Node) -> dict[str, str]:
    check_words(root)
    return {path: render(root) for path, render in RENDERERS.items()}


def stale_files(files: Mapping[str, str], repo: Path = REPO) -> list[str]:
    """The files, of those given, that are missing under `repo` or differ byte for byte."""
    stale = []
    for relative, text in files.items():
        path = repo / relative
        if not path.is_file() or path.read_bytes() != text.encode():
            stale.append(relative)
    return stale
