"""Text made safe for a man page: escaped for roff, with `code` in bold.

lines = [".TP", bold("--store"), text("The store URL, like `redis://localhost`.")]
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# ASCII as typed, so that commands copied from the page work: groff would otherwise print
# hyphens, quotes, tildes and carets as typographic look-alikes.
_ROFF_ESCAPES = {
    "\\": "\\e",
    "-": "\\-",
    "'": "\\(aq",
    "`": "\\(ga",
    "~": "\\(ti",
    "^": "\\(ha",
}
_BACKTICKED = re.compile(r"`([^`\n]+)`")


def escape(text: str) -> str:
    out = []
    for char in text:
        if char in _ROFF_ESCAPES:
            out.append(_ROFF_ESCAPES[char])
        elif ord(char) > 126:  # input stays ASCII; groff and mandoc both know \[uXXXX]
            out.append(f"\\[u{ord(char):04X}]")
        elif ord(char) < 32:
            out.append(" ")
        else:
            out.append(char)
    return "".join(out)


def text(line: str) -> str:
    """Running text: `code` in bold, everything else escaped."""
    pieces = _BACKTICKED.split(line)
    out = "".join(
        f"\\fB{escape(piece)}\\fR" if i % 2 else escape(piece) for i, piece in enumerate(pieces)
    )
    return _guard(out)


def code(line: str) -> str:
    return _guard(escape(line))


def _guard(out: str) -> str:
    """A text line must not start like a request."""
    return "\\&" + out if out.startswith((".", "'")) else out


def macro_arg(words: str) -> str:
    return '"' + escape(words).replace('"', "\\(dq") + '"'


def bold(words: str) -> str:
    return f"\\fB{escape(words)}\\fR"


def italic(words: str) -> str:
    return f"\\fI{escape(words)}\\fR"


def paragraphs(blocks: Sequence[Sequence[str]]) -> list[str]:
    return [line for p in blocks for line in (".PP", *(text(x) for x in p))]


def code_block(lines: Sequence[str]) -> list[str]:
    return [".RS 4", ".nf", *(code(x) for x in lines), ".fi", ".RE"]
