"""Generate the shell completions and the man page from the live Typer app.

    python scripts/generate_docs.py          # write completions/ and man/
    python scripts/generate_docs.py --check  # write nothing; exit 1 naming the stale files

Everything is read from the click objects (never from rendered help), in a stable order and
with no dates, absolute paths or terminal widths, so regenerating is byte-identical. The
completions are static shell functions: a TAB costs no Python start-up. The work is done by
the `docgen` package next to this file; this is only its command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

# `docgen` sits next to this file, and scripts/ is no package: make it importable whatever the
# working directory, and under `python -P` / `-I`, which leave the script's folder off sys.path.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from docgen import REPO, generate, stale_files  # noqa: E402
from docgen.text import GENERATOR  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is stale"
    )
    args = parser.parse_args(argv)
    files = generate()
    stale = stale_files(files)
    if args.check:
        for relative in stale:
            print(f"stale: {relative}", file=sys.stderr)
        if stale:
            print(f"run `make docs` (python {GENERATOR}) to regenerate", file=sys.stderr)
        return 1 if stale else 0
    for relative in stale:
        path = REPO / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[relative].encode())
        print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
